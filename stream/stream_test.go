package stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func newCluster(t *testing.T, topics ...string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newTestProducer is a producer for topic "t" of c with default settings.
func newTestProducer(ctx context.Context, t *testing.T, c *kfake.Cluster, reg prometheus.Registerer) *Producer {
	t.Helper()
	p, err := NewProducer(ctx, ProducerConfig{Brokers: c.ListenAddrs(), Topic: "t"}, quiet, reg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// oneRecordTopic returns a cluster whose topic "t" holds one record, "1".
func oneRecordTopic(ctx context.Context, t *testing.T) *kfake.Cluster {
	t.Helper()
	c := newCluster(t, "t")
	p := newTestProducer(ctx, t, c, nil)
	defer p.Close()
	if err := p.Produce(ctx, []Record{{Key: []byte("a"), Value: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	return c
}

// Concurrent callers share produce requests, and every acknowledged record is
// consumed exactly once by a group consumer that commits after handling.
func TestProduceConsumeGroupCommit(t *testing.T) {
	c := newCluster(t, "t")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reg := prometheus.NewRegistry()
	p := newTestProducer(ctx, t, c, reg)
	const callers, per = 20, 50
	var wg sync.WaitGroup
	for g := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs := make([]Record, per)
			for i := range recs {
				recs[i] = Record{Key: fmt.Appendf(nil, "k%d", i%7), Value: fmt.Appendf(nil, "%d-%d", g, i)}
			}
			if err := p.Produce(ctx, recs); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n := testCounter(t, reg, "leadstream_kafka_produced_records_total"); n != callers*per {
		t.Fatalf("produced %v records, want %d", n, callers*per)
	}
	if n := testHistogramCount(t, reg, "leadstream_kafka_produce_batch_records"); n >= callers*per {
		t.Fatalf("%v produce requests for %d records: no group commit", n, callers*per)
	}

	seen := map[string]int{}
	var mu sync.Mutex
	cons, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: "g", Topics: []string{"t"}, MaxBatch: 100, MaxWait: 20 * time.Millisecond}, quiet, reg)
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- cons.Run(cctx, func(_ context.Context, batch []Message) error {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range batch {
				seen[string(m.Value)]++
			}
			if len(seen) == callers*per {
				ccancel()
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatalf("consumed %d of %d records", len(seen), callers*per)
	}
	for v, n := range seen {
		if n != 1 {
			t.Fatalf("record %s consumed %d times", v, n)
		}
	}

	// Every record's offset was committed before Run returned, and a
	// restarted member of the group resumes after them.
	checkResumes(ctx, t, c, ConsumerConfig{Brokers: c.ListenAddrs(), Group: "g", Topics: []string{"t"}, MaxWait: 20 * time.Millisecond}, callers*per, false)
}

// checkResumes checks that group cfg.Group committed the n records of topic
// "t" of c, and that a new member (RunPrepared if prepared) consumes none of
// them again: it gets a record produced after them, and that one only.
func checkResumes(ctx context.Context, t *testing.T, c *kfake.Cluster, cfg ConsumerConfig, n int, prepared bool) {
	t.Helper()
	if got := committedOffset(ctx, t, c, cfg.Group, "t"); got != int64(n) {
		t.Fatalf("group committed offsets of %d records when its consumer returned, want %d", got, n)
	}
	p := newTestProducer(ctx, t, c, nil)
	defer p.Close()
	if err := p.Produce(ctx, []Record{{Key: []byte("k"), Value: []byte("after")}}); err != nil {
		t.Fatal(err)
	}
	cons, err := NewConsumer(cfg, quiet, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	var again []string
	h := func(_ context.Context, batch []Message) error {
		for _, m := range batch {
			if string(m.Value) == "after" {
				rcancel()
				continue
			}
			again = append(again, string(m.Value))
		}
		return nil
	}
	if prepared {
		err = cons.RunPrepared(rctx, func(context.Context, []Message) any { return nil },
			func(ctx context.Context, b []Message, _ any) error { return h(ctx, b) })
	} else {
		err = cons.Run(rctx, h)
	}
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the restarted consumer did not get the record produced after the committed ones: %v", ctx.Err())
	}
	if len(again) != 0 {
		t.Fatalf("restarted consumer got %d already committed records (%.10q)", len(again), again)
	}
}

// A handler error retries the same batch; nothing is committed until it succeeds.
func TestConsumerRetriesFailedBatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := oneRecordTopic(ctx, t)
	cons, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: "g", Topics: []string{"t"}}, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	cctx, ccancel := context.WithCancel(ctx)
	err = cons.Run(cctx, func(_ context.Context, batch []Message) error {
		calls++
		if calls < 3 {
			return errors.New("clickhouse down")
		}
		if string(batch[0].Value) != "1" {
			t.Errorf("retried batch holds %q", batch[0].Value)
		}
		ccancel()
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Run = %v after %d calls, want nil after 3", err, calls)
	}
}

// With no broker to take them, records fail with ErrUnavailable: never a silent success.
func TestProduceUnavailable(t *testing.T) {
	c := newCluster(t, "t")
	ctx := context.Background()
	p, err := NewProducer(ctx, ProducerConfig{Brokers: c.ListenAddrs(), Topic: "t", Timeout: 500 * time.Millisecond}, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c.Close()
	err = p.Produce(ctx, []Record{{Key: []byte("a"), Value: []byte("1")}})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Produce with broker down = %v, want ErrUnavailable", err)
	}
	if p.Healthy() {
		t.Fatal("producer reports healthy after a failed produce")
	}
}

func TestProduceQueueFull(t *testing.T) {
	c := newCluster(t, "t")
	ctx := context.Background()
	p, err := NewProducer(ctx, ProducerConfig{Brokers: c.ListenAddrs(), Topic: "t", MaxQueueBytes: 10}, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Produce(ctx, []Record{{Key: []byte("key"), Value: []byte("a value over ten bytes")}}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Produce over the queue bound = %v, want ErrQueueFull", err)
	}
}

func TestEnsureTopics(t *testing.T) {
	c := newCluster(t)
	cfg := Config{Brokers: c.ListenAddrs(), TopicPrefix: "x.", Partitions: 3, ReplicationFactor: -1}
	for range 2 { // idempotent
		if err := EnsureTopics(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	p, err := NewProducer(context.Background(), ProducerConfig{Brokers: c.ListenAddrs(), Topic: "x.mql"}, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if len(p.ids) != 3 {
		t.Fatalf("x.mql has %d partitions, want 3", len(p.ids))
	}
}

// committedOffset is the sum over topic's partitions of group's committed
// offsets in c (partitions without one count 0): the records the group
// committed when it started at the beginning.
func committedOffset(ctx context.Context, t *testing.T, c *kfake.Cluster, group, topic string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	res, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, r := range res[topic] {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		sum += max(r.At, 0)
	}
	return sum
}

func testCounter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func testHistogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// RunPrepared hands every record to prepare and then to the handler exactly
// once, batch by batch in order, with what prepare made of that very batch;
// a retry gets nil (prepares afresh); committed offsets are not consumed
// again by a restarted member, and a prepare of the next batch overlaps the
// handling of the current one.
func TestRunPrepared(t *testing.T) {
	c := newCluster(t, "t")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := NewProducer(ctx, ProducerConfig{Brokers: c.ListenAddrs(), Topic: "t"}, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 600
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Key: []byte("k"), Value: fmt.Appendf(nil, "%d", i)} // one partition: one order
	}
	if err := p.Produce(ctx, recs); err != nil {
		t.Fatal(err)
	}
	cfg := ConsumerConfig{Brokers: c.ListenAddrs(), Group: "g", Topics: []string{"t"}, MaxBatch: 50, MaxWait: 20 * time.Millisecond}
	cons, err := NewConsumer(cfg, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	type prep struct{ first, last int64 }
	var (
		mu                sync.Mutex
		handling          bool
		overlapped        bool
		next              int
		calls, nilCalls   int
		retriedFirstBatch bool
	)
	cctx, ccancel := context.WithCancel(ctx)
	err = cons.RunPrepared(cctx, func(_ context.Context, batch []Message) any {
		mu.Lock()
		overlapped = overlapped || handling
		mu.Unlock()
		return prep{batch[0].Offset, batch[len(batch)-1].Offset}
	}, func(_ context.Context, batch []Message, prepared any) error {
		mu.Lock()
		handling = true
		mu.Unlock()
		defer func() {
			mu.Lock()
			handling = false
			mu.Unlock()
		}()
		calls++
		if prepared == nil {
			nilCalls++
		} else if pr := prepared.(prep); pr.first != batch[0].Offset || pr.last != batch[len(batch)-1].Offset {
			t.Errorf("batch %d..%d got the preparation of %d..%d", batch[0].Offset, batch[len(batch)-1].Offset, pr.first, pr.last)
		}
		if !retriedFirstBatch {
			retriedFirstBatch = true
			return errors.New("redis down")
		}
		time.Sleep(5 * time.Millisecond) // room for the next batch's prepare
		for _, m := range batch {
			if string(m.Value) != strconv.Itoa(next) {
				t.Fatalf("got record %s, want %d", m.Value, next)
			}
			next++
		}
		if next == n {
			ccancel()
		}
		return nil
	})
	if err != nil || next != n {
		t.Fatalf("RunPrepared = %v after %d of %d records", err, next, n)
	}
	if nilCalls != 1 || calls < n/cfg.MaxBatch+1 {
		t.Errorf("%d handler calls, %d without preparation; want one retry without", calls, nilCalls)
	}
	if !overlapped {
		t.Error("no prepare ran while a batch was handled")
	}

	checkResumes(ctx, t, c, cfg, n, true)
}

// A broker that takes produce requests and never answers: Produce gives up
// after Timeout (an idempotent client never fails such a request itself) and
// the producer is not ready until Kafka acknowledges again.
func TestProduceHungBroker(t *testing.T) {
	c := newCluster(t, "t")
	ctx := context.Background()
	p, err := NewProducer(ctx, ProducerConfig{Brokers: c.ListenAddrs(), Topic: "t", Timeout: 1500 * time.Millisecond}, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Produce(ctx, []Record{{Key: []byte("a"), Value: []byte("before")}}); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		<-release // hold every produce request until the test ends
		return nil, nil, true
	})
	defer close(release)

	start := time.Now()
	err = p.Produce(ctx, []Record{{Key: []byte("a"), Value: []byte("hung")}}) // no deadline of its own
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Produce to a hung broker = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Produce took %v with Timeout 1.5s", d)
	}
	if p.Healthy() {
		t.Fatal("producer ready while Kafka does not acknowledge")
	}
	// A caller's own shorter deadline also counts as Kafka not answering.
	p.healthy.Store(true)
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := p.Produce(dctx, []Record{{Key: []byte("a"), Value: []byte("hung2")}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Produce past the caller's deadline = %v", err)
	}
	if p.Healthy() {
		t.Fatal("producer ready after the caller's deadline for Kafka passed")
	}
}

// A batch keeps being retried for longer than DrainTimeout while no shutdown
// is under way (an outage of Redis or ClickHouse), and each attempt is bounded.
func TestConsumerRetriesPastDrainTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := oneRecordTopic(ctx, t)
	for _, prepared := range []bool{false, true} {
		cons, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: fmt.Sprint("g-", prepared), Topics: []string{"t"},
			DrainTimeout: 200 * time.Millisecond}, quiet, nil)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		attempts := 0
		cctx, ccancel := context.WithCancel(ctx)
		h := func(actx context.Context, _ []Message) error {
			attempts++
			if attempts == 1 {
				<-actx.Done() // a hung call: the attempt's own deadline ends it
				return actx.Err()
			}
			if time.Since(start) < time.Second {
				return errors.New("redis down")
			}
			ccancel()
			return nil
		}
		if prepared {
			err = cons.RunPrepared(cctx, func(context.Context, []Message) any { return nil },
				func(ctx context.Context, b []Message, _ any) error { return h(ctx, b) })
		} else {
			err = cons.Run(cctx, h)
		}
		ccancel()
		if err != nil || time.Since(start) < time.Second {
			t.Fatalf("prepared=%v: Run = %v after %d attempts in %v; want nil after retrying for over a second", prepared, err, attempts, time.Since(start))
		}
	}
}

// ProduceAll takes a list larger than the queue bound in calls within it.
func TestProduceAllOverTheQueueBound(t *testing.T) {
	c := newCluster(t, "t")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := prometheus.NewRegistry()
	p, err := NewProducer(ctx, ProducerConfig{Brokers: c.ListenAddrs(), Topic: "t", MaxQueueBytes: 800}, quiet, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	recs := make([]Record, 40)
	for i := range recs {
		recs[i] = Record{Key: fmt.Appendf(nil, "k%d", i), Value: bytes.Repeat([]byte{'v'}, 90)}
	}
	if err := p.Produce(ctx, recs); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("Produce of %d bytes with an 800-byte queue = %v, want ErrQueueFull", 40*92, err)
	}
	if err := p.ProduceAll(ctx, recs); err != nil {
		t.Fatalf("ProduceAll: %v", err)
	}
	if n := testCounter(t, reg, "leadstream_kafka_produced_records_total"); n != 40 {
		t.Fatalf("produced %v records, want 40", n)
	}
}

// MaxBatchBytes closes a batch once its records reach it: large records make
// small batches, and a record over the bound alone is a batch of its own.
func TestConsumerBatchBytes(t *testing.T) {
	c := newCluster(t, "t")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := newTestProducer(ctx, t, c, prometheus.NewRegistry())
	recs := make([]Record, 20)
	for i := range recs {
		n := 1000
		if i == 10 {
			n = 10_000 // over the bound by itself
		}
		recs[i] = Record{Key: []byte("k"), Value: bytes.Repeat([]byte{byte('a' + i)}, n)} // one key: one partition, in order
	}
	if err := p.Produce(ctx, recs); err != nil {
		t.Fatal(err)
	}
	cons, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: "g", Topics: []string{"t"}, MaxBatch: 100, MaxBatchBytes: 3000, MaxWait: 200 * time.Millisecond}, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	var sizes []int
	got := 0
	err = cons.Run(cctx, func(_ context.Context, batch []Message) error {
		bytes := 0
		for _, m := range batch {
			bytes += len(m.Key) + len(m.Value)
		}
		if len(batch) > 1 && bytes-len(batch[len(batch)-1].Key)-len(batch[len(batch)-1].Value) >= 3000 {
			t.Errorf("a batch of %d records, %d bytes, went on past the 3,000-byte bound", len(batch), bytes)
		}
		sizes = append(sizes, len(batch))
		if got += len(batch); got == len(recs) {
			ccancel()
		}
		return nil
	})
	if err != nil || got != len(recs) {
		t.Fatalf("consumed %d of %d: %v", got, len(recs), err)
	}
	if len(sizes) < 6 {
		t.Errorf("batches %v: want them closed by bytes (3 records of 1 KB each at most)", sizes)
	}
}

// A batch in flight at shutdown gets StopGrace, not DrainTimeout: a handler
// waiting for a hung store is cancelled then and the batch left uncommitted
// (the next member of the group gets it again); one that finishes within
// the grace is committed.
func TestConsumerStopGrace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := oneRecordTopic(ctx, t)
	for _, prepared := range []bool{false, true} {
		for _, hung := range []bool{true, false} {
			group := fmt.Sprint("grace-", prepared, "-", hung)
			cons, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: group, Topics: []string{"t"},
				DrainTimeout: 20 * time.Second, StopGrace: 300 * time.Millisecond}, quiet, nil)
			if err != nil {
				t.Fatal(err)
			}
			cctx, ccancel := context.WithCancel(ctx)
			var stopped time.Time
			h := func(actx context.Context, _ []Message) error {
				stopped = time.Now()
				ccancel() // SIGTERM while the batch is in flight
				if hung {
					<-actx.Done()
					return actx.Err()
				}
				time.Sleep(100 * time.Millisecond)
				return nil
			}
			if prepared {
				err = cons.RunPrepared(cctx, func(context.Context, []Message) any { return nil },
					func(ctx context.Context, b []Message, _ any) error { return h(ctx, b) })
			} else {
				err = cons.Run(cctx, h)
			}
			took := time.Since(stopped)
			if hung {
				if err == nil || took > 5*time.Second {
					t.Fatalf("prepared=%v: a hung batch: Run = %v %v after the stop; want an error within the 300 ms grace, not the 20 s drain", prepared, err, took)
				}
			} else if err != nil {
				t.Fatalf("prepared=%v: a batch finished within the grace: Run = %v", prepared, err)
			}
			// What was committed decides what the group's next member reads.
			again, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: group, Topics: []string{"t"}, MaxWait: 50 * time.Millisecond}, quiet, nil)
			if err != nil {
				t.Fatal(err)
			}
			rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
			redelivered := false
			again.Run(rctx, func(context.Context, []Message) error { redelivered = true; rcancel(); return nil })
			rcancel()
			if redelivered != hung {
				t.Errorf("prepared=%v hung=%v: the record was redelivered: %v", prepared, hung, redelivered)
			}
		}
	}
}
