package stream

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
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
