package scoring

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
)

// ownAnswer is what the audience reader answers a question without proof:
// the audiences of the visitor's own state alone (audience.Own).
func ownAnswer(rp *Replayer, r *Rules, anon string, at time.Time) []string {
	return r.AudiencesAt([]*State{rp.States()[Anon(anon)]}, at.UnixMilli())
}

func hitIDs(st *State, audience string) []string {
	if st == nil {
		return nil
	}
	var out []string
	for _, h := range st.Audiences[audience] {
		out = append(out, h.ID)
	}
	return out
}

// A visitor who fills a form keeps the audiences of its anonymous history
// (README, Personalization): its link keeps a copy of its hits at the merge,
// and records the hits of its later events (anonymous, or carrying the lead
// id too) next to the lead's; the lead's hits from elsewhere, or from its
// other visitors, never reach it. A lead merged by alias keeps none.
func TestVisitorKeepsOwnAudienceHitsAfterFormFill(t *testing.T) {
	r := audRules(t)
	rp := replay(t, r, []*event.Event{
		pv("v1", t0, "", "v", "/pricing"),
		pv("v2", t0.Add(time.Hour), "", "v", "/pricing"),
		pv("v3", t0.Add(2*time.Hour), "", "v", "/pricing"),
		pv("l1", t0.Add(2*time.Hour), "L", "", "/pricing"), // the lead, elsewhere
	})
	if got := ownAnswer(rp, r, "v", t0.Add(3*time.Hour)); !slices.Contains(got, "pricing-returner") {
		t.Fatalf("before the form: %v", got)
	}
	rp.Apply(ev("form", event.FormSubmit, t0.Add(3*time.Hour), "L", "v"))
	v, l := rp.States()[Anon("v")], rp.States()[Lead("L")]
	if v.Into != "L" || len(v.Models) != 0 || !slices.Equal(hitIDs(v, "pricing-returner"), []string{"v1", "v2", "v3"}) {
		t.Fatalf("visitor after the form: %+v", v)
	}
	if !slices.Equal(hitIDs(l, "pricing-returner"), []string{"v2", "l1", "v3"}) {
		t.Fatalf("lead's hits %v, want the latest three of both", hitIDs(l, "pricing-returner"))
	}
	if got := ownAnswer(rp, r, "v", t0.Add(4*time.Hour)); !slices.Equal(got, []string{"pricing-returner"}) {
		t.Fatalf("visitor's own audiences after the form: %v, want [pricing-returner]", got)
	}

	// Later events: anonymous ones and one with both ids count on the link
	// too; the lead's own, another visitor's and an alias's do not.
	rp.Apply(ev("id-w", event.Identify, t0.Add(4*time.Hour), "L", "w"))
	for _, e := range []*event.Event{
		pv("v4", t0.Add(5*time.Hour), "", "v", "/pricing"),
		pv("v5", t0.Add(6*time.Hour), "L", "v", "/pricing"),
		pv("l2", t0.Add(7*time.Hour), "L", "", "/pricing"),
		pv("w1", t0.Add(8*time.Hour), "", "w", "/pricing"),
		ev("o1", event.EmailOpen, t0.Add(9*time.Hour), "", "v"),
	} {
		rp.Apply(e)
	}
	v = rp.States()[Anon("v")]
	if got := hitIDs(v, "pricing-returner"); !slices.Equal(got, []string{"v3", "v4", "v5"}) {
		t.Fatalf("link's pricing hits %v, want its latest three (v3 v4 v5)", got)
	}
	if got := hitIDs(v, "opener"); !slices.Equal(got, []string{"o1"}) {
		t.Fatalf("link's opener hits %v", got)
	}
	if got := hitIDs(rp.States()[Anon("w")], "pricing-returner"); !slices.Equal(got, []string{"w1"}) {
		t.Fatalf("the other visitor's link %v, want its own w1 only", got)
	}
	if got := hitIDs(rp.States()[Lead("L")], "pricing-returner"); !slices.Equal(got, []string{"v5", "l2", "w1"}) {
		t.Fatalf("lead's hits %v", got)
	}
	// A lead merged into another by alias keeps no hits of its own.
	rp.Apply(pv("m1", t0, "M", "", "/pricing"))
	rp.Apply(&event.Event{ID: "al", Type: event.Alias, EventTime: t0.Add(time.Hour), ReceivedAt: t0.Add(time.Hour), LeadID: "L", PreviousID: "M"})
	if m := rp.States()[Lead("M")]; m.Into != "L" || m.Audiences != nil {
		t.Fatalf("lead merged by alias: %+v", m)
	}
	// A link keeps Count hits per audience, no more.
	for i := range 20 {
		rp.Apply(pv(fmt.Sprintf("q%02d", i), t0.Add(10*time.Hour+time.Duration(i)*time.Minute), "", "v", "/pricing"))
	}
	if got := hitIDs(rp.States()[Anon("v")], "pricing-returner"); !slices.Equal(got, []string{"q17", "q18", "q19"}) {
		t.Fatalf("link's hits %v, want the latest three", got)
	}
}

// A redelivered event adds no hit to the link twice, nor does a resend whose
// time moved a little (the collector's clock-skew correction); an event whose
// link write was lost while the lead's was stored (a processor killed in
// between, a lost compare-and-set) is recorded on the link when it comes
// again (a duplicate of the lead's) or when the batch is planned again (the
// event committed already).
func TestVisitorAudienceHitsDedup(t *testing.T) {
	r := audRules(t)
	p1 := pv("p1", t0.Add(time.Hour), "", "v", "/pricing")
	rp := replay(t, r, []*event.Event{ev("id", event.Identify, t0, "L", "v"), p1, p1})
	resent := *p1
	resent.EventTime = resent.EventTime.Add(800 * time.Millisecond)
	if o := rp.Apply(&resent); o != Duplicate {
		t.Fatalf("resend: %v", o)
	}
	if got := hitIDs(rp.States()[Anon("v")], "pricing-returner"); !slices.Equal(got, []string{"p1"}) {
		t.Fatalf("link's hits after redeliveries %v, want p1 once", got)
	}

	// The link's write lost: the lead holds p2, the link not.
	before := rp.States()[Anon("v")].Clone()
	p2 := pv("p2", t0.Add(2*time.Hour), "", "v", "/pricing")
	rp.Apply(p2)
	rp.facts.states[Anon("v")] = before.Clone()
	if o := rp.Apply(p2); o != Duplicate {
		t.Fatalf("redelivered p2: %v", o)
	}
	if got := hitIDs(rp.States()[Anon("v")], "pricing-returner"); !slices.Equal(got, []string{"p1", "p2"}) {
		t.Fatalf("link's hits after the redelivery %v, want p1 p2", got)
	}
	// The same, the batch planned again with p3 committed (skipped).
	before = rp.States()[Anon("v")].Clone()
	p3 := pv("p3", t0.Add(3*time.Hour), "", "v", "/pricing")
	rp.Apply(p3)
	rp.facts.states[Anon("v")] = before
	p := rp.core.Plan([]*event.Event{p3}, []bool{true}, rp.facts, 0)
	if !p.Complete() {
		t.Fatal("incomplete plan")
	}
	rp.Commit(p)
	if got := hitIDs(rp.States()[Anon("v")], "pricing-returner"); !slices.Equal(got, []string{"p1", "p2", "p3"}) {
		t.Fatalf("link's hits after the plan again %v, want p1 p2 p3", got)
	}
}

// The link's hits, and so the visitor's answer without proof, do not depend
// on the order its events, its form and its lead's events arrive in, one at
// a time or in batches, duplicates included.
func TestVisitorAudienceHitsOrderIndependent(t *testing.T) {
	r := audRules(t)
	evs := []*event.Event{
		pv("a1", t0, "", "v", "/pricing"),
		pv("a2", t0.Add(time.Hour), "", "v", "/pricing"),
		ev("form", event.FormSubmit, t0.Add(2*time.Hour), "L", "v"),
		pv("a3", t0.Add(3*time.Hour), "", "v", "/pricing"),
		pv("a4", t0.Add(4*time.Hour), "L", "v", "/pricing/team"),
		pv("l1", t0.Add(5*time.Hour), "L", "", "/pricing"),
		ev("o1", event.EmailOpen, t0.Add(6*time.Hour), "", "v"),
		pv("x1", t0.Add(7*time.Hour), "", "x", "/pricing"),
		ev("id-x", event.Identify, t0.Add(8*time.Hour), "L", "x"),
	}
	evs = append(evs, evs[1], evs[3])
	describe := func(rp *Replayer) string {
		at := t0.Add(9 * time.Hour)
		return fmt.Sprintf("v %v %v own %v | x %v own %v | L %v",
			hitIDs(rp.States()[Anon("v")], "pricing-returner"), hitIDs(rp.States()[Anon("v")], "opener"), ownAnswer(rp, r, "v", at),
			hitIDs(rp.States()[Anon("x")], "pricing-returner"), ownAnswer(rp, r, "x", at),
			hitIDs(rp.States()[Lead("L")], "pricing-returner"))
	}
	want := describe(replay(t, r, evs))
	if want != "v [a2 a3 a4] [o1] own [pricing-returner] | x [x1] own [] | L [a4 l1 x1]" {
		t.Fatalf("in order: %s", want)
	}
	rng := rand.New(rand.NewPCG(3, 5))
	for i := range 200 {
		shuffled := slices.Clone(evs)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		var got string
		if i%2 == 0 {
			got = describe(replay(t, r, shuffled))
		} else {
			got = describe(replayBatches(t, r, shuffled, 1+rng.IntN(5)))
		}
		if got != want {
			t.Fatalf("order %d: %s, want %s", i, got, want)
		}
	}
}
