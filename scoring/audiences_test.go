package scoring

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"go.yaml.in/yaml/v3"
)

const audienceYAML = `
audiences:
  - {name: pricing-returner, event: page_view, url: "/pricing*", count: 3, window: 7d}
  - {name: opener, event: email_open, count: 2, window: 2d}
  - {name: warm, model: m, score_gte: 40}
  - {name: warm-visitor, event: page_view, window: 1d12h, model: flat, score_gte: 9}
`

// audRules are coreRules with audiences.
func audRules(t testing.TB) *Rules {
	t.Helper()
	base, err := yaml.Marshal(coreRules(t))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Parse("aud.yaml", append(base, audienceYAML...))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseAudiences(t *testing.T) {
	r := audRules(t)
	if len(r.Audiences) != 4 {
		t.Fatalf("audiences %+v", r.Audiences)
	}
	a := r.Audience("pricing-returner")
	if a.Cond.Event != event.PageView || a.Cond.URL != "/pricing*" || a.Count != 3 || a.Window != 7*24*time.Hour || a.Model != "" {
		t.Fatalf("pricing-returner = %+v", a)
	}
	if w := r.Audience("warm"); w.HasBehaviour() || w.Model != "m" || w.ScoreGTE != 40 {
		t.Fatalf("warm = %+v", w)
	}
	if w := r.Audience("warm-visitor"); w.Count != 1 || w.Window != 36*time.Hour || w.Model != "flat" {
		t.Fatalf("warm-visitor = %+v", w)
	}
	// Marshalled rules parse back to the same audiences.
	b, err := yaml.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("again.yaml", b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if fmt.Sprintf("%+v", again.Audiences) != fmt.Sprintf("%+v", r.Audiences) {
		t.Fatalf("round trip:\n%+v\n%+v", again.Audiences, r.Audiences)
	}
}

func TestParseAudienceErrors(t *testing.T) {
	head := "models:\n  - {name: m, threshold: 10, rules: [{name: v, event: page_view, points: 1}]}\naudiences:\n"
	f := func(item, want string) {
		t.Helper()
		_, err := Parse("r.yaml", []byte(head+item))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", item, err, want)
		}
	}
	f("  - {name: a, event: page_view}", "r.yaml:4: audiences[0].window: missing")
	f("  - {name: a, event: page_view, window: 7x}", "r.yaml:4: audiences[0].window: bad duration \"7x\"")
	f("  - {name: a, event: page_view, window: 1d-3h}", "bad duration")
	f("  - {name: a, event: page_view, window: 0s}", "window: must be at least 1s")
	f("  - {name: a, event: page_view, window: 1h, count: 0}", "count: must be between 1 and 100, got 0")
	f("  - {name: a, event: page_view, window: 1h, count: 1000}", "count: must be between 1 and 100")
	f("  - {name: a, event: page_view, window: 1h, count: two}", "count: want an integer")
	f("  - {name: a, event: pageview, window: 1h}", "audiences[0].event: unknown event type \"pageview\"")
	f("  - {name: a, event: page_view, window: 1h, url: pricing}", "url: bad glob")
	f("  - {name: a, url: /pricing, window: 1h}", "audiences[0].url: needs event")
	f("  - {name: a, model: x, score_gte: 4}", "audiences[0].model: no model named \"x\"")
	f("  - {name: a, model: m}", "audiences[0].score_gte: missing")
	f("  - {name: a, score_gte: 3}", "audiences[0].model: missing")
	f("  - {name: a}", "audiences[0]: want a condition")
	f("  - {name: A B, model: m, score_gte: 1}", "invalid audience name")
	f("  - {event: page_view, window: 1h}", "audiences[0].name: missing")
	f("  - {name: a, event: page_view, window: 1h, sore_gte: 1}", "audiences[0].sore_gte: unknown key")
	f("  - {name: a, model: m, score_gte: 1}\n  - {name: a, model: m, score_gte: 2}", "r.yaml:5: audiences[1].name: duplicate audience name \"a\" (first at line 4)")
	f("  foo", "audiences: want a list")
}

func pv(id string, at time.Time, lead, anon, path string) *event.Event {
	e := ev(id, event.PageView, at, lead, anon)
	e.Path = path
	return e
}

// The latest three pricing views within 7 days make a pricing-returner;
// the membership lapses by itself as the window moves on.
func TestAudienceWindow(t *testing.T) {
	r := audRules(t)
	day := 24 * time.Hour
	rp := replay(t, r, []*event.Event{
		pv("p1", t0, "", "v", "/pricing"),
		pv("p2", t0.Add(2*day), "", "v", "/pricing/team"),
		pv("x", t0.Add(3*day), "", "v", "/blog"),
	})
	at := func(d time.Duration) []string {
		return r.AudiencesAt([]*State{rp.States()[Anon("v")]}, t0.Add(d).UnixMilli())
	}
	if got := at(3 * day); slices.Contains(got, "pricing-returner") {
		t.Fatalf("two pricing views: %v", got)
	}
	if got := at(3 * day); !slices.Contains(got, "warm-visitor") {
		t.Fatalf("a page view within 1d12h and flat score 9: %v", got)
	}
	if got := at(5 * day); slices.Contains(got, "warm-visitor") {
		t.Fatalf("warm-visitor outlived its window: %v", got)
	}
	rp.Apply(pv("p3", t0.Add(6*day), "", "v", "/pricing"))
	if got := at(6 * day); !slices.Contains(got, "pricing-returner") {
		t.Fatalf("three pricing views in 6 days: %v", got)
	}
	if got := at(7*day - time.Millisecond); !slices.Contains(got, "pricing-returner") {
		t.Fatalf("just inside 7 days: %v", got)
	}
	if got := at(7 * day); slices.Contains(got, "pricing-returner") {
		t.Fatalf("the first view is 7 days old: %v", got)
	}
	// Count hits are kept, no more.
	for i := range 10 {
		rp.Apply(pv(fmt.Sprintf("q%d", i), t0.Add(time.Duration(i)*time.Minute), "", "v", "/pricing"))
	}
	if hits := rp.States()[Anon("v")].Audiences["pricing-returner"]; len(hits) != 3 || hits[0].ID != "q9" || hits[1].ID != "p2" || hits[2].ID != "p3" {
		t.Fatalf("kept hits %v, want the latest 3 (q9 p2 p3)", hits)
	}
	// Unknown visitors are in no audience.
	if got := r.AudiencesAt([]*State{nil}, t0.UnixMilli()); got != nil {
		t.Fatalf("unknown visitor: %v", got)
	}
}

// Score audiences read the survivor's score decayed to the time asked.
func TestAudienceScore(t *testing.T) {
	r := audRules(t)
	rp := replay(t, r, []*event.Event{
		ev("f1", event.FormSubmit, t0, "L", ""),
		pv("p1", t0, "L", "", "/pricing"),
	})
	st := rp.States()[Lead("L")]
	// 30 + 5 + 15 = 50 at t0, 48 h half-life: 40 after about 15.5 h.
	if got := r.AudiencesAt([]*State{st}, t0.Add(15*time.Hour).UnixMilli()); !slices.Contains(got, "warm") {
		t.Fatalf("score 50 decayed 15 h: %v", got)
	}
	if got := r.AudiencesAt([]*State{st}, t0.Add(16*time.Hour).UnixMilli()); slices.Contains(got, "warm") {
		t.Fatalf("score 50 decayed 16 h: %v", got)
	}
}

// A visitor's hits move into the lead it identifies as, and count with the
// lead's own; asked by the visitor's id, the chain answers the lead's. The
// visitor's link keeps a copy of its own (audiences_visitor_test.go).
func TestAudienceMerge(t *testing.T) {
	r := audRules(t)
	rp := replay(t, r, []*event.Event{
		pv("a1", t0, "", "v", "/pricing"),
		pv("a2", t0.Add(time.Hour), "", "v", "/pricing"),
		pv("l1", t0.Add(2*time.Hour), "L", "", "/pricing"),
	})
	if got := r.AudiencesAt([]*State{rp.States()[Anon("v")]}, t0.Add(3*time.Hour).UnixMilli()); slices.Contains(got, "pricing-returner") {
		t.Fatalf("before identify: %v", got)
	}
	rp.Apply(ev("id", event.Identify, t0.Add(3*time.Hour), "L", "v"))
	v, l := rp.States()[Anon("v")], rp.States()[Lead("L")]
	if v.Into != "L" || len(v.Audiences["pricing-returner"]) != 2 || len(l.Audiences["pricing-returner"]) != 3 {
		t.Fatalf("after identify: visitor %+v lead %v", v, l.Audiences)
	}
	if got := r.AudiencesAt([]*State{v, l}, t0.Add(4*time.Hour).UnixMilli()); !slices.Contains(got, "pricing-returner") {
		t.Fatalf("visitor's chain after identify: %v", got)
	}
	// A frozen (pending) visitor's hits count with the survivor's.
	frozen := &State{Subject: Anon("w"), Into: "L2", Pending: true, Audiences: map[string][]AudienceHit{"pricing-returner": {{Time: t0.UnixMilli(), ID: "w1"}, {Time: t0.UnixMilli(), ID: "w2"}}}}
	l2 := &State{Subject: Lead("L2"), Audiences: map[string][]AudienceHit{"pricing-returner": {{Time: t0.UnixMilli(), ID: "w1"}, {Time: t0.UnixMilli(), ID: "x"}}}}
	if got := r.AudiencesAt([]*State{frozen, l2}, t0.UnixMilli()); !slices.Contains(got, "pricing-returner") {
		t.Fatalf("pending merge: %v", got)
	}
	// A visitor with nothing but audience hits is merged, not just linked.
	rp2 := replay(t, r, []*event.Event{pv("b1", t0, "", "only", "/pricing")})
	rp2.States()[Anon("only")].Models = nil
	rp2.Apply(ev("id2", event.Identify, t0.Add(time.Hour), "M", "only"))
	if got := rp2.States()[Lead("M")].Audiences["pricing-returner"]; len(got) != 1 || got[0].ID != "b1" {
		t.Fatalf("lead M's hits %v, want b1 from the visitor", got)
	}
}

// Prune drops what can no longer count, and audiences the rules lost.
func TestAudiencePrune(t *testing.T) {
	r := audRules(t)
	c := NewCore(r, 0)
	st := &State{Subject: Anon("v"), Audiences: map[string][]AudienceHit{
		"pricing-returner": {{Time: 0, ID: "a"}, {Time: 10, ID: "b"}, {Time: 20, ID: "c"}},
		"gone":             {{Time: 0, ID: "z"}},
	}}
	week := (7 * 24 * time.Hour).Milliseconds()
	c.Prune(st, week+10)
	if got := st.Audiences["pricing-returner"]; len(got) != 1 || got[0].ID != "c" || st.Audiences["gone"] != nil {
		t.Fatalf("after prune: %v", st.Audiences)
	}
	c.Prune(st, week+20)
	if st.Audiences != nil {
		t.Fatalf("after every hit left the window: %v", st.Audiences)
	}
}

// Events matching an audience but no scoring rule still reach the state.
func TestAudienceOnlyEventIsRelevant(t *testing.T) {
	r, err := Parse("r.yaml", []byte(`models:
  - {name: m, threshold: 10, rules: [{name: f, event: form_submit, points: 1}]}
audiences:
  - {name: trial, event: custom, track: Trial Started, window: 30d}
`))
	if err != nil {
		t.Fatal(err)
	}
	e := ev("t1", event.Custom, t0, "", "v")
	e.Track = "Trial Started"
	if !NewCore(r, 0).Relevant(e) {
		t.Fatal("an event matching only an audience is not relevant")
	}
	rp := replay(t, r, []*event.Event{e, e})
	if got := r.AudiencesAt([]*State{rp.States()[Anon("v")]}, t0.UnixMilli()); !slices.Equal(got, []string{"trial"}) {
		t.Fatalf("audiences %v", got)
	}
	if rp.Outcomes(Duplicate) != 1 {
		t.Fatalf("the redelivered event is not a duplicate: %v", rp.Outcomes(Duplicate))
	}
}

// canonAud describes every subject's audience hits and, for every subject,
// the audiences it answers at a few times (following its links).
func canonAud(rp *Replayer, r *Rules) map[Subject]string {
	out := canon(rp, r)
	states := rp.States()
	for s, st := range states {
		var b strings.Builder
		names := make([]string, 0, len(st.Audiences))
		for n := range st.Audiences {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(&b, " aud %s=%v", n, st.Audiences[n])
		}
		chain := []*State{st}
		for cur := st; cur.Into != "" && len(chain) < 8; {
			cur = states[Lead(cur.Into)]
			if cur == nil {
				break
			}
			chain = append(chain, cur)
		}
		for d := range 5 {
			at := t0.Add(time.Duration(d) * 6 * 24 * time.Hour).UnixMilli()
			fmt.Fprintf(&b, " @%d=%v", d, r.AudiencesAt(chain, at))
		}
		out[s] += b.String()
	}
	return out
}

// Any arrival order of a history gives every subject the same audience
// hits, and every visitor and lead the same audiences at any time.
func TestAudiencesOrderIndependent(t *testing.T) {
	r := audRules(t)
	members := 0
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 11))
		evs := gen(rng, 60+rng.IntN(60))
		sorted := slices.Clone(evs)
		sort.SliceStable(sorted, func(a, b int) bool { return sorted[a].EventTime.Before(sorted[b].EventTime) })
		want := canonAud(replay(t, r, sorted), r)
		for _, s := range want {
			members += strings.Count(s, "pricing-returner]") + strings.Count(s, "opener]") + strings.Count(s, " opener") + strings.Count(s, "warm")
		}
		for perm := range 4 {
			shuffled := slices.Clone(evs)
			rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
			var got map[Subject]string
			if perm%2 == 0 {
				got = canonAud(replay(t, r, shuffled), r)
			} else {
				got = canonAud(replayBatches(t, r, shuffled, 1+rng.IntN(20)), r)
			}
			diffCanon(t, fmt.Sprintf("seed %d perm %d", seed, perm), got, want)
		}
	}
	if members == 0 {
		t.Fatal("the histories put nobody in any audience: the test compares nothing")
	}
}
