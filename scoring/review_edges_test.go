package scoring

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
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
	r := parseRules(t, formRules)
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

// formRules: one model, a form scores 110 of a threshold of 100, re-armed
// under 50, with a half-life of a day.
const formRules = `models:
  - name: m
    half_life: 24h
    threshold: 100
    rearm_below: 50
    rules:
      - {name: form, event: form_submit, points: 110}
`

func parseRules(t *testing.T, y string) *Rules {
	t.Helper()
	r, err := Parse("r.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A form_submit carrying both ids merges a visitor whose history crosses the
// threshold (crossing attributed to the event: p.lastID), and the event's
// own points cross again after rearmAt saw the merged score decayed: two
// crossings of one lead and model with one trigger = one mql_id.
func TestOneCrossingPerEventWhenItMergesAndScores(t *testing.T) {
	r := parseRules(t, formRules)
	c := NewCore(r, 0)
	rp := NewReplayer(r, 0)
	rp.Apply(ev("f1", event.FormSubmit, t0, "", "v"))
	f2 := ev("f2", event.FormSubmit, t0.Add(40*24*time.Hour), "L", "v")
	p := c.Plan([]*event.Event{f2}, nil, rp.facts, 0)
	var ids []string
	for _, w := range p.Writes {
		for _, m := range w.MQLs {
			ids = append(ids, m.MQLID+" trigger="+m.TriggerEventID)
		}
	}
	seen := map[string]bool{}
	for _, w := range p.Writes {
		for _, m := range w.MQLs {
			if seen[m.MQLID] {
				t.Fatalf("two crossings with one mql_id in one write: %v", ids)
			}
			seen[m.MQLID] = true
		}
	}
	if len(ids) == 0 {
		t.Fatal("no crossing: the merged visitor's form crosses the threshold")
	}
}

// The merge re-arms on dst's value alone decayed to src's T, although the
// lead's combined history never fell under rearm_below: a later small event
// then publishes a second crossing. The same events applied to the lead
// directly (visitor linked first) keep the flag: one crossing.
func TestMergeDoesNotRearmOnTheTargetAlone(t *testing.T) {
	r := parseRules(t, `models:
  - name: m
    half_life: 24h
    threshold: 100
    rearm_below: 50
    rules:
      - {name: form, event: form_submit, points: 110}
      - {name: big, event: page_view, url: "*/big", points: 100}
      - {name: small, event: page_view, url: "*/small", points: 1}
      - {name: mid, event: page_view, url: "*/mid", points: 20}
`)
	pv := func(id string, at time.Time, lead, anon, path string) *event.Event {
		e := ev(id, event.PageView, at, lead, anon)
		e.Path, e.URL = path, "https://x.example"+path
		return e
	}
	form := ev("f1", event.FormSubmit, t0, "L", "")
	a := pv("a", t0.Add(12*time.Hour), "", "v", "/big")
	b := pv("b", t0.Add(36*time.Hour), "", "v", "/small")
	id := ev("id", event.Identify, t0.Add(37*time.Hour), "L", "v")
	later := pv("c", t0.Add(37*time.Hour+time.Minute), "L", "", "/mid")

	merged := replay(t, r, []*event.Event{form, a, b, id, later})
	linkFirst := replay(t, r, []*event.Event{form, id, a, b, later})
	m1, m2 := merged.Crossings("L", "m"), linkFirst.Crossings("L", "m")
	if m1 != m2 {
		t.Fatalf("crossings: %d when the visitor merged, %d when linked first (score never under rearm_below: %v)",
			m1, m2, merged.States()[Lead("L")].Model("m").V)
	}
}

// A visitor's traits-only history (an anonymous identify, fit points alone
// over the threshold) merged into a lead with no state: the model is created
// at T = 0, the crossing is dated 1970. Linked first, it is dated at the
// identify.
func TestAnonymousTraitsMergeKeepTheIdentifyTime(t *testing.T) {
	r := parseRules(t, `models:
  - name: m
    half_life: 24h
    threshold: 20
    rules:
      - {name: form, event: form_submit, points: 10}
    fit:
      - {name: senior, trait: title, matches: '(?i)cto', points: 25}
`)
	tr := ev("t1", event.Identify, t0, "", "v")
	tr.Traits = []byte(`{"title":"CTO"}`)
	link := ev("id1", event.Identify, t0.Add(time.Minute), "L", "v")
	rp := replay(t, r, []*event.Event{tr, link})
	lf := replay(t, r, []*event.Event{link, tr})
	ms, ms2 := rp.States()[Lead("L")].Model("m"), lf.States()[Lead("L")].Model("m")
	if ms.MQLAt != ms2.MQLAt || ms.T != ms2.T {
		t.Fatalf("merged: T=%v MQLAt=%v; linked first: T=%v MQLAt=%v", time.UnixMilli(ms.T).UTC(), time.UnixMilli(ms.MQLAt).UTC(),
			time.UnixMilli(ms2.T).UTC(), time.UnixMilli(ms2.MQLAt).UTC())
	}
}

// gen plus anonymous identifies with traits (analytics.identify before login).
func TestPlanIsOrderIndependentWithAnonymousTraits(t *testing.T) {
	r := coreRules(t)
	titles := []string{"VP Sales", "intern", "CTO"}
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		evs := gen(rng, 60+rng.IntN(60))
		for i := range 8 {
			at := t0.Add(time.Duration(rng.IntN(21*24*60)) * time.Minute)
			e := ev(fmt.Sprintf("anon-id%d", i), event.Identify, at, "", []string{"a1", "a2", "a3", "a4", "a5"}[rng.IntN(5)])
			e.Traits = []byte(fmt.Sprintf(`{"title":%q,"company":{"employees":%d}}`, titles[rng.IntN(len(titles))], 100*rng.IntN(5)))
			evs = append(evs, e)
		}
		sorted := slices.Clone(evs)
		sort.SliceStable(sorted, func(a, b int) bool { return sorted[a].EventTime.Before(sorted[b].EventTime) })
		want := canon(replay(t, r, sorted), r)
		for perm := range 6 {
			shuffled := slices.Clone(evs)
			rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
			got := canon(replay(t, r, shuffled), r)
			diffCanon(t, fmt.Sprintf("seed %d perm %d", seed, perm), got, want)
		}
	}
}

// A three-lead cycle: A frozen into B, then B linked into C and A's merge
// completed into C (survivor(B) = C: C recorded A's mark and holds A's 50),
// the processor killed before emptying A; C, read as a survivor by a
// processor holding A's state from before its freeze, frozen into A. breakCycle looks
// for A's mark in B only (the next in the cycle), finds it not recorded, and
// gives up A (lowest id): A survives with its frozen 50, and C folds its 80
// (A's 50 included) into it: A's history counted twice.
func TestBreakCycleWithMergeRecordedFurtherOn(t *testing.T) {
	r := coreRules(t)
	c := NewCore(r, 0)
	tm := t0.UnixMilli()
	mk := func(v float64) []ModelState {
		return []ModelState{{Name: "m", V: v, T: tm, RulesHash: c.hashes[0], Rules: map[string]RuleValue{"view": {V: v, T: tm}}}}
	}
	rp := NewReplayer(r, 0)
	a := &State{Subject: Lead("A"), Into: "B", Pending: true, MergeMark: "merge:l:A", MergeTime: tm, Models: mk(50), MaxTime: tm}
	b := &State{Subject: Lead("B"), Into: "C"}
	cc := &State{Subject: Lead("C"), Into: "A", Pending: true, MergeMark: "merge:l:C", MergeTime: tm, Models: mk(80), MaxTime: tm}
	cc.addInline(c.Bucket(tm), Fingerprint("merge:l:A"))
	rp.facts.states[Lead("A")], rp.facts.states[Lead("B")], rp.facts.states[Lead("C")] = a, b, cc
	pv := ev("x", event.PageView, t0.Add(time.Minute), "A", "")
	pv.Path, pv.URL = "/blog", "https://x.example/blog"
	o := rp.Apply(pv)
	pv2 := ev("y", event.PageView, t0.Add(2*time.Minute), "C", "")
	pv2.Path, pv2.URL = "/blog", "https://x.example/blog"
	rp.Apply(pv2)
	var total float64
	for _, s := range []string{"A", "B", "C"} {
		st := rp.States()[Lead(s)]
		if st.Into == "" && st.Model("m") != nil {
			total += st.Model("m").V
			t.Logf("survivor %s: %.3f", s, st.Model("m").V)
		} else {
			t.Logf("%s -> %s pending=%v", s, st.Into, st.Pending)
		}
	}
	if total > 80+10+1 {
		t.Fatalf("outcome %v: the survivors hold %.3f, want about 90 (80 + two page views): A's 50 counted twice", o, total)
	}
}

// A person whose id changed many times (each new id aliased to the next: a
// CRM renaming users over the years) leaves a chain of merged leads. An
// event of the first id scores on the last; it scored on the lead 8 hops
// down the chain, itself merged, where no one would see its points.
func TestLongAliasChain(t *testing.T) {
	r := parseRules(t, formRules)
	const n = 20
	id := func(i int) string { return fmt.Sprintf("L%02d", i) }
	evs := []*event.Event{ev("f0", event.FormSubmit, t0, id(0), "")}
	for i := 1; i < n; i++ {
		at := t0.Add(time.Duration(i) * time.Minute)
		evs = append(evs, &event.Event{ID: fmt.Sprintf("al%d", i), Type: event.Alias, EventTime: at, ReceivedAt: at, LeadID: id(i), PreviousID: id(i - 1)})
	}
	evs = append(evs, ev("f1", event.FormSubmit, t0.Add(time.Hour), id(0), ""))
	rp := replay(t, r, evs)
	one := replay(t, r, []*event.Event{ev("f0", event.FormSubmit, t0, "X", ""), ev("f1", event.FormSubmit, t0.Add(time.Hour), "X", "")})
	want := one.States()[Lead("X")].Model("m").V
	last := rp.States()[Lead(id(n-1))]
	if last.Into != "" || last.Model("m") == nil || !nearly(last.Model("m").V, want) {
		t.Fatalf("the last lead of a chain of %d holds %+v, want %.3f (both forms)", n, last, want)
	}
	for i := 0; i < n-1; i++ {
		if st := rp.States()[Lead(id(i))]; st.Into == "" || (st.Model("m") != nil && st.Model("m").V != 0) {
			t.Fatalf("%s = %+v, want merged on and empty", id(i), st)
		}
	}
}

// A cycle of 20 leads (longer than breakCycle tracks without allocating),
// one of them frozen with a history its merge has not delivered: the cycle
// is broken at its lowest id, which gets that history and the new event.
func TestLongCycleIsBroken(t *testing.T) {
	r := coreRules(t)
	c := NewCore(r, 0)
	tm := t0.UnixMilli()
	const n = 20
	id := func(i int) string { return fmt.Sprintf("L%02d", i) }
	rp := NewReplayer(r, 0)
	for i := range n {
		st := &State{Subject: Lead(id(i)), Into: id((i + 1) % n)}
		if i == 7 {
			st.Pending, st.MergeMark, st.MergeTime, st.MaxTime = true, "merge:l:"+id(i), tm, tm
			st.Models = []ModelState{{Name: "m", V: 50, T: tm, RulesHash: c.hashes[0], Rules: map[string]RuleValue{"view": {V: 50, T: tm}}}}
		}
		rp.facts.states[Lead(id(i))] = st
	}
	pv := ev("x", event.PageView, t0.Add(time.Minute), id(5), "") // its way passes L07
	pv.Path, pv.URL = "/blog", "https://x.example/blog"
	if o := rp.Apply(pv); o != Scored {
		t.Fatalf("page view of a lead in the cycle: %v, want scored", o)
	}
	var survivors []string
	var total float64
	for i := range n {
		st := rp.States()[Lead(id(i))]
		if st.Into == "" {
			survivors = append(survivors, id(i))
			if m := st.Model("m"); m != nil {
				total += m.V
			}
		} else if st.Pending || (st.Model("m") != nil && st.Model("m").V != 0) {
			t.Errorf("%s still holds %+v", id(i), st)
		}
	}
	if !slices.Equal(survivors, []string{"L00"}) || total < 50 || total > 50+10 {
		t.Fatalf("survivors %v holding %.3f, want L00 alone with the frozen 50 and the page view", survivors, total)
	}
}
