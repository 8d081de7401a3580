package stream

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Kafka goes away while records are still queued in the reader. Each handled
// batch's background commit then blocks (no group generation reads kafka-go's
// commit queue). A stop during that wait ends within one DrainTimeout: every
// commit ends DrainTimeout after the stop at the latest (it waited for the
// previous batch's commit, then gave the last one a fresh DrainTimeout: 2×).
func TestRunPreparedStopsWithKafkaDown(t *testing.T) {
	c := newCluster(t, "t")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	p := newTestProducer(ctx, t, c, nil)
	recs := make([]Record, 200)
	for i := range recs {
		recs[i] = Record{Key: []byte("k"), Value: fmt.Appendf(nil, "%d", i)}
	}
	if err := p.Produce(ctx, recs); err != nil {
		t.Fatal(err)
	}
	p.Close()
	const drain = 4 * time.Second
	cons, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: "g", Topics: []string{"t"},
		MaxBatch: 10, MaxWait: 10 * time.Millisecond, DrainTimeout: drain, SessionTimeout: 6 * time.Second}, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	entered := make(chan struct{})
	handled := make(chan int, 100)
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		n := 0
		done <- cons.RunPrepared(rctx, func(context.Context, []Message) any { return nil },
			func(_ context.Context, b []Message, _ any) error {
				n++
				if n == 1 {
					close(entered)
					<-release
				}
				handled <- n
				return nil
			})
	}()
	<-entered
	t.Log("first batch in the handler")
	time.Sleep(time.Second)     // reader queue full
	c.Close()                   // Kafka down
	time.Sleep(8 * time.Second) // heartbeat fails, generation ends
	close(release)
	t.Log("released")
	<-handled // batch 1 done: its commit now blocks
	t.Log("batch 1 handled")
	<-handled // batch 2 done: main loop waits for batch 1's commit
	t.Log("batch 2 handled")
	time.Sleep(100 * time.Millisecond)
	stop := time.Now()
	rcancel() // SIGTERM
	err = <-done
	took := time.Since(stop)
	t.Logf("RunPrepared returned %v, %v after cancel (DrainTimeout %v)", err, took.Round(time.Millisecond), drain)
	if took > drain+time.Second {
		t.Errorf("shutdown took %v: more than one DrainTimeout (%v)", took, drain)
	}
}
