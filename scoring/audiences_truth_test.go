package scoring

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
)

// truthOwn is what README promises a question without proof answers for a
// visitor's behaviour audiences: decided on the events carrying its
// anonymous id (before and after it identified), each counted once.
func truthOwn(r *Rules, evs []*event.Event, anon string, at int64) []string {
	var out []string
	for i := range r.Audiences {
		a := &r.Audiences[i]
		if !a.HasBehaviour() || a.Model != "" {
			continue
		}
		m := Model{Rules: []Rule{a.Cond}}
		ids := map[string]bool{}
		for _, e := range evs {
			if e.AnonymousID != anon || e.Bot {
				continue
			}
			if len(m.Match(e, nil)) == 0 {
				continue
			}
			if te := e.EventTime.UnixMilli(); te > at-a.Window.Milliseconds() {
				ids[e.ID] = true
			}
		}
		if len(ids) >= a.Count {
			out = append(out, a.Name)
		}
	}
	return out
}

func behaviourOnly(r *Rules, names []string) []string {
	var out []string
	for _, n := range names {
		if a := r.Audience(n); a != nil && a.Model == "" {
			out = append(out, n)
		}
	}
	return out
}

// Across random histories (visitors identifying, relinking to other leads,
// events with both ids, lead-only events, an alias, duplicates, any arrival
// order, one by one or in batches), the answer without proof is what README
// says: the behaviour audiences of the events carrying the visitor's
// anonymous id, each counted once.
func TestVisitorOwnAudiencesMatchItsEvents(t *testing.T) {
	r := audRules(t)
	visitors := []string{"a", "b", "c"}
	leads := []string{"L1", "L2", "L3"}
	paths := []string{"/pricing", "/pricing/x", "/blog"}
	members, linked := 0, 0
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		var evs []*event.Event
		n := 20 + rng.IntN(40)
		for i := range n {
			at := t0.Add(time.Duration(rng.IntN(10*24*60)) * time.Minute)
			id := fmt.Sprintf("e%03d", i)
			var e *event.Event
			switch k := rng.IntN(10); {
			case k < 4:
				e = pv(id, at, "", visitors[rng.IntN(3)], paths[rng.IntN(3)])
			case k < 5:
				e = pv(id, at, leads[rng.IntN(3)], visitors[rng.IntN(3)], paths[rng.IntN(3)])
			case k < 7:
				e = pv(id, at, leads[rng.IntN(3)], "", paths[rng.IntN(3)])
			case k < 8:
				e = ev(id, event.EmailOpen, at, "", visitors[rng.IntN(3)])
			default:
				e = ev(id, event.Identify, at, leads[rng.IntN(3)], visitors[rng.IntN(3)])
			}
			e.ReceivedAt = t0.Add(11 * 24 * time.Hour)
			e.EventTime = at
			evs = append(evs, e)
		}
		if rng.IntN(3) == 0 {
			evs = append(evs, &event.Event{ID: "alias", Type: event.Alias, EventTime: t0.Add(5 * 24 * time.Hour), ReceivedAt: t0.Add(5 * 24 * time.Hour), LeadID: "L1", PreviousID: "L2"})
		}
		for range n / 8 {
			evs = append(evs, evs[rng.IntN(len(evs))])
		}
		rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		rp := NewReplayer(r, 30*24*time.Hour)
		batch := 1 + int(seed%2)*4
		for lo := 0; lo < len(evs); lo += batch {
			p := rp.core.Plan(evs[lo:min(lo+batch, len(evs))], nil, rp.facts, 0)
			if !p.Complete() {
				t.Fatal("incomplete plan over complete facts")
			}
			rp.Commit(p)
		}
		for _, v := range visitors {
			for _, d := range []time.Duration{10 * 24 * time.Hour, 12 * 24 * time.Hour, 15 * 24 * time.Hour} {
				at := t0.Add(d).UnixMilli()
				got := behaviourOnly(r, r.AudiencesAt([]*State{rp.States()[Anon(v)]}, at))
				want := truthOwn(r, evs, v, at)
				members += len(want)
				if st := rp.States()[Anon(v)]; st != nil && st.Into != "" {
					linked++
				}
				if !slices.Equal(got, want) {
					t.Fatalf("seed %d visitor %s at %v: %v, want %v; state %+v", seed, v, d, got, want, rp.States()[Anon(v)])
				}
			}
		}
	}
	if members == 0 || linked == 0 {
		t.Fatalf("the histories gave %d memberships and %d linked visitors: the test compares too little", members, linked)
	}
}
