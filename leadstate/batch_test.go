package leadstate_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/leadstream/leadstream/leadstate"
)

// ApplyMany gives, update by update, the results of Apply in the same order:
// leads on different cluster slots, copies of one event in one pipeline, a
// crossing whose pending record every later result of that lead carries.
func TestApplyMany(t *testing.T) {
	eachRedis(t, func(t *testing.T, s *leadstate.Store) {
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
			if st.outbox == 1 && res[i].Outbox[0].MQLID != leadstate.MQLID(st.subj.ID, "m", "e2") {
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
	eachRedis(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		a, b, c, lead := newID("anon"), newID("anon"), newID("anon"), newID("lead")
		for _, x := range []string{a, b} {
			if err := s.Link(ctx, x, lead); err != nil {
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
	eachRedis(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		lead := newID("lead")
		update := func(id string) leadstate.Update {
			return leadstate.Update{Subject: leadstate.Lead(lead), DedupID: id, TriggerEventID: id, Models: []leadstate.ModelUpdate{{
				Name: "m", Threshold: 1000, RearmBelow: 500, Hits: []leadstate.Hit{{Rule: "r", Points: 10, TimeMs: 1_000_000}}}}}
		}
		if _, err := s.ApplyMany(ctx, []leadstate.Update{update("e1")}); err != nil {
			t.Fatal(err)
		}
		if err := s.Client().ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		res, err := s.ApplyMany(ctx, []leadstate.Update{update("e2"), update("e3"), update("e2")})
		if err != nil {
			t.Fatalf("ApplyMany after SCRIPT FLUSH: %v", err)
		}
		if !res[0].Applied || !res[1].Applied || res[2].Applied {
			t.Fatalf("applied flags %v %v %v, want true true false", res[0].Applied, res[1].Applied, res[2].Applied)
		}
		if v := s.Client().HGet(ctx, key(leadstate.Lead(lead), "m:m"), "v").Val(); v != "30" {
			t.Fatalf("score after reload = %s, want 30 (each event once)", v)
		}
	})
}
