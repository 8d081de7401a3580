package audience

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

const scoreRules = `
models:
  - name: m
    threshold: 100
    rules:
      - {name: view, event: page_view, points: 5}
audiences:
  - {name: zero, model: m, score_gte: 0}
  - {name: negative, model: m, score_gte: -10}
  - {name: positive, model: m, score_gte: 1}
`

// A signed-in user whose lead the model never scored (its first event here
// is the identify ls.js sends, which scores nothing: the processor stores
// the visitor's link and no state for the lead) has score 0 there, as the
// README says of any visitor or lead the model never scored: with the lead
// proven, score_gte ≤ 0 holds. Without the proof the link's score is the
// lead's, which the question may not read: no score audience.
func TestAudiencesProvenLeadWithoutState(t *testing.T) {
	rules, err := scoring.Parse("rules.yaml", []byte(scoreRules))
	if err != nil {
		t.Fatal(err)
	}
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		n := rand.Uint64()
		anon, lead := fmt.Sprintf("visitor-%x", n), fmt.Sprintf("user-%x@example.com", n)
		now := time.Now()
		rp := scoring.NewReplayer(rules, 0)
		rp.Apply(&event.Event{ID: fmt.Sprintf("id-%x", n), Type: event.Identify, EventTime: now, ReceivedAt: now, LeadID: lead, AnonymousID: anon})
		link := rp.States()[scoring.Anon(anon)]
		if link == nil || link.Into != lead || rp.States()[scoring.Lead(lead)] != nil {
			t.Fatalf("setup: link %+v, lead %+v", link, rp.States()[scoring.Lead(lead)])
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := store.Commit(ctx, []leadstate.Commit{{Subject: scoring.Anon(anon), State: link, ExpireAt: now.Add(time.Hour).UnixMilli()}})
		if err != nil || res[0].Status != leadstate.Stored {
			t.Fatalf("storing the link: %v %+v", err, res)
		}
		rd := New(store, rules)
		for _, c := range []struct {
			proven string
			want   []string
		}{
			{lead, []string{"zero", "negative"}},
			{"", nil},
			{"someone-else@example.com", nil},
		} {
			got, err := rd.Audiences(ctx, anon, c.proven)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("proven %q: %v, want %v", c.proven, got, c.want)
			}
		}
	})
}

// Own ends a proven chain at its survivor: a lead with no state stands as an
// empty state; a cycle ReadChain cut short, or a merge still pending, is
// left as it is.
func TestOwnSurvivorWithoutState(t *testing.T) {
	v := &scoring.State{Subject: scoring.Anon("v"), Into: "a"}
	a := &scoring.State{Subject: scoring.Lead("a"), Into: "b"}
	got := Own([]*scoring.State{v, a}, "a")
	if len(got) != 3 || got[2].Subject != scoring.Lead("b") || got[2].Into != "" || got[2].Models != nil {
		t.Fatalf("chain to a lead with no state: %+v", got)
	}
	if got := Own([]*scoring.State{v}, "a"); len(got) != 2 || got[1].Subject != scoring.Lead("a") {
		t.Fatalf("link to a lead with no state: %+v", got)
	}
	b := &scoring.State{Subject: scoring.Lead("b"), Into: "a"} // a cycle: a → b → a
	if got := Own([]*scoring.State{v, a, b}, "a"); len(got) != 3 {
		t.Fatalf("cycle: %d states, want the 3 read", len(got))
	}
	frozen := &scoring.State{Subject: scoring.Anon("w"), Into: "a", Pending: true}
	if got := Own([]*scoring.State{frozen}, "a"); len(got) != 1 {
		t.Fatalf("pending merge: %d states, want the frozen visitor's", len(got))
	}
	if got := Own([]*scoring.State{v}, ""); len(got) != 1 {
		t.Fatalf("no proof: %d states", len(got))
	}
}
