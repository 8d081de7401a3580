package processor

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadapi"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// States read ahead can be stale: another processor (or the batch handled
// while this one was read) stored a subject meanwhile. Every write the plan
// made from a stale state must lose its compare-and-set, and so must every
// write that depends on one: here a visitor read as having no state (so an
// identify only links it, and its redelivered page views score on the lead)
// while the visitor's page views were stored meanwhile. Were the lead's
// write stored beside the link's lost one, the page views would count twice:
// once on the lead and once more when the visitor's history is merged.
func TestScoreStaleReadAhead(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		rules := scoring.Default()
		m := &rules.Models[0]
		for _, name := range []string{"visitor absent", "lead absent too"} {
			anon, lead := newID("anon"), newID("lead")
			at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
			pv1 := pageView(anon+"-pv1", anon, "", "/", at(0))
			pv2 := pageView(anon+"-pv2", anon, "", "/pricing", at(1))
			id := touch(anon+"-id1", event.Identify, anon, lead, at(2))
			id.Traits = json.RawMessage(`{"title":"CTO"}`)
			pv3 := pageView(anon+"-pv3", anon, "", "/", at(5))

			// What the next batch reads ahead: nothing stored yet.
			stale := map[scoring.Subject]leadstate.Record{scoring.Anon(anon): {}}
			if name == "lead absent too" {
				stale[scoring.Lead(lead)] = leadstate.Record{}
			}
			// Meanwhile the page views are stored.
			sc := NewScorer(scoring.NewCore(rules, testWindow), store, scoring.DefaultAnonymousTTL)
			if res, err := sc.Score(ctx, []*event.Event{pv1, pv2}, map[scoring.Subject]leadstate.Record{}); err != nil || res.Outcomes[0] != scoring.Scored || res.Outcomes[1] != scoring.Scored {
				t.Fatalf("%s: first batch: %+v, %v", name, res, err)
			}
			// The next batch: the identify, a page view after it, and the
			// first two delivered again.
			res, err := sc.Score(ctx, []*event.Event{id, pv3, pv1, pv2}, stale)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			want := []scoring.Outcome{scoring.Scored, scoring.Scored, scoring.Duplicate, scoring.Duplicate}
			for i, o := range res.Outcomes {
				if o != want[i] {
					t.Errorf("%s: event %d: %v, want %v", name, i, o, want[i])
				}
			}
			bv, tm, _ := expect(m, pv1, pv2, id, pv3)
			lv, err := leadapi.Read(ctx, store, lead, rules.Models, time.UnixMilli(tm))
			if err != nil {
				t.Fatal(err)
			}
			if mv := lv.Models[m.Name]; !near(mv.Score, bv+20) {
				t.Errorf("%s: lead score %v, want %v (page views counted once)", name, mv.Score, bv+20)
			}
			if l := leadstatetest.LinkedLead(t, store, anon); l != lead {
				t.Errorf("%s: LinkedLead = %q", name, l)
			}
		}
	})
}
