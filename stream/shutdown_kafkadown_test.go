package stream

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Kafka goes away while records are still queued in the reader. Each handled
// batch's background commit then blocks (no group generation reads kafka-go's
// commit queue). A stop during that wait ends within one DrainTimeout: every
// commit ends DrainTimeout after the stop at the latest (it waited for the
// previous batch's commit, then gave the last one a fresh DrainTimeout: 2×).
// Beyond the DrainTimeout, the stop may take the reader's close
// (ReaderCloseWait at most) and slack for a loaded machine, still well
// under two DrainTimeouts.
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
	const drain = 5 * time.Second
	reg := prometheus.NewRegistry()
	cons, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: "g", Topics: []string{"t"},
		MaxBatch: 10, MaxWait: 10 * time.Millisecond, DrainTimeout: drain, SessionTimeout: 6 * time.Second}, quiet, reg)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	entered := make(chan struct{})
	handled := make(chan int, 100)
	prepared := make(chan struct{}, 100)
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		n := 0
		done <- cons.RunPrepared(rctx, func(context.Context, []Message) any { prepared <- struct{}{}; return nil },
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
	wait := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		}
	}
	wait(entered, "the first batch in the handler")
	t.Log("first batch in the handler")
	wait(prepared, "the first batch prepared")
	wait(prepared, "the second batch fetched ahead") // batch 2 needs no Kafka now
	c.Close()                                        // Kafka down
	// The heartbeat fails and the generation ends: from then on no commit
	// loop reads the reader's commits, so a commit blocks. An empty commit
	// (no offsets: nothing to send) tells, answered at once while a
	// generation runs.
	for {
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := cons.reader.CommitMessages(pctx)
		pcancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the group generation did not end with Kafka down")
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Log("Kafka down, commits block")
	close(release)
	t.Log("released")
	for i := 1; i <= 2; i++ {
		// Batch 1 done: its commit now blocks. Batch 2 done: the main loop
		// waits for batch 1's commit.
		select {
		case <-handled:
			t.Logf("batch %d handled", i)
		case <-ctx.Done():
			t.Fatalf("batch %d not handled: %v", i, ctx.Err())
		}
	}
	time.Sleep(100 * time.Millisecond)
	stop := time.Now()
	rcancel() // SIGTERM
	err = <-done
	took := time.Since(stop)
	t.Logf("RunPrepared returned %v, %v after cancel (DrainTimeout %v)", err, took.Round(time.Millisecond), drain)
	if bound := drain + ReaderCloseWait + 2*time.Second; took > bound {
		t.Errorf("shutdown took %v: more than one DrainTimeout (%v, bound %v)", took, drain, bound)
	}
	// The stop waited for a blocked commit, cut at DrainTimeout: what this
	// test is about did happen.
	if took < drain-500*time.Millisecond {
		t.Errorf("shutdown took %v: no commit blocked it until DrainTimeout (%v): the test did not exercise a blocked commit", took, drain)
	}
	if n := testCounter(t, reg, "leadstream_kafka_commit_errors_total"); n < 1 {
		t.Errorf("commit_errors_total = %v: the blocked commit did not end with an error", n)
	}
}

// The brokers stop answering (a black hole, no RST) while a consumer idles
// with its work committed: a stop still ends Run and RunPrepared promptly
// (README: "SIGTERM still stops every role promptly"), not after kafka-go's
// reader gave up leaving the group (the group expires the member anyway).
func TestConsumerStopsWithSilentBrokers(t *testing.T) {
	for _, prepared := range []bool{false, true} {
		t.Run(fmt.Sprint("prepared=", prepared), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c := oneRecordTopic(ctx, t)
			cons, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: "g", Topics: []string{"t"}}, quiet, nil) // default session timeout 10 s
			if err != nil {
				t.Fatal(err)
			}
			rctx, stop := context.WithCancel(ctx)
			defer stop()
			got := make(chan struct{}, 1)
			h := func(context.Context, []Message) error {
				select {
				case got <- struct{}{}:
				default:
				}
				return nil
			}
			done := make(chan error, 1)
			go func() {
				if prepared {
					done <- cons.RunPrepared(rctx, func(context.Context, []Message) any { return nil },
						func(ctx context.Context, b []Message, _ any) error { return h(ctx, b) })
				} else {
					done <- cons.Run(rctx, h)
				}
			}()
			select {
			case <-got:
			case <-ctx.Done():
				t.Fatal("the record was not consumed")
			}
			// Idle with the record committed.
			deadline := time.Now().Add(30 * time.Second)
			for committedOffset(ctx, t, c, "g", "t") < 1 {
				if time.Now().After(deadline) {
					t.Fatal("the record's offset was not committed within 30 s")
				}
				time.Sleep(50 * time.Millisecond)
			}
			release := make(chan struct{})
			defer close(release)
			silent := make(chan struct{})
			c.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				select {
				case <-silent:
				default:
					close(silent)
				}
				<-release
				return nil, errors.New("hung"), true
			})
			select {
			case <-silent: // a request of the consumer's met the silence
			case <-time.After(20 * time.Second):
				t.Fatal("no request reached the silent broker within 20 s")
			}
			time.Sleep(time.Second)
			start := time.Now()
			stop()
			select {
			case err := <-done:
				d := time.Since(start)
				t.Logf("Run returned %v after %v", err, d.Round(time.Millisecond))
				if err != nil {
					t.Errorf("Run = %v, want nil", err)
				}
				if d > ReaderCloseWait+3*time.Second {
					t.Errorf("stop took %v with silent brokers", d.Round(time.Millisecond))
				}
			case <-time.After(40 * time.Second):
				t.Fatal("Run did not return within 40 s of the stop")
			}
		})
	}
}
