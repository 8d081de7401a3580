package leadstate_test

import (
	"context"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadapi"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// Lead decays behaviour to the read time, adds fit (which never decays) and
// lists each rule's decayed points, largest first, then the fit reasons.
func TestLeadView(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		lead := newID("lead")
		infos := []scoring.Model{{Name: "m", HalfLife: hl, Threshold: 100}, {Name: "other", HalfLife: hl, Threshold: 50}}
		fit := 30.0
		fitReasons := []event.Reason{{Rule: "senior-title", Points: 20}, {Rule: "big-company", Points: 10}}
		identify := model(hl, 100, 50)
		identify.Fit, identify.FitReasons = &fit, fitReasons
		apply(t, s, leadstate.Lead(lead), "e1", model(hl, 100, 50, hit("page-view", 5, t0), hit("pricing-page", 15, t0)))
		apply(t, s, leadstate.Lead(lead), "e2", identify)
		apply(t, s, leadstate.Lead(lead), "e3", model(hl, 100, 50, hit("form-submit", 30, t0.Add(hl)), hit("careers-page", -4, t0.Add(hl))))
		apply(t, s, leadstate.Lead(lead), "e4", model(hl, 100, 50, hit("page-view", 5, t0.Add(-hl)))) // late

		f := func(now time.Time, wantBehaviour float64, wantRules []event.Reason) {
			t.Helper()
			v, err := leadapi.Read(ctx, s, lead, infos, now)
			if err != nil {
				t.Fatal(err)
			}
			mv := v.Models["m"]
			if !v.Known || v.LeadID != lead || !v.AsOf.Equal(now) || v.LastActivity == nil || !v.LastActivity.Equal(t0.Add(hl)) {
				t.Errorf("at %v: lead view %+v", now, v)
			}
			if !near(mv.Behaviour, wantBehaviour, 1e-12, 0) || mv.Fit != 30 || !near(mv.Score, wantBehaviour+30, 1e-12, 0) ||
				mv.Threshold != 100 || mv.MQL || mv.MQLAt != nil || mv.LastEvent == nil || !mv.LastEvent.Equal(t0.Add(hl)) {
				t.Errorf("at %v: model view %+v, want behaviour %v fit 30", now, mv, wantBehaviour)
			}
			if len(mv.TopRules) != len(wantRules) {
				t.Fatalf("at %v: top rules %v, want %v", now, mv.TopRules, wantRules)
			}
			for i := range wantRules {
				if mv.TopRules[i].Rule != wantRules[i].Rule || !near(mv.TopRules[i].Points, wantRules[i].Points, 1e-12, 0) {
					t.Fatalf("at %v: top rules %v, want %v", now, mv.TopRules, wantRules)
				}
			}
			// The rules' points add up to the behaviour value at any read time.
			sum := 0.0
			for _, r := range mv.TopRules[:len(mv.TopRules)-len(fitReasons)] {
				sum += r.Points
			}
			if !near(sum, mv.Behaviour, 1e-12, 0) {
				t.Errorf("at %v: behaviour rules add up to %v, behaviour is %v", now, sum, mv.Behaviour)
			}
			if o := v.Models["other"]; o.Score != 0 || o.Threshold != 50 || o.TopRules == nil || len(o.TopRules) != 0 || o.LastEvent != nil {
				t.Errorf("at %v: model without state: %+v", now, o)
			}
		}
		// At t0+hl: page-view 5/2 + 5/4, pricing 15/2, form 30, careers -4.
		f(t0.Add(hl), 2.5+1.25+7.5+30-4, []event.Reason{
			{Rule: "form-submit", Points: 30}, {Rule: "pricing-page", Points: 7.5}, {Rule: "page-view", Points: 3.75},
			{Rule: "careers-page", Points: -4}, {Rule: "senior-title", Points: 20}, {Rule: "big-company", Points: 10},
		})
		// Two half-lives later everything is a quarter; fit stays.
		f(t0.Add(3*hl), (2.5+1.25+7.5+30-4)/4, []event.Reason{
			{Rule: "form-submit", Points: 7.5}, {Rule: "pricing-page", Points: 7.5 / 4}, {Rule: "page-view", Points: 3.75 / 4},
			{Rule: "careers-page", Points: -1}, {Rule: "senior-title", Points: 20}, {Rule: "big-company", Points: 10},
		})
		// Reading before the newest event never un-decays it.
		f(t0, 2.5+1.25+7.5+30-4, []event.Reason{
			{Rule: "form-submit", Points: 30}, {Rule: "pricing-page", Points: 7.5}, {Rule: "page-view", Points: 3.75},
			{Rule: "careers-page", Points: -4}, {Rule: "senior-title", Points: 20}, {Rule: "big-company", Points: 10},
		})

		// An MQL shows in the view with its time.
		apply(t, s, leadstate.Lead(lead), "e5", model(hl, 100, 50, hit("deal-won", 80, t0.Add(2*hl))))
		v, err := leadapi.Read(ctx, s, lead, infos, t0.Add(2*hl))
		if err != nil {
			t.Fatal(err)
		}
		if mv := v.Models["m"]; !mv.MQL || mv.MQLAt == nil || !mv.MQLAt.Equal(t0.Add(2*hl)) || mv.TopRules[0].Rule != "deal-won" ||
			!near(mv.Score, (2.5+1.25+7.5+30-4)/2+80+30, 1e-12, 0) {
			t.Errorf("lead view after the MQL: %+v", mv)
		}
	})
}

// Leads without state read as unknown, zero in every model.
func TestLeadViewUnknown(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		f := func(lead string, infos []scoring.Model) {
			t.Helper()
			now := t0.Add(time.Hour)
			v, err := leadapi.Read(context.Background(), s, lead, infos, now)
			if err != nil {
				t.Fatal(err)
			}
			if v.Known || v.LeadID != lead || !v.AsOf.Equal(now) || v.LastActivity != nil || len(v.Models) != len(infos) {
				t.Fatalf("Lead(%q) = %+v", lead, v)
			}
			for _, m := range infos {
				mv, ok := v.Models[m.Name]
				if !ok || mv.Score != 0 || mv.Behaviour != 0 || mv.Fit != 0 || mv.MQL || mv.Threshold != m.Threshold || mv.TopRules == nil || len(mv.TopRules) != 0 {
					t.Fatalf("Lead(%q).Models[%s] = %+v", lead, m.Name, mv)
				}
			}
		}
		f(newID("lead"), []scoring.Model{{Name: "m", HalfLife: hl, Threshold: 100}})
		f(newID("lead"), []scoring.Model{{Name: "a", Threshold: 1}, {Name: "b", HalfLife: time.Hour, Threshold: 2}})
		f(newID("lead"), nil)
		// State of an anonymous visitor or of another model does not make a lead known.
		id := newID("lead")
		apply(t, s, leadstate.Anon(id), "e1", model(hl, 100, 50, hit("r", 5, t0)))
		apply(t, s, leadstate.Lead(id), "e1", leadstate.ModelUpdate{Name: "n", HalfLife: hl, Threshold: 100, Hits: []leadstate.Hit{hit("r", 5, t0)}})
		f(id, []scoring.Model{{Name: "m", HalfLife: hl, Threshold: 100}})
		if v, err := leadapi.Read(context.Background(), s, id, []scoring.Model{{Name: "n", HalfLife: hl, Threshold: 100}}, t0); err != nil || !v.Known {
			t.Fatalf("Lead(%s) in model n = %+v, %v: want known", id, v, err)
		}
	})
}
