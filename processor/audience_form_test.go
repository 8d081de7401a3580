package processor

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/leadstream/leadstream/audience"
	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// README (Personalization): "Without proof, a visitor who filled a form on a
// marketing site keeps the audiences of its anonymous history only". A
// visitor views pricing three times (pricing-returner), then fills a form
// (form_submit with its anonymous id and the lead id it typed). Asked
// without a userHash (a marketing site has no signed-in user to hash), it is
// still a pricing-returner: its link keeps its own hits while the lead's
// state holds them too. Another visitor filling a form as the same lead
// gets none of the lead's audiences without the proof, and a visitor whose
// pricing views come after its form (anonymous page views of a visitor
// merged into a lead) becomes a pricing-returner on its own.
func TestVisitorKeepsAnonymousAudiencesAfterFormFill(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		rules := scoring.Default()
		r := startProcessor(t, store, rules)
		rd := audience.New(store, rules)
		now := time.Now().UTC().Add(-time.Minute)
		v, lead := newID("v"), newID("lead")
		var evs []*event.Event
		for i := range 3 {
			evs = append(evs, pageView(fmt.Sprintf("%s-%d", v, i), v, "", "/demo/pricing.html", now.Add(time.Duration(i)*time.Second)))
		}
		r.produceEvents(t, evs...)
		ask := func(anon, proven string) []string {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := rd.Audiences(ctx, anon, proven)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		eventually(t, "pricing-returner before the form", 15*time.Second, func() (bool, string) {
			got := ask(v, "")
			return slices.Contains(got, "pricing-returner"), fmt.Sprint(got)
		})
		form := touch(newID("form"), event.FormSubmit, v, lead, now.Add(5*time.Second))
		r.produceEvents(t, form)
		eventually(t, "form scored", 15*time.Second, func() (bool, string) {
			st := leadstatetest.State(t, store, scoring.Lead(lead))
			return st != nil && len(st.Audiences["pricing-returner"]) == 3, fmt.Sprintf("%+v", st)
		})
		if got := ask(v, ""); !slices.Equal(got, []string{"pricing-returner"}) {
			t.Fatalf("visitor's audiences after its form fill, without userHash: %v, want [pricing-returner] (its anonymous history)", got)
		}
		if got := ask(v, lead); !slices.Contains(got, "pricing-returner") {
			t.Fatalf("visitor's audiences after its form fill, with the lead proven: %v", got)
		}

		// Another browser fills a form as the same lead: no proof, no
		// audience of the lead's.
		u := newID("u")
		r.produceEvents(t, touch(newID("form-u"), event.FormSubmit, u, lead, now.Add(6*time.Second)))
		eventually(t, "the second visitor linked", 15*time.Second, func() (bool, string) {
			st := leadstatetest.State(t, store, scoring.Anon(u))
			return st != nil && st.Into == lead, fmt.Sprintf("%+v", st)
		})
		if got := ask(u, ""); len(got) != 0 {
			t.Fatalf("a visitor that filled a form as the lead, without userHash: %v, want none", got)
		}
		if got := ask(u, lead); !slices.Contains(got, "pricing-returner") {
			t.Fatalf("that visitor with the lead proven: %v, want the lead's pricing-returner", got)
		}

		// Pricing views after the form count for the visitor itself.
		z, lead2 := newID("z"), newID("lead2")
		r.produceEvents(t, pageView(newID("z0"), z, "", "/demo/pricing.html", now))
		r.produceEvents(t, touch(newID("form-z"), event.FormSubmit, z, lead2, now.Add(time.Second)))
		r.produceEvents(t, pageView(newID("z1"), z, "", "/demo/pricing.html", now.Add(2*time.Second)),
			pageView(newID("z2"), z, "", "/demo/pricing.html", now.Add(3*time.Second)))
		eventually(t, "the later views counted for the visitor", 15*time.Second, func() (bool, string) {
			got := ask(z, "")
			return slices.Equal(got, []string{"pricing-returner"}), fmt.Sprint(got)
		})
		eventually(t, "the visitor's three hits on its lead too", 15*time.Second, func() (bool, string) {
			st := leadstatetest.State(t, store, scoring.Lead(lead2))
			return st != nil && len(st.Audiences["pricing-returner"]) == 3, fmt.Sprintf("%+v", st)
		})
	})
}
