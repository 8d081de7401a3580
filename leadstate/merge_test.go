package leadstate_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/leadstream/leadstream/leadapi"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// The merge path of the processor, step by step: an anonymous visitor's history
// read with AnonymousHistory and applied to a lead (dedup "merge:<anon>", its
// event ids as ExtraSeen), LinkMerged. The lead ends exactly as if the
// visitor's events had been its own all along, and the visitor's events are
// duplicates on the lead.
func TestAnonymousMerge(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		anon, lead, control := newID("anon"), newID("lead"), newID("lead")
		at := func(d time.Duration) time.Time { return t0.Add(d) }
		type ev struct {
			id   string
			hits []leadstate.Hit
		}
		anonEvents := []ev{
			{"a1", []leadstate.Hit{hit("page-view", 5, at(0)), hit("pricing-page", 15, at(0))}},
			{"a2", []leadstate.Hit{hit("page-view", 5, at(5*day))}},
			{"a3", []leadstate.Hit{hit("careers-page", -20, at(20*day)), hit("page-view", 5, at(20*day))}},
			{"a4", []leadstate.Hit{hit("email-open", 10, at(2*day))}}, // late
		}
		leadBefore := []ev{
			{"l1", []leadstate.Hit{hit("form-submit", 30, at(10*day))}},
			{"l2", []leadstate.Hit{hit("email-click", 15, at(day))}},
		}
		leadAfter := []ev{{"l3", []leadstate.Hit{hit("email-click", 15, at(15*day))}}}
		f := func(subj leadstate.Subject, evs []ev) {
			t.Helper()
			for _, e := range evs {
				if res := apply(t, s, subj, e.id, model(hl, 1000, 500, e.hits...)); !res.Applied || len(res.Outbox) != 0 {
					t.Fatalf("%v %s: %+v", subj, e.id, res)
				}
			}
		}
		f(leadstate.Anon(anon), anonEvents)
		f(leadstate.Lead(lead), leadBefore)

		h := leadstatetest.AnonymousHistory(t, s, anon, []string{"m", "other"})
		hist, seen := h.Hits, h.Seen
		slices.Sort(seen)
		if !slices.Equal(seen, []string{"a1", "a2", "a3", "a4"}) || len(hist["other"]) != 0 || len(hist["m"]) != 4 {
			t.Fatalf("AnonymousHistory = %v, %v", hist, seen)
		}
		for i, want := range []string{"careers-page", "email-open", "page-view", "pricing-page"} {
			if h := hist["m"][i]; h.Rule != want || h.CapCount != 0 {
				t.Fatalf("history hit %d = %+v, want rule %s (sorted by rule)", i, h, want)
			}
		}
		merge := &leadstate.Update{Subject: leadstate.Lead(lead), DedupID: "merge:" + anon, TriggerEventID: "identify-1", ExtraSeen: seen,
			Models: []leadstate.ModelUpdate{model(hl, 1000, 500, hist["m"]...)}}
		for i, wantApplied := range []bool{true, false} { // a redelivered identify repeats the merge
			if res, err := leadstatetest.Apply(ctx, s, merge); err != nil || res.Applied != wantApplied {
				t.Fatalf("merge apply %d = %+v, %v; want applied %v", i, res, err, wantApplied)
			}
		}
		if err := s.LinkMerged(ctx, []leadstate.Merged{{Anon: anon, Lead: lead}}, []string{"m", "other"}); err != nil {
			t.Fatal(err)
		}
		f(leadstate.Lead(lead), leadAfter)

		// The control lead got every event directly.
		f(leadstate.Lead(control), slices.Concat(leadBefore, anonEvents, leadAfter))
		var wantV float64
		var wantT int64
		for _, e := range slices.Concat(anonEvents, leadBefore, leadAfter) {
			for _, h := range e.hits {
				wantV, wantT = scoring.Add(wantV, wantT, h.Points, h.TimeMs, hl)
			}
		}
		v, tm := vt(t, s, leadstate.Lead(lead))
		cv, ctm := vt(t, s, leadstate.Lead(control))
		if tm != wantT || ctm != wantT || !near(v, wantV, 1e-12, 0) || !near(cv, wantV, 1e-12, 0) {
			t.Fatalf("merged lead (v, t) = (%v, %d), control (%v, %d), want (%v, %d)", v, tm, cv, ctm, wantV, wantT)
		}
		infos := []scoring.Model{{Name: "m", HalfLife: hl, Threshold: 1000}}
		now := at(45 * day)
		lv, err := leadapi.Read(ctx, s, lead, infos, now)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := leadapi.Read(ctx, s, control, infos, now)
		if err != nil {
			t.Fatal(err)
		}
		got, want := lv.Models["m"], cl.Models["m"]
		if !near(got.Score, scoring.ValueAt(wantV, wantT, ms(now), hl), 1e-12, 0) || !near(got.Score, want.Score, 1e-12, 0) ||
			len(got.TopRules) != len(want.TopRules) {
			t.Fatalf("merged lead view %+v, control %+v", got, want)
		}
		for i := range want.TopRules {
			if got.TopRules[i].Rule != want.TopRules[i].Rule || !near(got.TopRules[i].Points, want.TopRules[i].Points, 1e-12, 0) {
				t.Fatalf("merged lead top rules %v, control %v", got.TopRules, want.TopRules)
			}
		}

		// The anonymous state is gone, the link stays.
		for _, suffix := range []string{"seen", "outbox", "profile", "m:m", "m:other"} {
			if n, err := leadstatetest.Client(t, s).Exists(ctx, key(leadstate.Anon(anon), suffix)).Result(); err != nil || n != 0 {
				t.Errorf("anonymous key %s: exists = %d, %v after LinkMerged", suffix, n, err)
			}
		}
		if l := leadstatetest.LinkedLead(t, s, anon); l != lead {
			t.Fatalf("LinkedLead(%s) = %q; want %s", anon, l, lead)
		}
		if l := leadstatetest.LinkedLead(t, s, newID("anon")); l != "" {
			t.Fatalf("LinkedLead(unknown) = %q", l)
		}
		if h := leadstatetest.AnonymousHistory(t, s, anon, []string{"m"}); len(h.Hits["m"]) != 0 || len(h.Seen) != 0 {
			t.Fatalf("AnonymousHistory after drop = %v, %v", h.Hits, h.Seen)
		}

		// Replays of the visitor's events, now routed to the lead, are duplicates.
		before := hash(t, s, leadstate.Lead(lead), "m")
		for _, e := range anonEvents {
			if res := apply(t, s, leadstate.Lead(lead), e.id, model(hl, 1000, 500, e.hits...)); res.Applied {
				t.Errorf("replayed %s applied to the lead again", e.id)
			}
		}
		if after := hash(t, s, leadstate.Lead(lead), "m"); after["v"] != before["v"] || after["t"] != before["t"] {
			t.Errorf("replays changed the lead: %v -> %v", before, after)
		}
	})
}
