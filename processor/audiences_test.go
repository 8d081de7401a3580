package processor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/audience"
	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// The processor keeps audience hits in Redis (single node and cluster) and
// the audience reader answers from them: three pricing views make a
// pricing-returner, two do not; a visitor that identifies answers the lead's
// audiences, its own hits included, once the question proves the lead, and
// only its own state's otherwise; redelivered events count once.
func TestProcessorAudiences(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		rules := scoring.Default()
		r := startProcessor(t, store, rules)
		rd := audience.New(store, rules)
		now := time.Now().UTC().Add(-time.Minute)
		view := func(id, lead, anon string, at time.Time) *event.Event {
			return &event.Event{ID: id, Type: event.PageView, EventTime: at, ReceivedAt: at, LeadID: lead, AnonymousID: anon, Path: "/demo/pricing.html"} // the audience's page, not the pricing rule's
		}
		returner, two, lead := newID("returner"), newID("two"), newID("lead")
		var evs []*event.Event
		for i := range 3 {
			evs = append(evs, view(fmt.Sprintf("%s-%d", returner, i), "", returner, now.Add(time.Duration(i)*time.Second)))
		}
		for i := range 2 {
			evs = append(evs, view(fmt.Sprintf("%s-%d", two, i), "", two, now.Add(time.Duration(i)*time.Second)))
		}
		evs = append(evs, evs[0], evs[3]) // redelivered
		r.produceEvents(t, evs...)

		ask := func(anon string, proven ...string) []string {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := rd.Audiences(ctx, anon, strings.Join(proven, ""))
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		testsvc.Eventually(t, "returner's audiences", 15*time.Second, 20*time.Millisecond, func() (bool, string) {
			got := ask(returner)
			return slices.Equal(got, []string{"pricing-returner"}), fmt.Sprint(got)
		})
		testsvc.Eventually(t, "the second visitor's hits stored", 15*time.Second, 20*time.Millisecond, func() (bool, string) {
			recs, err := store.Read(context.Background(), []scoring.Subject{scoring.Anon(two)})
			if err != nil {
				t.Fatal(err)
			}
			st := recs[scoring.Anon(two)].State
			return st != nil && len(st.Audiences["pricing-returner"]) == 2, fmt.Sprintf("%+v", st)
		})
		if got := ask(two); len(got) != 0 {
			t.Fatalf("two pricing views (one redelivered): %v", got)
		}
		if got := ask(newID("stranger")); got != nil {
			t.Fatalf("unknown visitor: %v", got)
		}

		// The second visitor identifies as a lead that viewed pricing once
		// from elsewhere, with a form: the lead's third view, and warm (5 + 30 +
		// the visitor's 10 >= 40).
		form := &event.Event{ID: newID("form"), Type: event.FormSubmit, EventTime: now.Add(3 * time.Second), ReceivedAt: now.Add(3 * time.Second), LeadID: lead}
		r.produceEvents(t, view(newID("lv"), lead, "", now.Add(2*time.Second)), form)
		r.produceEvents(t, &event.Event{ID: newID("id"), Type: event.Identify, EventTime: now.Add(4 * time.Second), ReceivedAt: now.Add(4 * time.Second), LeadID: lead, AnonymousID: two})
		testsvc.Eventually(t, "identified visitor's audiences", 15*time.Second, 20*time.Millisecond, func() (bool, string) {
			got := ask(two, lead)
			return slices.Equal(got, []string{"pricing-returner", "warm"}), fmt.Sprint(got)
		})
		// Without the proof (or with another lead's) the link does not open
		// the lead's audiences: a page could link any id to any lead.
		for _, proven := range []string{"", newID("other")} {
			if got := ask(two, proven); len(got) != 0 {
				t.Errorf("identified visitor asked with lead %q: %v, want only its own state's (none)", proven, got)
			}
		}
	})
}
