package main

import (
	"context"
	"testing"
	"time"

	"github.com/leadstream/leadstream/erasure"
)

// blockingEraser erases until its context ends.
type blockingEraser struct{}

func (blockingEraser) Erase(ctx context.Context, _ string, _ time.Duration) (*erasure.Result, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// An erasure in flight (a DELETE) ends when the role stops, so the
// collector's shutdown does not wait for it; one started before the stop
// keeps its own deadline otherwise.
func TestStoppingEraser(t *testing.T) {
	stop, stopNow := context.WithCancel(context.Background())
	e := stoppingEraser{blockingEraser{}, stop}
	done := make(chan error, 1)
	go func() {
		_, err := e.Erase(context.Background(), "lead-1", time.Second)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("erasure ended before the stop: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	stopNow()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("an interrupted erasure reported success")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the erasure did not end at the stop")
	}
	// Its own deadline still applies while the role runs.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := (stoppingEraser{blockingEraser{}, context.Background()}).Erase(ctx, "lead-1", time.Second); err == nil {
		t.Fatal("deadline ignored")
	}
}
