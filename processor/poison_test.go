package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
	"github.com/prometheus/client_golang/prometheus"
)

// Poison records in one batch with good ones: a record that is not an event,
// an identify whose traits hold a number that is not finite (1e400), and an
// event of a lead whose state in Redis does not decode. Each goes to the
// dead-letter topic with its reason, after its tries alone for the corrupt
// state; the good events of the same batch score, and so do later ones.
func TestProcessorPoisonRecords(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		good1, good2, corrupt, inf := newID("lead"), newID("lead"), newID("lead"), newID("lead")
		// Not a state leadstream wrote: any read of it fails with ErrCorruptState.
		key := leadstatetest.Key(scoring.Lead(corrupt), "s")
		if err := leadstatetest.Client(t, store).Set(ctx, key, "not a leadstream state", 0).Err(); err != nil {
			t.Fatal(err)
		}
		var logs testsvc.SyncBuffer
		r := startProcessorLog(t, store, scoring.Default(), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})))

		identify := touch(inf+"-id", event.Identify, "", inf, t0)
		identify.Traits = json.RawMessage(`{"title":"CTO","employees":1e400}`)
		batch := records(t,
			pageView(good1+"-pv1", "", good1, "/", t0),
			pageView(corrupt+"-pv1", "", corrupt, "/pricing", t0),
			identify,
			pageView(good2+"-pv1", "", good2, "/pricing", t0),
		)
		notEvent := stream.Record{Key: []byte(good1), Value: []byte(`{"event_id":`)}
		batch = append(batch[:2], append([]stream.Record{notEvent}, batch[2:]...)...)
		r.produce(t, stream.TopicEvents, batch...)

		eventually(t, "good events scored, poison dead-lettered", 20*time.Second, func() (bool, string) {
			s, d := r.events(t, "scored"), r.events(t, "dead_letter")
			return s == 2 && d == 3, fmt.Sprintf("scored=%v dead_letter=%v", s, d)
		})
		if v, _ := modelState(t, store, good1, "default"); v != "5" {
			t.Errorf("%s holds %q, want 5", good1, v)
		}
		if v, _ := modelState(t, store, good2, "default"); v != "20" {
			t.Errorf("%s holds %q, want 20 (page view + pricing)", good2, v)
		}
		if st := leadstatetest.State(t, store, scoring.Lead(inf)); st != nil && len(st.Traits) > 0 {
			t.Errorf("%s kept traits %v of an identify that was dead-lettered", inf, st.Traits)
		}

		reasons := map[string]string{} // value -> reason
		for _, dl := range r.readTopic(t, stream.TopicDeadLetter) {
			var rec struct {
				SourceTopic string `json:"source_topic"`
				Reason      string `json:"reason"`
				Value       string `json:"value"`
			}
			if err := json.Unmarshal(dl.Value, &rec); err != nil {
				t.Fatalf("dead letter %s: %v", dl.Value, err)
			}
			if rec.SourceTopic != r.kcfg.Topic(stream.TopicEvents) {
				t.Errorf("dead letter from %q", rec.SourceTopic)
			}
			reasons[rec.Value] = rec.Reason
		}
		want := map[string]string{
			string(notEvent.Value): "",      // the decoder's reason
			string(batch[1].Value): corrupt, // the corrupt state, naming the lead
			string(batch[3].Value): "1e400", // the traits
		}
		if len(reasons) != len(want) {
			t.Fatalf("dead letters %v, want %d", reasons, len(want))
		}
		for v, frag := range want {
			reason, ok := reasons[v]
			if !ok || reason == "" || !strings.Contains(reason, frag) {
				t.Errorf("dead letter of %s: reason %q (present %v), want one naming %q", v, reason, ok, frag)
			}
		}
		if !strings.Contains(reasons[string(batch[1].Value)], "corrupt lead state") {
			t.Errorf("reason %q does not say the state is corrupt", reasons[string(batch[1].Value)])
		}

		// The partition goes on: later events score, the corrupt lead's are
		// dead-lettered again until its state is repaired.
		r.produceEvents(t, pageView(good1+"-pv2", "", good1, "/pricing", t0.Add(time.Minute)),
			pageView(corrupt+"-pv2", "", corrupt, "/", t0.Add(time.Minute)))
		eventually(t, "later events handled", 20*time.Second, func() (bool, string) {
			s, d := r.events(t, "scored"), r.events(t, "dead_letter")
			return s == 3 && d == 4, fmt.Sprintf("scored=%v dead_letter=%v", s, d)
		})
		if v, _ := modelState(t, store, good1, "default"); v == "5" || v == "" {
			t.Errorf("%s holds %q after a pricing page view, want more than 5", good1, v)
		}

		// A batch full of the corrupt lead's events is done in one pass: the
		// failure confirmed on its first event is not retried on the others
		// (three tries and their waits each would add up past the consumer's
		// time for a batch with a few hundred of them).
		var many []*event.Event
		for i := range 90 {
			many = append(many, pageView(fmt.Sprintf("%s-many%d", corrupt, i), "", corrupt, "/", t0.Add(2*time.Minute)))
		}
		many = append(many, pageView(good2+"-pv2", "", good2, "/", t0.Add(2*time.Minute)))
		start := time.Now()
		r.produceEvents(t, many...)
		eventually(t, "a batch of the corrupt lead's events dead-lettered", 20*time.Second, func() (bool, string) {
			s, d := r.events(t, "scored"), r.events(t, "dead_letter")
			return s == 4 && d == 94, fmt.Sprintf("scored=%v dead_letter=%v", s, d)
		})
		if took := time.Since(start); took > 6*time.Second {
			t.Errorf("90 events of one corrupt state took %v to dead-letter, want one try each after the first (about 50 ms each retried: 13 s)", took)
		}
		if strings.Contains(logs.String(), corrupt) {
			t.Errorf("the corrupt lead's id is in the processor's info log:\n%s", logs.String())
		}
	})
}

// An event whose ids are larger than the collector lets through (written to
// Kafka by something else) is dead-lettered with its reason, not scored into
// an MQL record Kafka would refuse for ever.
func TestProcessorOversizedIDs(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		r := startProcessor(t, store, scoring.Default())
		huge := strings.Repeat("x", 70<<10) + "@example.com"
		good := newID("lead")
		r.produceEvents(t, touch(newID("dw"), event.DealWon, "", huge, t0), pageView(good+"-pv", "", good, "/pricing", t0))
		eventually(t, "the oversized event dead-lettered, the other scored", 20*time.Second, func() (bool, string) {
			s, d := r.events(t, "scored"), r.events(t, "dead_letter")
			return s == 1 && d == 1, fmt.Sprintf("scored=%v dead_letter=%v", s, d)
		})
		dl := r.readTopic(t, stream.TopicDeadLetter)
		if len(dl) != 1 || !strings.Contains(string(dl[0].Value), "ids take") {
			t.Fatalf("dead letters %d, want one naming the ids' size", len(dl))
		}
	})
}

// A batch whose events touch many different corrupt states still ends when
// one attempt (bounded in time by the consumer) cannot isolate them all:
// after the first confirmed failure the others are dead-lettered on their
// first, and what an attempt confirmed is kept for the next. Before, each
// corrupt lead took three tries and 150 ms of waits (300 of them: 45 s, past
// the consumer's 30 s per attempt, retried for ever with nothing kept).
func TestProcessorManyCorruptStates(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		kcfg := stream.Config{Brokers: testsvc.Kafka(t), TopicPrefix: newID("t") + ".", Partitions: 1, ReplicationFactor: -1}
		if err := stream.EnsureTopics(ctx, kcfg); err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		p, err := New(Config{Kafka: kcfg, Group: "scoring", BatchSize: 500, DedupWindow: testWindow}, scoring.Default(), store, slog.New(slog.DiscardHandler), reg)
		if err != nil {
			t.Fatal(err)
		}
		if p.dead, err = stream.NewProducer(ctx, kcfg.Producer(stream.TopicDeadLetter), slog.New(slog.DiscardHandler), nil); err != nil {
			t.Fatal(err)
		}
		defer p.dead.Close()
		var batch []stream.Message
		good := newID("lead")
		for i := range 300 {
			lead := newID("lead")
			if err := leadstatetest.Client(t, store).Set(ctx, leadstatetest.Key(scoring.Lead(lead), "s"), "not a leadstream state", 0).Err(); err != nil {
				t.Fatal(err)
			}
			e := pageView(lead+"-pv", "", lead, "/pricing", t0)
			if i == 150 {
				e = pageView(good+"-pv", "", good, "/pricing", t0)
			}
			v, _ := event.Marshal(e)
			batch = append(batch, stream.Message{Topic: kcfg.Topic(stream.TopicEvents), Offset: int64(i), Key: []byte(e.Key()), Value: v})
		}
		attempts := 0
		for {
			attempts++
			// Short attempts, so one pass may not get through them all.
			actx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			err := p.handle(actx, batch, nil)
			cancel()
			if err == nil {
				break
			}
			if attempts == 20 {
				t.Fatalf("batch not handled after %d attempts of 300 ms: %v", attempts, err)
			}
		}
		if n := (&running{reg: reg}).events(t, "dead_letter"); n != 299 {
			t.Errorf("dead-lettered %v events, want 299", n)
		}
		if v, _ := modelState(t, store, good, "default"); v != "20" {
			t.Errorf("the good lead holds %q, want 20", v)
		}
		if len(p.poison) != 0 {
			t.Errorf("%d confirmed records kept after the batch was done", len(p.poison))
		}
		t.Logf("300 events, 299 corrupt states: handled in %d attempt(s) of at most 300 ms", attempts)
	})
}
