package sink

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
)

func TestParallelCoversEveryIndexOnce(t *testing.T) {
	for _, n := range []int{0, 1, minChunk - 1, 2 * minChunk, 2*minChunk + 1, 10007} {
		seen := make([]atomic.Int32, n)
		parallel(n, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				seen[i].Add(1)
			}
		})
		for i := range seen {
			if c := seen[i].Load(); c != 1 {
				t.Fatalf("n=%d: index %d handled %d times", n, i, c)
			}
		}
	}
}

// A batch large enough to be decoded on several goroutines and sent as several blocks, with bad records
// among the good ones: every good event is stored exactly once, in full, and
// every bad one goes to the dead-letter topic.
func TestHandleDecodesLargeBatchInParallel(t *testing.T) {
	conn, chCfg := testDB(t)
	kcfg := stream.Config{TopicPrefix: "leadstream.", Partitions: testsvc.KafkaPartitions, ReplicationFactor: -1}
	kcfg.Brokers = testsvc.Kafka(t, kcfg.Topic(stream.TopicDeadLetter))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := warehouse.Migrate(ctx, conn, chCfg.Database); err != nil {
		t.Fatal(err)
	}
	dlq, err := stream.NewProducer(ctx, stream.ProducerConfig{Brokers: kcfg.Brokers, Topic: kcfg.Topic(stream.TopicDeadLetter)}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	m := newMetrics(prometheus.NewRegistry())
	h := &handler{w: writer{conn: conn, db: chCfg.Database, m: m}, dlq: dlq, log: slog.New(slog.DiscardHandler),
		eventsTopic: "ev", mqlTopic: "mq", ok: func() {}}

	const n = 2*blockRows + 1000 // three blocks
	evs := testEvents(n)
	bad := map[int]string{0: "{not json", 1234: `{"event_id":"x"}`}
	var batch []stream.Message
	for i := range evs {
		if v, ok := bad[len(batch)]; ok {
			batch = append(batch, stream.Message{Topic: "ev", Offset: int64(len(batch)), Value: []byte(v)})
		}
		b, err := event.Marshal(&evs[i])
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, stream.Message{Topic: "ev", Offset: int64(len(batch)), Value: b})
		if i == n/2 {
			batch = append(batch, stream.Message{Topic: "mq", Value: []byte(`{"lead_id":"l"}`)})
		}
	}
	last := len(batch)
	batch = append(batch, stream.Message{Topic: "ev", Offset: int64(last), Value: []byte(`{"event_id":"y","type":"page_view"`)})
	// Twice, as a retried batch would be: the scratch space is reused.
	for range 2 {
		if err := h.handle(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	var parts uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.parts WHERE active AND database = '"+chCfg.Database+"' AND table = 'events'").Scan(&parts); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events in blocks of %d, twice: %d active parts", n, blockRows, parts)
	stored := storedEvents(t, conn, chCfg.Database)
	if len(stored) != n {
		t.Fatalf("stored %d distinct events, want %d", len(stored), n)
	}
	for _, e := range evs {
		if got := stored[e.ID]; !reflect.DeepEqual(got, asStored(e)) {
			t.Fatalf("event %s round trip:\n got %+v\nwant %+v", e.ID, got, asStored(e))
		}
	}
	if got := counterValue(t, m.deadLetters.WithLabelValues("ev")); got != 2*3 {
		t.Errorf("dead letters from events = %v, want 6 (3 per attempt)", got)
	}
	if got := counterValue(t, m.deadLetters.WithLabelValues("mq")); got != 2 {
		t.Errorf("dead letters from mql = %v, want 2", got)
	}
	dead := readDeadLetters(ctx, t, kcfg, 8)
	var reasons []string
	for _, d := range dead {
		reasons = append(reasons, fmt.Sprintf("%s@%d:%s", d.SourceTopic, d.Offset, d.Reason))
	}
	sort.Strings(reasons)
	for _, want := range []string{"ev@0:decoding event", fmt.Sprintf("ev@%d:invalid event", 1234), fmt.Sprintf("ev@%d:decoding event", last)} {
		found := false
		for _, r := range reasons {
			found = found || strings.HasPrefix(r, want)
		}
		if !found {
			t.Errorf("no dead letter %q among %q", want, reasons)
		}
	}
}
