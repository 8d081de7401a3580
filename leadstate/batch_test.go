package leadstate_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
)

// ApplyMany gives, update by update, the results of Apply in the same order:
// leads on different cluster slots, copies of one event in one pipeline, a
// crossing whose pending record every later result of that lead carries.
func TestApplyMany(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		if res, err := s.ApplyMany(ctx, nil); err != nil || len(res) != 0 {
			t.Fatalf("ApplyMany(nil) = %v, %v", res, err)
		}
		leads := []string{newID("lead"), newID("lead"), newID("lead")}
		anon := newID("anon")
		type step struct {
			subj    leadstate.Subject
			id      string
			points  float64
			applied bool
			outbox  int
		}
		var steps []step
		f := func(subj leadstate.Subject, id string, points float64, applied bool, outbox int) {
			steps = append(steps, step{subj, id, points, applied, outbox})
		}
		for i, l := range leads {
			f(leadstate.Lead(l), "e1", 60, true, 0)
			f(leadstate.Anon(anon), fmt.Sprintf("a%d", i), 500, true, 0) // never an MQL
			f(leadstate.Lead(l), "e1", 60, false, 0)                     // copy in the same pipeline
			f(leadstate.Lead(l), "e2", 50, true, 1)                      // 110: crosses
			f(leadstate.Lead(l), "e3", 10, true, 1)                      // still pending
			f(leadstate.Lead(l), "e2", 50, false, 1)                     // redelivered trigger
		}
		us := make([]leadstate.Update, len(steps))
		for i, st := range steps {
			us[i] = leadstate.Update{Subject: st.subj, DedupID: st.id, TriggerEventID: st.id,
				Models: []leadstate.ModelUpdate{model(0, 100, 50, hit("r", st.points, t0))}}
		}
		res, err := s.ApplyMany(ctx, us)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != len(steps) {
			t.Fatalf("%d results for %d updates", len(res), len(steps))
		}
		for i, st := range steps {
			if res[i].Applied != st.applied || len(res[i].Outbox) != st.outbox {
				t.Fatalf("update %d (%v %s): %+v, want applied %v with %d pending", i, st.subj, st.id, res[i], st.applied, st.outbox)
			}
			if st.outbox == 1 && res[i].Outbox[0].MQLID != event.MQLID(st.subj.ID, "m", "e2") {
				t.Fatalf("update %d: pending %+v, want the crossing of %s by e2", i, res[i].Outbox[0], st.subj.ID)
			}
		}
		for _, l := range leads {
			if v, _ := vt(t, s, leadstate.Lead(l)); v != 120 {
				t.Errorf("lead %s: v = %v, want 120", l, v)
			}
		}
		if v, _ := vt(t, s, leadstate.Anon(anon)); v != 1500 {
			t.Errorf("anonymous v = %v, want 1500", v)
		}
	})
}

// LinkedLeads reads many identity links at once: "" for ids without one.
func TestLinkedLeads(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		a, b, c, lead := newID("anon"), newID("anon"), newID("anon"), newID("lead")
		for _, x := range []string{a, b} {
			if err := s.LinkMerged(ctx, []leadstate.Merged{{Anon: x, Lead: lead}}, nil); err != nil {
				t.Fatal(err)
			}
		}
		f := func(anons []string, want map[string]string) {
			t.Helper()
			got, err := s.LinkedLeads(ctx, anons)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("LinkedLeads(%v) = %v, want %v", anons, got, want)
			}
		}
		f(nil, map[string]string{})
		f([]string{c}, map[string]string{c: ""})
		f([]string{a, c, b, a}, map[string]string{a: lead, b: lead, c: ""})
	})
}

// After the servers lose their script cache (restart, failover), ApplyMany
// reloads the script and applies every update exactly once.
func TestApplyManyAfterScriptFlush(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		lead := newID("lead")
		update := func(id string) leadstate.Update {
			return leadstate.Update{Subject: leadstate.Lead(lead), DedupID: id, TriggerEventID: id, Models: []leadstate.ModelUpdate{{
				Name: "m", Threshold: 1000, RearmBelow: 500, Hits: []leadstate.Hit{{Rule: "r", Points: 10, TimeMs: 1_000_000}}}}}
		}
		if _, err := s.ApplyMany(ctx, []leadstate.Update{update("e1")}); err != nil {
			t.Fatal(err)
		}
		if err := leadstatetest.Client(t, s).ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		res, err := s.ApplyMany(ctx, []leadstate.Update{update("e2"), update("e3"), update("e2")})
		if err != nil {
			t.Fatalf("ApplyMany after SCRIPT FLUSH: %v", err)
		}
		if !res[0].Applied || !res[1].Applied || res[2].Applied {
			t.Fatalf("applied flags %v %v %v, want true true false", res[0].Applied, res[1].Applied, res[2].Applied)
		}
		if v := leadstatetest.Client(t, s).HGet(ctx, key(leadstate.Lead(lead), "m:m"), "v").Val(); v != "30" {
			t.Fatalf("score after reload = %s, want 30 (each event once)", v)
		}
	})
}

// The batched helpers of the processor's merge and identify paths do in one
// pipeline what their one-at-a-time forms do: AnonymousHistories reads what
// AnonymousHistory reads, LinkMerged links (the last link of a visitor wins)
// and drops the visitor's state, TraitsMany/SetTraitsMany round-trip traits,
// AckOutboxMany clears exactly the given records of several leads.
func TestBatchHelpers(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		models := []string{"m", "other"}
		a, b, empty := newID("anon"), newID("anon"), newID("anon")
		l1, l2 := newID("lead"), newID("lead")
		apply(t, s, leadstate.Anon(a), "a1", model(hl, 1000, 500, hit("page-view", 5, t0), hit("pricing-page", 15, t0)))
		apply(t, s, leadstate.Anon(a), "a2", model(hl, 1000, 500, hit("page-view", 5, t0.Add(day))))
		apply(t, s, leadstate.Anon(b), "b1", model(hl, 1000, 500, hit("email-open", 10, t0)))

		if h, err := s.AnonymousHistories(ctx, nil, models); err != nil || len(h) != 0 {
			t.Fatalf("AnonymousHistories(nil) = %v, %v", h, err)
		}
		hs, err := s.AnonymousHistories(ctx, []string{b, empty, a}, models)
		if err != nil || len(hs) != 3 {
			t.Fatalf("AnonymousHistories = %v, %v", hs, err)
		}
		for i, x := range []string{b, empty, a} {
			h := leadstatetest.AnonymousHistory(t, s, x, models)
			hits, seen := h.Hits, h.Seen
			slices.Sort(seen)
			slices.Sort(hs[i].Seen)
			if !slices.Equal(seen, hs[i].Seen) || fmt.Sprint(hits) != fmt.Sprint(hs[i].Hits) {
				t.Fatalf("visitor %d: AnonymousHistories %+v, AnonymousHistory %v %v", i, hs[i], hits, seen)
			}
		}
		if len(hs[2].Hits["m"]) != 2 || len(hs[2].Seen) != 2 || len(hs[1].Seen) != 0 || len(hs[1].Hits["m"]) != 0 {
			t.Fatalf("histories %+v", hs)
		}

		if err := s.LinkMerged(ctx, []leadstate.Merged{{Anon: a, Lead: l1}, {Anon: b, Lead: l1}, {Anon: a, Lead: l2}}, models); err != nil {
			t.Fatal(err)
		}
		for x, want := range map[string]string{a: l2, b: l1} {
			if l := leadstatetest.LinkedLead(t, s, x); l != want {
				t.Errorf("LinkedLead(%s) = %q; want %s", x, l, want)
			}
			for _, suffix := range []string{"seen", "outbox", "profile", "m:m", "m:other"} {
				if n, err := leadstatetest.Client(t, s).Exists(ctx, key(leadstate.Anon(x), suffix)).Result(); err != nil || n != 0 {
					t.Errorf("visitor key %s: exists = %d, %v after LinkMerged", suffix, n, err)
				}
			}
		}

		if tr, err := s.TraitsMany(ctx, []string{l1, l2}); err != nil || len(tr) != 0 {
			t.Fatalf("TraitsMany before any = %v, %v", tr, err)
		}
		want := map[string]map[string]any{l1: {"title": "CTO", "employees": 500.0}, l2: {"title": "VP"}}
		if err := s.SetTraitsMany(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := s.TraitsMany(ctx, []string{l1, l2, l1, newID("lead")})
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("TraitsMany = %v, %v; want %v", got, err, want)
		}
		if one := leadstatetest.Traits(t, s, l1); fmt.Sprint(one) != fmt.Sprint(want[l1]) {
			t.Fatalf("Traits = %v", one)
		}

		// Two crossings pending on l1 (two models), one on l2.
		cross := func(lead, id string, models ...string) []event.MQL {
			t.Helper()
			var mus []leadstate.ModelUpdate
			for _, m := range models {
				mu := model(0, 100, 50, hit("r", 150, t0))
				mu.Name = m
				mus = append(mus, mu)
			}
			res := apply(t, s, leadstate.Lead(lead), id, mus...)
			if len(res.Outbox) != len(models) {
				t.Fatalf("%s: %d pending, want %d", lead, len(res.Outbox), len(models))
			}
			return res.Outbox
		}
		p1, p2 := cross(l1, "e1", "m", "other"), cross(l2, "e1", "m")
		if err := s.AckOutboxMany(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.AckOutboxMany(ctx, []event.MQL{p2[0], p1[0]}); err != nil {
			t.Fatal(err)
		}
		if n := hlen(t, s, key(leadstate.Lead(l2), "outbox")); n != 0 {
			t.Errorf("l2 outbox holds %d, want 0", n)
		}
		left, err := leadstatetest.Client(t, s).HKeys(ctx, key(leadstate.Lead(l1), "outbox")).Result()
		if err != nil || !slices.Equal(left, []string{p1[1].MQLID}) {
			t.Errorf("l1 outbox holds %v, %v; want only %s", left, err, p1[1].MQLID)
		}
	})
}
