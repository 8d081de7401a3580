package scoring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
)

// coreRules: a decaying model with a capped rule, an uncapped one, negative
// points and fit; and a second model without decay.
func coreRules(t testing.TB) *Rules {
	t.Helper()
	r, err := Parse("core.yaml", []byte(`models:
  - name: m
    half_life: 48h
    threshold: 100
    rearm_below: 40
    rules:
      - {name: view, event: page_view, points: 5}
      - {name: pricing, event: page_view, url: "/pricing*", points: 15}
      - {name: careers, event: page_view, url: "/careers*", points: -8}
      - {name: open, event: email_open, points: 10, cap: {count: 2, window: 24h}}
      - {name: click, event: email_click, points: 7, cap: {count: 1, window: 1h}}
      - {name: form, event: form_submit, points: 30}
    fit:
      - {name: senior, trait: title, matches: '(?i)vp|cto', points: 20}
      - {name: big, trait: company.employees, gte: 200, points: 10}
  - name: flat
    half_life: 0s
    threshold: 60
    rules:
      - {name: any-view, event: page_view, points: 3, cap: {count: 3, window: 2h}}
      - {name: form, event: form_submit, points: 20}
`))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func ev(id string, typ event.Type, at time.Time, lead, anon string) *event.Event {
	return &event.Event{ID: id, Type: typ, EventTime: at, ReceivedAt: at, LeadID: lead, AnonymousID: anon}
}

// replay applies events in order through a fresh Replayer.
func replay(t testing.TB, r *Rules, evs []*event.Event) *Replayer {
	t.Helper()
	rp := NewReplayer(r, 0)
	for _, e := range evs {
		rp.Apply(e)
	}
	return rp
}

// canon describes the survivors' states and the links, for comparison:
// behaviour and rules decayed to each model's T, caps, fit, traits.
func canon(rp *Replayer, rules *Rules) map[Subject]string {
	out := map[Subject]string{}
	for s, st := range rp.States() {
		if st.Into != "" {
			out[s] = "-> " + st.Into
			continue
		}
		var b strings.Builder
		for _, ms := range st.Models {
			hl := rules.Model(ms.Name).HalfLife
			fmt.Fprintf(&b, "%s t=%d v=%.9g fit=%g %v hash=%s;", ms.Name, ms.T, ms.V, ms.Fit, ms.FitReasons, ms.RulesHash)
			names := make([]string, 0, len(ms.Rules))
			for n := range ms.Rules {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				v := ms.Rules[n].V * DecayFactor(ms.T-ms.Rules[n].T, hl)
				if math.Abs(v) < 1e-9 {
					v = 0
				}
				fmt.Fprintf(&b, " %s=%.9g", n, v)
			}
			for _, k := range ms.capKeys() {
				fmt.Fprintf(&b, " cap[%s@%d]=%v", k.Rule, k.Window, ms.Caps[k])
			}
			b.WriteString(";")
		}
		keys := make([]string, 0, len(st.Traits))
		for k := range st.Traits {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, " trait %s=%s", k, st.Traits[k].Value)
		}
		out[s] = b.String()
	}
	return out
}

func diffCanon(t *testing.T, what string, got, want map[Subject]string) {
	t.Helper()
	for s, w := range want {
		if g := got[s]; g != w {
			t.Fatalf("%s: %v\n got %s\nwant %s", what, s, g, w)
		}
	}
	for s, g := range got {
		if _, ok := want[s]; !ok {
			t.Fatalf("%s: extra subject %v: %s", what, s, g)
		}
	}
}

// A capped window scores its earliest hits by (time, id), in any order: a
// late earlier hit displaces the latest one, whose points are taken back.
func TestCapScoresEarliestHits(t *testing.T) {
	r := coreRules(t)
	opens := []*event.Event{
		ev("o1", event.EmailOpen, t0.Add(1*time.Hour), "L", ""),
		ev("o2", event.EmailOpen, t0.Add(2*time.Hour), "L", ""),
		ev("o3", event.EmailOpen, t0.Add(3*time.Hour), "L", ""),
		ev("o0", event.EmailOpen, t0.Add(3*time.Hour), "L", ""), // same time: id orders
	}
	want := canon(replay(t, r, opens), r)
	st := replay(t, r, opens).States()[Lead("L")].Model("m")
	if got := st.Caps[CapKey{"open", CapWindow(t0.UnixMilli(), 24*time.Hour)}]; len(got) != 2 || got[0].ID != "o1" || got[1].ID != "o2" {
		t.Fatalf("scoring hits %v, want o1 and o2", got)
	}
	// 10 at 1h and 10 at 2h, decayed to T = 3h (the newest time seen).
	hl := 48 * time.Hour
	wantV := 10*DecayFactor(2*time.Hour.Milliseconds(), hl) + 10*DecayFactor(time.Hour.Milliseconds(), hl)
	if math.Abs(st.V-wantV) > 1e-12 || st.T != t0.Add(3*time.Hour).UnixMilli() {
		t.Fatalf("v=%v t=%v, want %v at 3h", st.V, st.T, wantV)
	}
	for _, perm := range [][]int{{3, 2, 1, 0}, {2, 0, 3, 1}, {1, 3, 0, 2, 2, 0}} {
		var evs []*event.Event
		for _, i := range perm {
			evs = append(evs, opens[i])
		}
		diffCanon(t, fmt.Sprint(perm), canon(replay(t, r, evs), r), want)
	}
}

// gen builds a random history: leads, visitors that identify into one lead
// each (some never), aliases of visitors and of leads, identifies with
// traits, capped and uncapped hits over three weeks, and duplicates.
func gen(rng *rand.Rand, n int) []*event.Event {
	leads := []string{"L1", "L2", "L3", "L4"}
	visitorOf := map[string]string{"a1": "L1", "a2": "L1", "a3": "L2", "a4": "", "a5": "L3"}
	visitors := []string{"a1", "a2", "a3", "a4", "a5"}
	types := []event.Type{event.PageView, event.PageView, event.EmailOpen, event.EmailOpen, event.EmailClick, event.FormSubmit}
	paths := []string{"/", "/pricing", "/careers", "/blog"}
	titles := []string{"VP Sales", "intern", "CTO"}
	var evs []*event.Event
	for i := range n {
		at := t0.Add(time.Duration(rng.IntN(21*24*60)) * time.Minute)
		id := fmt.Sprintf("e%03d", i)
		var e *event.Event
		switch k := rng.IntN(10); {
		case k < 4: // a visitor's anonymous event
			a := visitors[rng.IntN(len(visitors))]
			e = ev(id, types[rng.IntN(len(types))], at, "", a)
		case k < 7: // a lead's event
			e = ev(id, types[rng.IntN(len(types))], at, leads[rng.IntN(len(leads))], "")
		case k < 8: // a visitor identifies
			a := visitors[rng.IntN(len(visitors))]
			if visitorOf[a] == "" {
				e = ev(id, event.PageView, at, "", a)
				break
			}
			e = ev(id, event.Identify, at, visitorOf[a], a)
			e.Traits = []byte(fmt.Sprintf(`{"title":%q,"company":{"employees":%d}}`, titles[rng.IntN(len(titles))], 100*rng.IntN(5)))
		default: // a lead's identify
			e = ev(id, event.Identify, at, leads[rng.IntN(len(leads))], "")
			e.Traits = []byte(fmt.Sprintf(`{"title":%q}`, titles[rng.IntN(len(titles))]))
		}
		if e.Type == event.PageView {
			e.Path = paths[rng.IntN(len(paths))]
		}
		evs = append(evs, e)
	}
	// L4 is folded into L2 by alias, once.
	evs = append(evs, &event.Event{ID: "alias-L4", Type: event.Alias, EventTime: t0.Add(5 * 24 * time.Hour), ReceivedAt: t0.Add(5 * 24 * time.Hour),
		LeadID: "L2", PreviousID: "L4"})
	// Some events twice.
	for range n / 10 {
		evs = append(evs, evs[rng.IntN(len(evs))])
	}
	return evs
}

// Any arrival order of one history, with duplicates, leaves the same states
// (to 1e-9; caps, fit and traits included) and the same links, one event at
// a time or planned in batches.
func TestPlanIsOrderIndependent(t *testing.T) {
	r := coreRules(t)
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		evs := gen(rng, 60+rng.IntN(60))
		sorted := slices.Clone(evs)
		sort.SliceStable(sorted, func(a, b int) bool { return sorted[a].EventTime.Before(sorted[b].EventTime) })
		want := canon(replay(t, r, sorted), r)
		for perm := range 6 {
			shuffled := slices.Clone(evs)
			rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
			var got map[Subject]string
			if perm%2 == 0 {
				got = canon(replay(t, r, shuffled), r)
			} else {
				got = canon(replayBatches(t, r, shuffled, 1+rng.IntN(20)), r)
			}
			diffCanon(t, fmt.Sprintf("seed %d perm %d", seed, perm), got, want)
		}
	}
}

// replayBatches plans events in batches of n, as the processor does.
func replayBatches(t testing.TB, r *Rules, evs []*event.Event, n int) *Replayer {
	t.Helper()
	rp := NewReplayer(r, 0)
	for lo := 0; lo < len(evs); lo += n {
		p := rp.core.Plan(evs[lo:min(lo+n, len(evs))], nil, rp.facts, 0)
		if !p.Complete() {
			t.Fatal("incomplete plan over complete facts")
		}
		rp.Commit(p)
	}
	return rp
}

// A visitor's history merged when it identifies equals the same events
// scored on the lead directly.
func TestMergeEqualsDirect(t *testing.T) {
	r := coreRules(t)
	visitor := []*event.Event{
		ev("v1", event.PageView, t0, "", "anon"),
		ev("v2", event.EmailOpen, t0.Add(time.Hour), "", "anon"),
		ev("v3", event.EmailOpen, t0.Add(2*time.Hour), "", "anon"),
	}
	visitor[0].Path = "/pricing"
	lead := []*event.Event{ev("l1", event.EmailOpen, t0.Add(30*time.Minute), "L", ""), ev("l2", event.FormSubmit, t0.Add(3*time.Hour), "L", "")}
	identify := ev("id", event.Identify, t0.Add(4*time.Hour), "L", "anon")
	merged := replay(t, r, slices.Concat(visitor, lead, []*event.Event{identify}))

	var direct []*event.Event
	for _, e := range visitor {
		d := *e
		d.AnonymousID, d.LeadID = "", "L"
		direct = append(direct, &d)
	}
	id := *identify
	id.AnonymousID = ""
	want := canon(replay(t, r, slices.Concat(direct, lead, []*event.Event{&id})), r)
	got := canon(merged, r)
	if got[Lead("L")] != want[Lead("L")] {
		t.Fatalf("merged:\n got %s\nwant %s", got[Lead("L")], want[Lead("L")])
	}
	// The open cap (2 a day) held across the two histories: v2 and l1 score,
	// v3 does not.
	caps := merged.States()[Lead("L")].Model("m").Caps[CapKey{"open", CapWindow(t0.UnixMilli(), 24*time.Hour)}]
	if len(caps) != 2 || caps[0].ID != "l1" || caps[1].ID != "v2" {
		t.Fatalf("open cap after merge = %v, want l1 then v2", caps)
	}
	if a := merged.States()[Anon("anon")]; a.Into != "L" || a.Pending || len(a.Models) != 0 {
		t.Fatalf("visitor after merge = %+v, want an empty link to L", a)
	}
	// A redelivered visitor event, now routed to the lead, is a duplicate.
	if o := merged.Apply(visitor[1]); o != Duplicate {
		t.Fatalf("redelivered visitor event: %v, want duplicate", o)
	}
}

// An alias with userId and previousId both leads folds previousId into
// userId; previousId's later events score on the survivor.
func TestAliasMergesLeads(t *testing.T) {
	r := coreRules(t)
	rp := replay(t, r, []*event.Event{
		ev("p1", event.FormSubmit, t0, "P", ""),
		ev("l1", event.FormSubmit, t0.Add(time.Hour), "L", ""),
		{ID: "al", Type: event.Alias, EventTime: t0.Add(2 * time.Hour), ReceivedAt: t0.Add(2 * time.Hour), LeadID: "L", PreviousID: "P"},
		ev("p2", event.FormSubmit, t0.Add(3*time.Hour), "P", ""),
	})
	p, l := rp.States()[Lead("P")], rp.States()[Lead("L")]
	if p.Into != "L" || len(p.Models) != 0 {
		t.Fatalf("P after alias = %+v, want merged into L", p)
	}
	ms := l.Model("flat")
	if ms.V != 60 || !ms.MQL || ms.MQLTrigger != "p2" {
		t.Fatalf("L flat model = %+v, want 60 points (three forms) and the crossing at p2", ms)
	}
	if rp.Crossings("L", "flat") != 1 || rp.Crossings("P", "flat") != 0 {
		t.Fatalf("crossings L %d P %d", rp.Crossings("L", "flat"), rp.Crossings("P", "flat"))
	}
}

// Late events (event time more than the window before receipt) never score,
// by the event's own fields; Stale is about the processor's clock.
func TestLateAndStale(t *testing.T) {
	c := NewCore(coreRules(t), 10*24*time.Hour)
	e := ev("x", event.FormSubmit, t0, "L", "")
	e.ReceivedAt = t0.Add(10*24*time.Hour + 999*time.Millisecond) // to the second: exactly W
	if c.Late(e) {
		t.Error("an event exactly W before its receipt (to the second) is late")
	}
	e.ReceivedAt = t0.Add(10*24*time.Hour + time.Second)
	if !c.Late(e) {
		t.Error("an event more than W before its receipt is not late")
	}
	te := t0.UnixMilli()
	expiry := c.BucketExpiry(c.Bucket(te))
	if expiry < te+20*24*time.Hour.Milliseconds() {
		t.Errorf("bucket of %d expires at %d: before two windows", te, expiry)
	}
	if c.Stale(te, te+10*24*time.Hour.Milliseconds()) || !c.Stale(te, expiry) {
		t.Error("Stale does not follow the bucket's expiry")
	}
	rp := NewReplayer(coreRules(t), 10*24*time.Hour)
	e.ReceivedAt = t0.Add(11 * 24 * time.Hour)
	if o := rp.Apply(e); o != Late || len(rp.States()) != 0 {
		t.Errorf("late event: %v, states %v", o, rp.States())
	}
}

// Prune forgets the cap windows no event can score in any more, keeping
// their points.
func TestPrune(t *testing.T) {
	r := coreRules(t)
	c := NewCore(r, 24*time.Hour)
	rp := NewReplayer(r, 24*time.Hour)
	rp.Apply(ev("o1", event.EmailOpen, t0, "L", ""))
	rp.Apply(ev("o2", event.EmailOpen, t0.Add(5*24*time.Hour), "L", ""))
	st := rp.States()[Lead("L")]
	before := st.Model("m").V
	c.Prune(st, t0.Add(2*24*time.Hour).UnixMilli())
	if len(st.Model("m").Caps) != 2 {
		t.Fatalf("windows pruned too early: %v", st.Model("m").Caps)
	}
	c.Prune(st, t0.Add(5*24*time.Hour).UnixMilli())
	if len(st.Model("m").Caps) != 1 || st.Model("m").V != before {
		t.Fatalf("after prune: caps %v v %v (was %v)", st.Model("m").Caps, st.Model("m").V, before)
	}
}

// Traits keep the latest identify's value, whatever the order, and only
// those a fit rule reads; an identify with unusable traits is dead.
func TestTraits(t *testing.T) {
	r := coreRules(t)
	a := ev("i1", event.Identify, t0, "L", "")
	a.Traits = []byte(`{"title":"CTO","email":"x@example.com","company":{"employees":500}}`)
	b := ev("i2", event.Identify, t0.Add(time.Hour), "L", "")
	b.Traits = []byte(`{"title":"intern"}`)
	for _, order := range [][]*event.Event{{a, b}, {b, a}} {
		rp := replay(t, r, order)
		st := rp.States()[Lead("L")]
		if len(st.Traits) != 2 || string(st.Traits["title"].Value) != `"intern"` || st.Traits["email"] != nil {
			t.Fatalf("traits %v", st.Traits)
		}
		if ms := st.Model("m"); ms.Fit != 10 {
			t.Fatalf("fit %v, want 10 (big company, no longer senior)", ms.Fit)
		}
	}
	bad := ev("i3", event.Identify, t0, "L", "")
	bad.Traits = []byte(`{"title":1e400}`)
	rp := NewReplayer(r, 0)
	p := rp.core.Plan([]*event.Event{bad}, nil, rp.facts, 0)
	if p.Outcomes[0] != Dead || p.Errors[0] == nil {
		t.Fatalf("bad traits: %v %v", p.Outcomes[0], p.Errors[0])
	}
}

// Each write of a plan is a separate compare-and-set, so a write must be
// stored after every write it was planned on. One batch: a visitor with
// history merged into a lead, another merged into a second lead which is
// then aliased into the first (its phase rises after the first merge was
// numbered), and a visitor with no history linked to the first lead.
func TestPlanOrdersWrites(t *testing.T) {
	page := func(id, anon string, at time.Time) *event.Event {
		e := ev(id, event.PageView, at, "", anon)
		e.Path = "/pricing"
		return e
	}
	alias := ev("al", event.Alias, t0.Add(5*time.Minute), "L", "")
	alias.PreviousID = "L2"
	evs := []*event.Event{
		page("p1", "V1", t0),
		ev("i1", event.Identify, t0.Add(time.Minute), "L", "V1"),
		page("p3", "V3", t0.Add(2*time.Minute)),
		ev("i3", event.Identify, t0.Add(3*time.Minute), "L2", "V3"),
		alias,
		ev("i4", event.Identify, t0.Add(6*time.Minute), "L", "V4"),
	}
	core := NewCore(coreRules(t), 0)
	p := core.Plan(evs, nil, memFacts{states: map[Subject]*State{}, seen: map[Subject]map[Seen]bool{}}, 0)
	if !p.Complete() {
		t.Fatalf("plan incomplete: %+v", p)
	}
	// phase[subject] lists the phases of its writes, in order.
	phase := map[Subject][]int{}
	for _, w := range p.Writes {
		phase[w.Subject] = append(phase[w.Subject], w.Phase)
	}
	v1, v3, v4, l, l2 := phase[Anon("V1")], phase[Anon("V3")], phase[Anon("V4")], phase[Lead("L")], phase[Lead("L2")]
	if len(v1) != 2 || len(v3) != 2 || len(v4) != 1 || len(l) != 1 || len(l2) != 2 {
		t.Fatalf("writes per subject: V1 %v, V3 %v, V4 %v, L %v, L2 %v", v1, v3, v4, l, l2)
	}
	for _, c := range []struct {
		what          string
		before, after int
	}{
		{"V1 frozen before L", v1[0], l[0]},
		{"L before V1 emptied", l[0], v1[1]},
		{"V3 frozen before L2 (frozen by the alias)", v3[0], l2[0]},
		{"L2 frozen before V3 emptied", l2[0], v3[1]},
		{"L2 frozen before L", l2[0], l[0]},
		{"L before L2 emptied", l[0], l2[1]},
		{"V4's link before L", v4[0], l[0]},
	} {
		if c.before >= c.after {
			t.Errorf("%s: phases %d, %d", c.what, c.before, c.after)
		}
	}
}
