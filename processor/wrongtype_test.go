package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
)

// Keys of a subject that hold another Redis type than leadstream writes
// there (written by something else: an operator's mistake, another
// application sharing the database) can never be read or written, as a
// corrupt state: the events that need them are dead-lettered with the
// reason, naming the subject, and the rest of the partition goes on. A lead
// whose outbox is not a hash is not stored at all when it crosses (an
// earlier release stored its state, then failed to record the crossing: the
// MQL was lost, and the batch failed at every retry after, reading that
// outbox).
func TestProcessorWrongTypeKeys(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		good, hashState, strOutbox := newID("lead"), newID("lead"), newID("lead")
		c := leadstatetest.Client(t, store)
		if err := c.HSet(ctx, leadstatetest.Key(scoring.Lead(hashState), "s"), "f", "v").Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.Set(ctx, leadstatetest.Key(scoring.Lead(strOutbox), "o"), "not an outbox", 0).Err(); err != nil {
			t.Fatal(err)
		}
		r := startProcessor(t, store, scoring.Default())
		at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
		id := touch(strOutbox+"-id", event.Identify, "", strOutbox, at(0))
		id.Traits = json.RawMessage(`{"title":"CTO"}`)
		crossing := []*event.Event{ // fit 20 + 5 + 20 + 15 + 50: an MQL
			id,
			pageView(strOutbox+"-pv1", "", strOutbox, "/", at(1)),
			pageView(strOutbox+"-pv2", "", strOutbox, "/pricing", at(2)),
			touch(strOutbox+"-ec1", event.EmailClick, "", strOutbox, at(3)),
			touch(strOutbox+"-dw1", event.DealWon, "", strOutbox, at(4)),
		}
		evs := append([]*event.Event{
			pageView(good+"-pv1", "", good, "/pricing", at(0)),
			pageView(hashState+"-pv1", "", hashState, "/pricing", at(0)),
		}, crossing...)
		r.produceEvents(t, evs...)
		// An event stored by an attempt of its batch that then failed counts
		// as a duplicate when the batch is scored event by event.
		eventually(t, "good events scored, the others dead-lettered", 20*time.Second, func() (bool, string) {
			s, dup, d := r.events(t, "scored"), r.events(t, "duplicate"), r.events(t, "dead_letter")
			return s+dup+d == float64(len(evs)), fmt.Sprintf("scored=%v duplicate=%v dead_letter=%v of %d", s, dup, d, len(evs))
		})
		if v, _ := modelState(t, store, good, "default"); v != "20" {
			t.Errorf("%s holds %q, want 20", good, v)
		}
		if st := leadstatetest.State(t, store, scoring.Lead(strOutbox)); st != nil && st.Model("default") != nil && st.Model("default").MQL {
			t.Errorf("%s is stored as an MQL although its crossing could not be recorded: %+v", strOutbox, st.Model("default"))
		}
		dead := map[string]string{}
		for _, dl := range r.readTopic(t, stream.TopicDeadLetter) {
			var rec struct{ Reason, Value string }
			if err := json.Unmarshal(dl.Value, &rec); err != nil {
				t.Fatal(err)
			}
			var e event.Event
			if err := event.Unmarshal([]byte(rec.Value), &e); err != nil {
				t.Fatal(err)
			}
			dead[e.ID] = rec.Reason
		}
		for _, want := range []string{hashState + "-pv1", strOutbox + "-dw1"} {
			lead, _, _ := strings.Cut(want, "-pv1")
			lead, _, _ = strings.Cut(lead, "-dw1")
			if reason, ok := dead[want]; !ok || !strings.Contains(reason, lead) || !strings.Contains(reason, "WRONGTYPE") {
				t.Errorf("dead letter of %s: %q (present %v), want a reason naming %s and WRONGTYPE", want, reason, ok, lead)
			}
		}
	})
}
