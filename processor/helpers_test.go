package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
)

// t0 is a fixed event time: expected scores never depend on the clock.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testWindow is the tests' dedup window: wide enough that events at t0 are
// neither late nor stale whenever the tests run (as for a historical import).
const testWindow = 20 * 365 * 24 * time.Hour

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newID(prefix string) string { return fmt.Sprintf("%s-%016x", prefix, rand.Uint64()) }

// running is a Processor running on its own kfake broker.
type running struct {
	kcfg  stream.Config
	reg   *prometheus.Registry
	store *leadstate.Store
	rules *scoring.Rules
}

// startProcessor creates the topics (4 partitions) on a new kfake broker and
// runs a Processor on them until the test ends.
func startProcessor(t *testing.T, store *leadstate.Store, rules *scoring.Rules) *running {
	t.Helper()
	return startProcessorLog(t, store, rules, quiet)
}

// startProcessorLog is startProcessor logging to log.
func startProcessorLog(t *testing.T, store *leadstate.Store, rules *scoring.Rules, log *slog.Logger) *running {
	t.Helper()
	ctx := context.Background()
	kcfg := stream.Config{Brokers: testsvc.Kafka(t), TopicPrefix: newID("t") + ".", Partitions: 4, ReplicationFactor: -1}
	if err := stream.EnsureTopics(ctx, kcfg); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	p, err := New(Config{Kafka: kcfg, Group: "scoring", BatchSize: 100, MaxWait: 10 * time.Millisecond, DedupWindow: testWindow}, rules, store, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("processor: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("processor did not stop within 15s")
		}
	})
	return &running{kcfg: kcfg, reg: reg, store: store, rules: rules}
}

// produce writes records to a topic of r (acks=all).
func (r *running) produce(t *testing.T, suffix string, recs ...stream.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	p, err := stream.NewProducer(ctx, stream.ProducerConfig{Brokers: r.kcfg.Brokers, Topic: r.kcfg.Topic(suffix)}, quiet, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Produce(ctx, recs); err != nil {
		t.Fatal(err)
	}
}

// produceEvents writes events in their topic form, keyed as the collector keys them.
func (r *running) produceEvents(t *testing.T, evs ...*event.Event) {
	t.Helper()
	recs := make([]stream.Record, len(evs))
	for i, e := range evs {
		b, err := event.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = stream.Record{Key: []byte(e.Key()), Value: b}
	}
	r.produce(t, stream.TopicEvents, recs...)
}

// readTopic reads every record of a topic with a fresh consumer group: it
// counts the records Kafka holds (end offsets) and consumes until it has them all.
func (r *running) readTopic(t *testing.T, suffix string) []stream.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	topic := r.kcfg.Topic(suffix)
	client := &kafka.Client{Addr: kafka.TCP(r.kcfg.Brokers...), Timeout: 10 * time.Second}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: nil}}
	for p := range r.kcfg.Partitions {
		req.Topics[topic] = append(req.Topics[topic], kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	res, err := client.ListOffsets(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			t.Fatalf("offsets of %s/%d: %v", topic, p.Partition, p.Error)
		}
		want += p.LastOffset - p.FirstOffset
	}
	if want == 0 {
		return nil
	}
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: r.kcfg.Brokers, Group: newID("reader"), Topics: []string{topic},
		MaxBatch: 100, MaxWait: 10 * time.Millisecond}, quiet, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got []stream.Message
	)
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Run(rctx, func(_ context.Context, batch []stream.Message) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, batch...)
			if int64(len(got)) >= want {
				rcancel()
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reading %s: %v", topic, err)
		}
	case <-time.After(30 * time.Second): // its deadline is 15 s: a stop that hangs is a failure, not a test timeout
		t.Fatalf("reading %s: the consumer did not stop 30 s after it began", topic)
	}
	rcancel()
	mu.Lock()
	defer mu.Unlock()
	// More than want is fine: records produced after the offsets were
	// listed (a pending record being published) are read too.
	if int64(len(got)) < want {
		t.Fatalf("read %d records of %s within the deadline, Kafka holds %d", len(got), topic, want)
	}
	return got
}

// mqls decodes the mql topic: all records, and how many distinct mql_ids.
func (r *running) mqls(t *testing.T) ([]event.MQL, int) {
	t.Helper()
	var out []event.MQL
	ids := map[string]bool{}
	for _, m := range r.readTopic(t, stream.TopicMQL) {
		var rec event.MQL
		if err := json.Unmarshal(m.Value, &rec); err != nil {
			t.Fatalf("mql record %s: %v", m.Value, err)
		}
		if string(m.Key) != rec.LeadID {
			t.Errorf("mql record keyed %q, lead %q", m.Key, rec.LeadID)
		}
		out = append(out, rec)
		ids[rec.MQLID] = true
	}
	return out, len(ids)
}

// events returns leadstream_processor_events_total{result}.
func (r *running) events(t *testing.T, result string) float64 {
	t.Helper()
	return r.metric(t, "leadstream_processor_events_total", result)
}

func (r *running) metric(t *testing.T, name, result string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := result == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{result=%q} not found", name, result)
	return 0
}

// eventually polls f until it reports true, failing with its last state after timeout.
func eventually(t *testing.T, what string, timeout time.Duration, f func() (bool, string)) {
	t.Helper()
	testsvc.Eventually(t, what, timeout, 20*time.Millisecond, f)
}

// modelState returns the stored v and t of a subject's model ("" when it
// has none); id "a:X" names visitor X.
func modelState(t *testing.T, s *leadstate.Store, id, model string) (string, string) {
	t.Helper()
	subj := scoring.Lead(id)
	if anon, ok := strings.CutPrefix(id, "a:"); ok {
		subj = scoring.Anon(anon)
	}
	st := leadstatetest.State(t, s, subj)
	if st == nil || st.Model(model) == nil {
		return "", ""
	}
	ms := st.Model(model)
	return strconv.FormatFloat(ms.V, 'g', -1, 64), strconv.FormatInt(ms.T, 10)
}

func outboxLen(t *testing.T, s *leadstate.Store, lead string) int64 {
	t.Helper()
	return leadstatetest.OutboxLen(t, s, lead)
}

// expect folds events into what a lead's first model must hold, computed in Go
// with scoring: the behaviour state (v, t) and each rule's points decayed to t.
func expect(m *scoring.Model, evs ...*event.Event) (v float64, tm int64, rules map[string]float64) {
	type st struct {
		v float64
		t int64
	}
	per := map[string]st{}
	for _, e := range evs {
		te := e.EventTime.UnixMilli()
		for _, h := range m.Match(e, nil) {
			v, tm = scoring.Add(v, tm, h.Points, te, m.HalfLife)
			r := per[h.Name]
			r.v, r.t = scoring.Add(r.v, r.t, h.Points, te, m.HalfLife)
			per[h.Name] = r
		}
	}
	rules = map[string]float64{}
	for name, r := range per {
		rules[name] = scoring.ValueAt(r.v, r.t, tm, m.HalfLife)
	}
	return v, tm, rules
}

// reasons sorts rule points and fit reasons the way MQL records list them.
func reasons(rules map[string]float64, fit []event.Reason) []event.Reason {
	var out []event.Reason
	for name, p := range rules {
		out = append(out, event.Reason{Rule: name, Points: p})
	}
	out = append(out, fit...)
	event.SortReasons(out)
	return out
}

func sameReasons(got, want []event.Reason) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].Rule != want[i].Rule || !near(got[i].Points, want[i].Points) {
			return false
		}
	}
	return true
}

// near compares to 1e-12 relative (MQL reasons pass through Lua cjson, 14 digits).
func near(a, b float64) bool {
	d := a - b
	if d < 0 {
		d = -d
	}
	m := max(1, a, -a, b, -b)
	return d <= 1e-12*m
}

func pageView(id, anon, lead, path string, at time.Time) *event.Event {
	return &event.Event{ID: id, Type: event.PageView, EventTime: at, ReceivedAt: at, AnonymousID: anon, LeadID: lead,
		URL: "https://acme.example" + path, Path: path}
}

func touch(id string, typ event.Type, anon, lead string, at time.Time) *event.Event {
	return &event.Event{ID: id, Type: typ, EventTime: at, ReceivedAt: at, AnonymousID: anon, LeadID: lead}
}
