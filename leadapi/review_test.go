package leadapi

import (
	"context"
	"encoding/json"
	"math"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// redisFacts answers a plan from what Redis holds (read as the processor
// reads it), remembering each state's version for the compare-and-set.
type redisFacts struct {
	recs    map[scoring.Subject]leadstate.Record
	applied map[scoring.AppliedQuery]bool
}

func (f *redisFacts) State(s scoring.Subject) (*scoring.State, bool) {
	r, ok := f.recs[s]
	return r.State, ok
}

func (f *redisFacts) Applied(s scoring.Subject, fp uint64, b int64) (bool, bool) {
	a, ok := f.applied[scoring.AppliedQuery{Subject: s, FP: fp, Bucket: b}]
	return a, ok
}

// planStored plans events on what Redis holds, as a processor does, and
// stores the writes of the phases up to lastPhase (a processor killed
// after them); it returns the last phase the plan has.
func planStored(t *testing.T, s *leadstate.Store, core *scoring.Core, events []*event.Event, lastPhase int) int {
	t.Helper()
	ctx := context.Background()
	f := &redisFacts{recs: map[scoring.Subject]leadstate.Record{}, applied: map[scoring.AppliedQuery]bool{}}
	plan := planOn(t, s, core, events, f)
	last := 0
	for _, w := range plan.Writes {
		last = max(last, w.Phase)
	}
	versions := map[scoring.Subject]string{}
	for k, r := range f.recs {
		versions[k] = r.Version
	}
	for phase := 0; phase <= min(last, lastPhase); phase++ {
		var cs []leadstate.Commit
		for _, w := range plan.Writes {
			if w.Phase != phase {
				continue
			}
			c := leadstate.Commit{Subject: w.Subject, Expect: versions[w.Subject], State: w.State, MQLs: w.MQLs, MQAs: w.MQAs}
			for _, sn := range w.Seen {
				c.Seen = append(c.Seen, leadstate.Seen{FP: sn.FP, Bucket: sn.Bucket, ExpireAt: core.BucketExpiry(sn.Bucket)})
			}
			cs = append(cs, c)
		}
		res, err := s.Commit(ctx, cs)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.Status != leadstate.Stored {
				t.Fatalf("phase %d: write of %v: status %v", phase, cs[i].Subject, r.Status)
			}
			versions[cs[i].Subject] = r.Version
		}
	}
	return last
}

// planOn plans events on what Redis holds, reading into f what the plan
// misses.
func planOn(t *testing.T, s *leadstate.Store, core *scoring.Core, events []*event.Event, f *redisFacts) *scoring.Plan {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UnixMilli()
	var plan *scoring.Plan
	for range 100 {
		plan = core.Plan(events, nil, f, now)
		if plan.Complete() {
			break
		}
		recs, err := s.Read(ctx, plan.Missing)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range recs {
			f.recs[k] = v
		}
		if len(plan.MissingApplied) > 0 {
			got, err := s.Applied(ctx, plan.MissingApplied)
			if err != nil {
				t.Fatal(err)
			}
			for i, q := range plan.MissingApplied {
				f.applied[q] = got[i]
			}
		}
	}
	if !plan.Complete() {
		t.Fatal("plan never complete")
	}
	return plan
}

// getLead serves GET /v1/leads/{id} and decodes the answer.
func getLead(t *testing.T, api *API, id string) (int, *LeadView) {
	t.Helper()
	var rc fasthttp.RequestCtx
	rc.Request.Header.SetMethod("GET")
	rc.Request.SetRequestURI(Prefix + url.PathEscape(id))
	rc.Request.Header.Set("Authorization", "Bearer s")
	api.Serve(&rc)
	if rc.Response.StatusCode() != 200 {
		return rc.Response.StatusCode(), nil
	}
	var v LeadView
	if err := json.Unmarshal(rc.Response.Body(), &v); err != nil {
		t.Fatal(err)
	}
	return 200, &v
}

func uniq(name string) string { return name + "-" + time.Now().Format("150405.000000000") }

// A lead aliased into another while the merge is half stored (the source
// frozen with its history, Pending; the processor killed before the target
// got it, or a read between the two writes) is answered with the score the
// scoring core gives it: the survivor's with the frozen history folded in,
// once, whichever steps are stored.
func TestGetLeadMidMerge(t *testing.T) {
	s := leadstatetest.Open(t, testsvc.Redis(t))
	rules := scoring.Default()
	m := rules.Model("default")
	api := New(s, rules.Models, "s")
	for _, stored := range []int{0, 1} { // the phases stored: frozen source; and the target
		old, nu := uniq("old@example.com"), uniq("new@example.com")
		t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
		ev := func(id string, typ event.Type, at time.Duration, lead string) *event.Event {
			return &event.Event{ID: uniq(id), Type: typ, EventTime: t0.Add(at), ReceivedAt: t0.Add(at), LeadID: lead}
		}
		history := []*event.Event{
			ev("f1", event.FormSubmit, 0, old),
			ev("f2", event.FormSubmit, time.Minute, nu),
			ev("f3", event.FormSubmit, 2*time.Minute, nu),
		}
		alias := ev("a", event.Alias, 3*time.Minute, nu)
		alias.PreviousID = old
		core := scoring.NewCore(rules, 0)
		rp := scoring.NewReplayer(rules, 0)
		for _, e := range history {
			planStored(t, s, core, []*event.Event{e}, 100)
			rp.Apply(e)
		}
		rp.Apply(alias)
		if last := planStored(t, s, core, []*event.Event{alias}, stored); last != 2 {
			t.Fatalf("the alias's plan has %d phases, want 3", last+1)
		}
		if st := leadstatetest.State(t, s, scoring.Lead(old)); !st.Pending || st.Into != nu {
			t.Fatalf("source not frozen: %+v", st)
		}
		now := time.Now()
		want := rp.States()[scoring.Lead(nu)].Model("default").ScoreAt(now.UnixMilli(), m.HalfLife)
		code, v := getLead(t, api, old)
		if code != 200 {
			t.Fatalf("stored %d: GET old = %d", stored, code)
		}
		got := v.Models["default"]
		if v.MergedInto != nu || math.Abs(got.Score-want) > 1e-3 {
			t.Errorf("phases 0..%d stored: GET %s = merged_into %q, score %v; want %q, %v (the scoring core's)", stored, old, v.MergedInto, got.Score, nu, want)
		}
		sum := 0.0
		for _, r := range got.TopRules {
			sum += r.Points
		}
		if math.Abs(sum-got.Score) > 1e-3 {
			t.Errorf("phases 0..%d stored: top_rules add up to %v, score %v", stored, sum, got.Score)
		}
	}
}

// A chain whose end has no state (the survivor erased alone) names where
// it ends, never the lead itself, as where it was merged into.
func TestGetLeadDanglingLink(t *testing.T) {
	s := leadstatetest.Open(t, testsvc.Redis(t))
	api := New(s, scoring.Default().Models, "s")
	a, b := uniq("a"), uniq("b")
	st := &scoring.State{Subject: scoring.Lead(a), Into: b}
	if _, err := s.Commit(context.Background(), []leadstate.Commit{{Subject: st.Subject, State: st}}); err != nil {
		t.Fatal(err)
	}
	code, v := getLead(t, api, a)
	if code != 200 || v.MergedInto != b {
		t.Fatalf("GET %s = %d %+v, want merged_into %q", a, code, v, b)
	}
}

// Opposite aliases stored at once (A frozen into B, B frozen into A) leave
// a cycle; the lead API answers for each lead what the scoring core makes
// of it at the next event: the cycle broken where every processor breaks
// it, the other lead's history folded in.
func TestGetLeadCycle(t *testing.T) {
	s := leadstatetest.Open(t, testsvc.Redis(t))
	rules := scoring.Default()
	api := New(s, rules.Models, "s")
	core := scoring.NewCore(rules, 0)
	a, b := uniq("a@example.com"), uniq("b@example.com")
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	ev := func(id string, typ event.Type, at time.Duration, lead string) *event.Event {
		return &event.Event{ID: uniq(id), Type: typ, EventTime: t0.Add(at), ReceivedAt: t0.Add(at), LeadID: lead}
	}
	planStored(t, s, core, []*event.Event{ev("f1", event.FormSubmit, 0, a)}, 100)
	planStored(t, s, core, []*event.Event{ev("f2", event.FormSubmit, time.Minute, b), ev("f3", event.FormSubmit, time.Minute, b)}, 100)
	ab, ba := ev("ab", event.Alias, 2*time.Minute, a), ev("ba", event.Alias, 2*time.Minute, b)
	ab.PreviousID, ba.PreviousID = b, a
	// Both planned on the same states, each stores its first step.
	f := &redisFacts{recs: map[scoring.Subject]leadstate.Record{}, applied: map[scoring.AppliedQuery]bool{}}
	recs, err := s.Read(context.Background(), []scoring.Subject{scoring.Lead(a), scoring.Lead(b)})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range recs {
		f.recs[k] = v
	}
	for _, e := range []*event.Event{ab, ba} {
		plan := planOn(t, s, core, []*event.Event{e}, f)
		for _, w := range plan.Writes {
			if w.Phase == 0 {
				res, err := s.Commit(context.Background(), []leadstate.Commit{{Subject: w.Subject, Expect: f.recs[w.Subject].Version, State: w.State}})
				if err != nil || res[0].Status != leadstate.Stored {
					t.Fatal(err, res)
				}
			}
		}
	}
	if sa, sb := leadstatetest.State(t, s, scoring.Lead(a)), leadstatetest.State(t, s, scoring.Lead(b)); sa.Into != b || sb.Into != a {
		t.Fatalf("no cycle: %v -> %q, %v -> %q", a, sa.Into, b, sb.Into)
	}
	before := map[string]*LeadView{}
	for _, id := range []string{a, b} {
		_, before[id] = getLead(t, api, id)
	}
	// A group call scores nothing: at one of each lead, the processor
	// breaks the cycle and completes the merges on the lead's way, and
	// the lead's scores are what the API answered before.
	for _, id := range []string{a, b} {
		g := ev("g", event.Group, 3*time.Minute, id)
		g.GroupID = uniq("acme")
		planStored(t, s, core, []*event.Event{g}, 100)
		_, after := getLead(t, api, id)
		bs, as := before[id].Models["default"].Score, after.Models["default"].Score
		if before[id].MergedInto != after.MergedInto || math.Abs(as-bs) > 1e-2 {
			t.Errorf("GET %s during the cycle: merged_into %q, score %v; once the processor broke it: %q, %v",
				id, before[id].MergedInto, bs, after.MergedInto, as)
		}
	}
}

// A Redis that stops answering (a stalled server, a partition that drops
// packets) is answered 503 within the API's read timeout, never a hang:
// the lead and account APIs wait readTimeout at most, however the Redis
// client's own timeouts are set.
func TestGetRedisHangs(t *testing.T) {
	srv := testsvc.PrivateRedis(t)
	s := leadstatetest.Open(t, srv.Addr)
	api := New(s, scoring.Default().Models, "s")
	id := uniq("hang@example.com")
	if code, _ := getLead(t, api, id); code != 404 {
		t.Fatalf("GET unknown lead = %d, want 404", code)
	}
	p, err := os.FindProcess(srv.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Signal(syscall.SIGCONT) })
	check := func(how string) {
		t.Helper()
		for _, c := range []struct {
			prefix string
			serve  func(*fasthttp.RequestCtx)
		}{{Prefix, api.Serve}, {AccountPrefix, api.ServeAccount}} {
			var rc fasthttp.RequestCtx
			rc.Request.Header.SetMethod("GET")
			rc.Request.SetRequestURI(c.prefix + url.PathEscape(id))
			rc.Request.Header.Set("Authorization", "Bearer s")
			start := time.Now()
			c.serve(&rc)
			took := time.Since(start)
			if rc.Response.StatusCode() != 503 || len(rc.Response.Header.Peek("Retry-After")) == 0 || took > readTimeout+500*time.Millisecond {
				t.Errorf("GET %s with Redis %s = %d after %v, want 503 with Retry-After within %v", c.prefix, how, rc.Response.StatusCode(), took.Round(time.Millisecond), readTimeout)
			}
		}
	}
	check("stalled")
	// Down (connection refused): 503 as well.
	p.Signal(syscall.SIGCONT)
	if err := srv.Stop(); err != nil {
		t.Log(err)
	}
	check("down")
}

// Reads racing with a merge's writes (the source frozen, the target given
// the history, the source emptied; a pause between the first two as when a
// processor is killed there and its successor redelivers the alias) see
// the source's own score before the alias and the merged score from its
// first write on: never the target's alone, never the history twice.
func TestGetLeadRacesMerge(t *testing.T) {
	s := leadstatetest.Open(t, testsvc.Redis(t))
	rules := scoring.Default()
	api := New(s, rules.Models, "s")
	core := scoring.NewCore(rules, 0)
	old, nu := uniq("old@example.com"), uniq("new@example.com")
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	ev := func(id string, typ event.Type, at time.Duration, lead string) *event.Event {
		return &event.Event{ID: uniq(id), Type: typ, EventTime: t0.Add(at), ReceivedAt: t0.Add(at), LeadID: lead}
	}
	planStored(t, s, core, []*event.Event{ev("f1", event.FormSubmit, 0, old)}, 100)
	planStored(t, s, core, []*event.Event{ev("f2", event.FormSubmit, time.Minute, nu), ev("f3", event.FormSubmit, time.Minute, nu)}, 100)
	alias := ev("a", event.Alias, 2*time.Minute, nu)
	alias.PreviousID = old
	// The writes here, the reads meanwhile in the background. Scores are
	// whole points (three forms within minutes, an hour ago): 30 for old
	// alone, 90 merged.
	stop, done := make(chan struct{}), make(chan struct{})
	seen := map[int]int{}
	read := func() int {
		var rc fasthttp.RequestCtx
		rc.Request.Header.SetMethod("GET")
		rc.Request.SetRequestURI(Prefix + url.PathEscape(old))
		rc.Request.Header.Set("Authorization", "Bearer s")
		api.Serve(&rc)
		var v LeadView
		if rc.Response.StatusCode() != 200 || json.Unmarshal(rc.Response.Body(), &v) != nil {
			return -rc.Response.StatusCode()
		}
		return int(math.Round(v.Models["default"].Score))
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			seen[read()]++
		}
	}()
	time.Sleep(20 * time.Millisecond)
	planStored(t, s, core, []*event.Event{alias}, 0)
	time.Sleep(50 * time.Millisecond)
	planStored(t, s, core, []*event.Event{alias}, 100) // redelivered: completes the merge
	time.Sleep(20 * time.Millisecond)
	close(stop)
	<-done
	for score, n := range seen {
		if score != 30 && score != 90 {
			t.Errorf("GET old answered %d times a score of %d (negative: that status): want 30 (before the alias) or 90 (merged)", n, score)
		}
	}
	// The merged score once the merge is done (how many reads fell between
	// the writes depends on the machine's load: the mid-merge answer itself
	// is TestGetLeadMidMerge's).
	if got := read(); got != 90 {
		t.Errorf("GET old after the merge = %d, want 90 (merged); during it: %v", got, seen)
	}
}

// A merge found done by a mark the survivor keeps beside its state (a lead
// with more ids than its state keeps inline) is not folded again.
func TestGetLeadMidMergeSpilledMark(t *testing.T) {
	s := leadstatetest.Open(t, testsvc.Redis(t))
	rules := scoring.Default()
	m := rules.Model("default")
	api := New(s, rules.Models, "s")
	core := scoring.NewCore(rules, 0)
	rp := scoring.NewReplayer(rules, 0)
	old, nu := uniq("old@example.com"), uniq("new@example.com")
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	ev := func(id string, typ event.Type, at time.Duration, lead string) *event.Event {
		return &event.Event{ID: uniq(id), Type: typ, EventTime: t0.Add(at), ReceivedAt: t0.Add(at), LeadID: lead}
	}
	history := []*event.Event{ev("f1", event.FormSubmit, 0, old)}
	for i := range 300 {
		history = append(history, ev("p"+time.Duration(i).String(), event.PageView, time.Minute, nu))
	}
	planStored(t, s, core, history[:1], 100)
	planStored(t, s, core, history[1:], 100)
	for _, e := range history {
		rp.Apply(e)
	}
	if st := leadstatetest.State(t, s, scoring.Lead(nu)); len(st.Spilled) == 0 {
		t.Fatalf("the target spilled no ids: %d buckets inline", len(st.Recent))
	}
	alias := ev("a", event.Alias, 2*time.Minute, nu)
	alias.PreviousID = old
	rp.Apply(alias)
	planStored(t, s, core, []*event.Event{alias}, 1) // frozen, and the target given the history
	now := time.Now()
	want := rp.States()[scoring.Lead(nu)].Model("default").ScoreAt(now.UnixMilli(), m.HalfLife)
	if _, v := getLead(t, api, old); v == nil || math.Abs(v.Models["default"].Score-want) > 1e-3 {
		t.Fatalf("GET old = %+v, want score %v", v, want)
	}
}
