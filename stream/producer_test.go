package stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Records land on the murmur2 partition of their key (the one Partition
// names), byte for byte, in the order of each Produce call within a
// partition, while concurrent callers share multi-partition requests.
func TestProducePartitionsAndOrder(t *testing.T) {
	c := newCluster(t, "t")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := prometheus.NewRegistry()
	p := newTestProducer(ctx, t, c, reg)
	const callers, per = 8, 300
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			for round := range 3 {
				recs := make([]Record, per/3)
				for i := range recs {
					recs[i] = Record{Key: fmt.Appendf(nil, "key-%d-%d", g, i%5), Value: fmt.Appendf(nil, "%d/%d/%04d", g, round, i)}
				}
				if err := p.Produce(ctx, recs); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n := testCounter(t, reg, "leadstream_kafka_produced_records_total"); n != callers*per {
		t.Fatalf("produced %v records, want %d", n, callers*per)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("t"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	last := map[string][]byte{} // key -> last value seen
	got := 0
	for got < callers*per {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records: %v", got, callers*per, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			if want := p.Partition(r.Key); int(r.Partition) != want {
				t.Errorf("key %s on partition %d, want %d", r.Key, r.Partition, want)
			}
			if prev, ok := last[string(r.Key)]; ok && bytes.Compare(prev, r.Value) >= 0 {
				t.Errorf("key %s: %s after %s", r.Key, r.Value, prev)
			}
			last[string(r.Key)] = r.Value
			if r.Timestamp.IsZero() || time.Since(r.Timestamp) > time.Minute {
				t.Errorf("record timestamp %v", r.Timestamp)
			}
		})
	}
	if got != callers*per {
		t.Fatalf("read %d records, want %d", got, callers*per)
	}
}

// A broker that stops answering (a black-holed host, no RST): Close does not
// wait for the idle producer's background ping (up to pingInterval) before it
// even starts to flush. Nothing is queued here, so Close is immediate.
func TestProducerCloseDoesNotWaitForPing(t *testing.T) {
	c := newCluster(t, "t")
	ctx := context.Background()
	p := newTestProducer(ctx, t, c, nil)
	pinging := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	c.ControlKey(int16(kmsg.Metadata), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if req := r.(*kmsg.MetadataRequest); req.Topics != nil && len(req.Topics) == 0 { // kgo's Ping
			select {
			case pinging <- struct{}{}:
			default:
			}
			<-release
			return nil, errors.New("hung"), true
		}
		return nil, nil, false
	})
	select {
	case <-pinging:
	case <-time.After(3 * pingInterval):
		t.Fatalf("no ping within %v", 3*pingInterval)
	}
	start := time.Now()
	_ = p.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close of an idle producer took %v: it waited for the background ping", d.Round(time.Millisecond))
	}
}

// A Produce whose caller got an error because Kafka did not acknowledge in
// time (the producer's Timeout, or the caller's own deadline) counts its
// records in leadstream_kafka_produce_failed_records_total, and not as
// produced when Kafka acknowledges them later.
func TestProduceGivenUpCountsFailed(t *testing.T) {
	for _, callerDeadline := range []bool{false, true} {
		t.Run(fmt.Sprint("caller_deadline=", callerDeadline), func(t *testing.T) {
			c := newCluster(t, "t")
			ctx := context.Background()
			reg := prometheus.NewRegistry()
			p, err := NewProducer(ctx, ProducerConfig{Brokers: c.ListenAddrs(), Topic: "t", Timeout: time.Second}, quiet, reg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			release := make(chan struct{})
			c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
				<-release // hold the first produce request, then let it through
				return nil, nil, false
			})
			pctx, cancel := ctx, context.CancelFunc(func() {})
			want := ErrUnavailable
			if callerDeadline {
				pctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
				want = context.DeadlineExceeded
			}
			err = p.Produce(pctx, []Record{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Value: []byte("2")}})
			cancel()
			if !errors.Is(err, want) {
				t.Fatalf("Produce = %v, want %v", err, want)
			}
			if failed := testCounter(t, reg, "leadstream_kafka_produce_failed_records_total"); failed != 2 {
				t.Errorf("Produce returned %v; produce_failed_records_total = %v, want 2", err, failed)
			}
			close(release) // Kafka acknowledges them now
			deadline := time.Now().Add(30 * time.Second)
			for p.queued.Load() != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d bytes still queued 30 s after the broker answered", p.queued.Load())
				}
				time.Sleep(20 * time.Millisecond)
			}
			failed := testCounter(t, reg, "leadstream_kafka_produce_failed_records_total")
			produced := testCounter(t, reg, "leadstream_kafka_produced_records_total")
			if failed != 2 || produced != 0 {
				t.Errorf("after the late acknowledgement: produce_failed_records_total = %v, produced_records_total = %v; want 2 and 0", failed, produced)
			}
			// The producer still works and counts what it acknowledges.
			if err := p.Produce(ctx, []Record{{Key: []byte("c"), Value: []byte("3")}}); err != nil {
				t.Fatal(err)
			}
			if produced := testCounter(t, reg, "leadstream_kafka_produced_records_total"); produced != 1 {
				t.Errorf("produced_records_total = %v after one acknowledged record, want 1", produced)
			}
		})
	}
}

// Close does not wait for records whose callers gave up (told they were not
// written): with the broker gone, a processor whose last publish timed out
// waited the Timeout again in Close, flushing records no one waited for, and
// a stop with Kafka down took twice the Timeout.
func TestProducerCloseSkipsGivenUpRecords(t *testing.T) {
	c := newCluster(t, "t")
	ctx := context.Background()
	p, err := NewProducer(ctx, ProducerConfig{Brokers: c.ListenAddrs(), Topic: "t", Timeout: 20 * time.Second}, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := p.Produce(pctx, []Record{{Key: []byte("a"), Value: []byte("1")}}); err == nil {
		t.Fatal("Produce with the broker gone succeeded")
	}
	start := time.Now()
	_ = p.Close()
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Close took %v: it flushed records whose caller gave up (Timeout %v)", d.Round(time.Millisecond), 20*time.Second)
	}
}

// leadstream_kafka_produce_wait_seconds splits a call's time where it goes: a
// call that found both bursts in flight waits in phase "queued" until one is
// acknowledged, a call whose produce request the broker holds waits in
// "kafka", and every acknowledged call is observed once in each phase.
func TestProduceWaitPhases(t *testing.T) {
	c := newCluster(t, "t")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := prometheus.NewRegistry()
	p := newTestProducer(ctx, t, c, reg)
	defer p.Close()
	release := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		<-release // the broker holds produce requests until the test lets them through
		return nil, nil, false
	})
	produce := func(key string) <-chan error {
		done := make(chan error, 1)
		go func() { done <- p.Produce(ctx, []Record{{Key: []byte(key), Value: []byte(key)}}) }()
		return done
	}
	// Two calls fill both bursts; the third finds none free.
	var calls []<-chan error
	for i := range burstsInFlight {
		calls = append(calls, produce(fmt.Sprint("in-flight-", i)))
		for len(p.slots) != burstsInFlight-1-i {
			if ctx.Err() != nil {
				t.Fatalf("burst %d never handed to the client", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	calls = append(calls, produce("queued"))
	const held = 300 * time.Millisecond
	time.Sleep(held)
	close(release)
	for _, done := range calls {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	phases := map[string][2]float64{} // phase -> count, sum
	for _, mf := range mfs {
		if mf.GetName() != "leadstream_kafka_produce_wait_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			phases[m.GetLabel()[0].GetValue()] = [2]float64{float64(m.GetHistogram().GetSampleCount()), m.GetHistogram().GetSampleSum()}
		}
	}
	n := float64(len(calls))
	for _, phase := range []string{"queued", "kafka", "wakeup"} {
		if got := phases[phase][0]; got != n {
			t.Errorf("phase %s observed %v calls, want %v", phase, got, n)
		}
	}
	// The held calls waited in "kafka" for the whole hold, the queued one in
	// "queued"; waking the callers took a small part of it.
	if got := phases["kafka"][1]; got < burstsInFlight*held.Seconds() {
		t.Errorf("phase kafka: %.3f s in all, want at least %.3f s (%d calls held %v)", got, burstsInFlight*held.Seconds(), burstsInFlight, held)
	}
	if got := phases["queued"][1]; got < held.Seconds()/2 {
		t.Errorf("phase queued: %.3f s in all, want at least %.3f s (a call waited for a free burst while both were held)", got, held.Seconds()/2)
	}
	if got := phases["wakeup"][1]; got > held.Seconds() {
		t.Errorf("phase wakeup: %.3f s in all for %v calls", got, n)
	}
}

// A burst goes out once it is handed to the client, not after the linger:
// the linger only keeps the client from sending a burst's first record
// alone, and waiting it out cost every single-event request 0.2 ms (the
// Kafka phase of /v1/track under wrk was 0.98–1.15 ms with it, 0.66–0.69
// without).
func TestProduceDoesNotWaitOutTheLinger(t *testing.T) {
	c := newCluster(t, "t")
	ctx := context.Background()
	const linger = 1500 * time.Millisecond
	p, err := NewProducer(ctx, ProducerConfig{Brokers: c.ListenAddrs(), Topic: "t", Linger: linger}, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// The very first burst waits for the topic's partitions to be known
	// to the client, which starts their lingers after the flush.
	if err := p.Produce(ctx, []Record{{Key: []byte("first"), Value: []byte("v")}}); err != nil {
		t.Fatal(err)
	}
	var produced int
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		produced++
		return nil, nil, false
	})
	for round := range 3 {
		recs := make([]Record, 40) // several partitions: still one request
		for i := range recs {
			recs[i] = Record{Key: fmt.Appendf(nil, "k%d", i), Value: []byte("v")}
		}
		start := time.Now()
		if err := p.Produce(ctx, recs); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > linger/2 {
			t.Fatalf("round %d: Produce took %v with a %v linger: the burst waited for it", round, d.Round(time.Millisecond), linger)
		}
	}
	if produced != 3 {
		t.Errorf("%d produce requests for 3 bursts, want one each", produced)
	}
}
