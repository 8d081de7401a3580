package scoring

import (
	"fmt"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
)

// A visitor identified as L1, then as L2 (a shared device): its history went
// to L1. A redelivery of its page view from before the merges (the batch was
// stored, its offsets not committed) passes through the visitor, now linked
// to L2: it is a duplicate, not scored again on L2 (it was, once the
// visitor's ids had moved to L1 only).
func TestRelinkedVisitorRedeliveryIsDuplicate(t *testing.T) {
	r := coreRules(t)
	rp := NewReplayer(r, 0)
	pv := ev("pv1", event.PageView, t0, "", "a")
	pv.Path, pv.URL = "/pricing", "https://x.example/pricing"
	id1 := ev("id1", event.Identify, t0.Add(time.Hour), "L1", "a")
	id2 := ev("id2", event.Identify, t0.Add(2*time.Hour), "L2", "a")
	for _, e := range []*event.Event{pv, id1, id2} {
		rp.Apply(e)
	}
	l1 := rp.States()[Lead("L1")].Model("m").V
	if l1 <= 0 {
		t.Fatalf("L1 holds %v after the visitor's merge, want its page view's points", l1)
	}
	got := []Outcome{rp.Apply(pv), rp.Apply(id1), rp.Apply(id2)}
	if got[0] != Duplicate {
		t.Errorf("redelivered page view of the relinked visitor: %v, want duplicate", got[0])
	}
	if l2 := rp.States()[Lead("L2")]; l2 != nil && l2.Model("m") != nil && l2.Model("m").V != 0 {
		t.Errorf("L2 holds %v: the visitor's page view counted on both leads (L1 %v)", l2.Model("m").V, l1)
	}
}

// Re-arming by decay: a lead that crossed decays far below rearm_below, then
// one event lifts it from nearly nothing over the threshold again: the score
// fell below rearm_below before that event, so it is a new crossing (the
// flag was only checked on the score after the event's points).
func TestRearmByDecayWhenOneEventCrossesBack(t *testing.T) {
	r, err := Parse("r.yaml", []byte(`models:
  - name: m
    half_life: 24h
    threshold: 100
    rearm_below: 50
    rules:
      - {name: form, event: form_submit, points: 110}
`))
	if err != nil {
		t.Fatal(err)
	}
	rp := NewReplayer(r, 0)
	rp.Apply(ev("f1", event.FormSubmit, t0, "L", ""))
	if n := rp.Crossings("L", "m"); n != 1 {
		t.Fatalf("first form: %d crossings, want 1", n)
	}
	// A day later the score is 55, above rearm_below: a second form (165)
	// is no new crossing.
	rp.Apply(ev("f2", event.FormSubmit, t0.Add(24*time.Hour), "L", ""))
	if n := rp.Crossings("L", "m"); n != 1 {
		t.Fatalf("a form a day later (55 -> 165, never under rearm_below): %d crossings, want 1", n)
	}
	// 30 days later it is far below rearm_below; one form crosses again.
	later := t0.Add(31 * 24 * time.Hour)
	if s := rp.States()[Lead("L")].Model("m").ScoreAt(later.UnixMilli(), r.Models[0].HalfLife); s >= 50 {
		t.Fatalf("decayed score %v, want < 50", s)
	}
	rp.Apply(ev("f3", event.FormSubmit, later, "L", ""))
	if n := rp.Crossings("L", "m"); n != 2 {
		t.Fatalf("after decaying under rearm_below and a form lifting it to %.1f: %d crossings, want 2",
			rp.States()[Lead("L")].Model("m").V, n)
	}
	// The same through a merge: a visitor's form folded into the decayed
	// lead.
	rp.Apply(ev("f4", event.FormSubmit, later.Add(62*24*time.Hour), "", "v"))
	rp.Apply(ev("id", event.Identify, later.Add(62*24*time.Hour+time.Minute), "L", "v"))
	if n := rp.Crossings("L", "m"); n != 3 {
		t.Fatalf("a visitor's form merged into the lead decayed under rearm_below: %d crossings, want 3", n)
	}
}

// Traits of a visitor's identify (anonymousId only, as analytics.identify
// before login sends) count for its lead whatever the arrival order: they
// were dropped when the identify came before the link, and counted when it
// came after (and rescore, in event-time order, dropped what live counted).
func TestAnonymousTraitsCountWhateverTheOrder(t *testing.T) {
	r := coreRules(t)
	anonTraits := ev("t1", event.Identify, t0, "", "a")
	anonTraits.Traits = []byte(`{"title":"CTO"}`)
	link := ev("id1", event.Identify, t0.Add(time.Minute), "L", "a")
	fit := func(rp *Replayer) float64 {
		if st := rp.States()[Lead("L")]; st != nil && st.Model("m") != nil {
			return st.Model("m").Fit
		}
		return 0
	}
	inOrder := fit(replay(t, r, []*event.Event{anonTraits, link}))
	linkFirst := fit(replay(t, r, []*event.Event{link, anonTraits}))
	if inOrder != linkFirst || inOrder == 0 {
		t.Fatalf("lead L's fit: %v in event-time order, %v when the link arrived first (want equal, not 0)", inOrder, linkFirst)
	}
}

// A rule's cap lowered in the rules file: the first hit of a window that
// holds more hits than the new count drops every hit past it, and takes
// back the points of each (only the last one's were taken back: the others'
// stayed in the score while their hits were forgotten).
func TestCapLoweredTakesBackEveryDroppedHit(t *testing.T) {
	rules := func(count int) *Rules {
		r, err := Parse("r.yaml", fmt.Appendf(nil, `models:
  - name: m
    half_life: 24h
    threshold: 1000
    rules:
      - {name: open, event: email_open, points: 10, cap: {count: %d, window: 24h}}
`, count))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	st := &State{Subject: Lead("L")}
	apply := func(c *Core, id string, at time.Time) {
		t.Helper()
		if _, _, err := c.Apply(st, ev(id, event.EmailOpen, at, "L", "")); err != nil {
			t.Fatal(err)
		}
	}
	day := t0.Truncate(24 * time.Hour)
	wide := NewCore(rules(4), time.Hour)
	for i := range 4 {
		apply(wide, fmt.Sprintf("o%d", i), day.Add(time.Duration(2+i)*time.Hour))
	}
	narrow := NewCore(rules(1), time.Hour)
	first := day.Add(time.Hour) // earlier than the four: it scores, they go
	apply(narrow, "o-first", first)
	ms := st.Model("m")
	hl := 24 * time.Hour
	want := 10 * DecayFactor(ms.T-first.UnixMilli(), hl)
	if !nearly(ms.V, want) || len(ms.Caps) != 1 {
		t.Fatalf("after the cap went from 4 to 1: V = %v with %d cap windows, want %v (the one hit kept)", ms.V, len(ms.Caps), want)
	}
	for _, hits := range ms.Caps {
		if len(hits) != 1 || hits[0].ID != "o-first" {
			t.Fatalf("cap window holds %+v, want only o-first", hits)
		}
	}
}

func nearly(a, b float64) bool { d := a - b; return d < 1e-9 && d > -1e-9 }

// An event by the start of its dedup bucket is checked in the previous
// bucket too (a resend whose corrected time crossed the edge was recorded
// there): once that bucket may be forgotten, the event is stale, or a copy
// recorded only there would count again.
func TestStaleByTheEarlierNeighbour(t *testing.T) {
	c := NewCore(coreRules(t), 30*24*time.Hour)
	b := c.Bucket(t0.UnixMilli()) + 1
	edge := b * c.bucket
	te := edge + 2_000 // 2 s after the edge: the previous bucket is its neighbour
	if nb, ok := c.Neighbour(te); !ok || nb != b-1 {
		t.Fatalf("Neighbour(%d) = %d, %v; want %d", te, nb, ok, b-1)
	}
	now := c.BucketExpiry(b - 1) // the previous bucket may be forgotten, te's not yet
	if !c.Stale(te, now) {
		t.Errorf("Stale at the previous bucket's expiry = false: a copy recorded there could count twice")
	}
	if mid := edge + c.bucket/2; c.Stale(mid, now) {
		t.Errorf("an event mid-bucket (no neighbour) judged stale at the previous bucket's expiry")
	}
}
