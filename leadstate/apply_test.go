package leadstate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadapi"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// Points add up, and decay by event time: the stored (v, t) is the value as of
// the newest event time, whatever the arrival order.
func TestApplyPoints(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		f := func(name string, halfLife time.Duration, events [][]leadstate.Hit, wantV float64, wantT time.Time) {
			t.Helper()
			lead := leadstate.Lead(newID("lead"))
			for i, hits := range events {
				if res := apply(t, s, lead, fmt.Sprintf("e%d", i), model(halfLife, 1e9, 0, hits...)); !res.Applied {
					t.Fatalf("%s: event %d not applied", name, i)
				}
			}
			v, tm := vt(t, s, lead)
			if !near(v, wantV, 1e-12, 0) || tm != ms(wantT) {
				t.Errorf("%s: (v, t) = (%v, %v), want (%v, %v)", name, v, time.UnixMilli(tm).UTC(), wantV, wantT)
			}
		}
		f("one hit", hl, [][]leadstate.Hit{{hit("a", 5, t0)}}, 5, t0)
		f("two rules of one event", hl, [][]leadstate.Hit{{hit("a", 5, t0), hit("b", 15, t0)}}, 20, t0)
		f("events at one time", hl, [][]leadstate.Hit{{hit("a", 5, t0)}, {hit("a", 5, t0)}, {hit("b", 30, t0)}}, 40, t0)
		f("negative points", hl, [][]leadstate.Hit{{hit("a", 25, t0)}, {hit("careers", -20, t0)}}, 5, t0)
		f("below zero", 0, [][]leadstate.Hit{{hit("careers", -20, t0)}, {hit("a", 5, t0.Add(time.Hour))}}, -15, t0.Add(time.Hour))
		f("one half-life apart", hl, [][]leadstate.Hit{{hit("a", 10, t0)}, {hit("a", 10, t0.Add(hl))}}, 15, t0.Add(hl))
		f("one half-life apart, late arrival", hl, [][]leadstate.Hit{{hit("a", 10, t0.Add(hl))}, {hit("a", 10, t0)}}, 15, t0.Add(hl))
		f("two half-lives", hl, [][]leadstate.Hit{{hit("a", 10, t0)}, {hit("b", 10, t0.Add(hl))}, {hit("a", 10, t0.Add(2*hl))}}, 17.5, t0.Add(2*hl))
		f("short half-life", time.Hour, [][]leadstate.Hit{{hit("a", 64, t0)}, {hit("a", 1, t0.Add(3*time.Hour))}}, 9, t0.Add(3*time.Hour))
		f("half_life 0: no decay", 0, [][]leadstate.Hit{{hit("a", 10, t0)}, {hit("a", 10, t0.Add(100*day))}}, 20, t0.Add(100*day))
		f("same as scoring.DecayFactor", hl, [][]leadstate.Hit{{hit("a", 100, t0)}, {hit("a", 0.5, t0.Add(17*day+3*time.Hour))}},
			100*scoring.DecayFactor((17*day+3*time.Hour).Milliseconds(), hl)+0.5, t0.Add(17*day+3*time.Hour))
	})
}

// An event id is applied at most once per subject, also when the redelivered
// copy would score differently, and ids merged in through ExtraSeen count as applied.
func TestApplyDedup(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		f := func(subj leadstate.Subject) {
			t.Helper()
			if res := apply(t, s, subj, "e1", model(hl, 1e9, 0, hit("a", 10, t0))); !res.Applied {
				t.Fatalf("%v: first apply not applied", subj)
			}
			before := hash(t, s, subj, "m")
			for _, u := range []leadstate.ModelUpdate{
				model(hl, 1e9, 0, hit("a", 10, t0)),
				model(hl, 1e9, 0, hit("a", 99, t0.Add(day)), hit("b", 1, t0)),
			} {
				if res := apply(t, s, subj, "e1", u); res.Applied {
					t.Fatalf("%v: duplicate e1 applied", subj)
				}
			}
			if after := hash(t, s, subj, "m"); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("%v: duplicate changed the state: %v -> %v", subj, before, after)
			}
			res, err := leadstatetest.Apply(context.Background(), s, &leadstate.Update{Subject: subj, DedupID: "e2", TriggerEventID: "e2",
				ExtraSeen: []string{"x1", "x2"}, Models: []leadstate.ModelUpdate{model(hl, 1e9, 0, hit("a", 1, t0))}})
			if err != nil || !res.Applied {
				t.Fatalf("%v: e2 = %+v, %v", subj, res, err)
			}
			for _, id := range []string{"e2", "x1", "x2"} {
				if res := apply(t, s, subj, id, model(hl, 1e9, 0, hit("a", 1000, t0))); res.Applied {
					t.Errorf("%v: %s applied again", subj, id)
				}
			}
			if v, _ := vt(t, s, subj); v != 11 {
				t.Errorf("%v: v = %v, want 11", subj, v)
			}
		}
		f(leadstate.Lead(newID("lead")))
		f(leadstate.Anon(newID("anon")))
	})
}

// A capped rule scores at most count hits per fixed event-time window (aligned
// to the epoch), whatever the arrival order; the next window scores again.
func TestApplyCap(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		lead := leadstate.Lead(newID("lead"))
		dayStart := t0.Truncate(day) // epoch-aligned UTC day
		n := 0
		f := func(hits int, at time.Time, wantV float64) {
			t.Helper()
			var hs []leadstate.Hit
			for range hits {
				h := hit("email-open", 10, at)
				h.CapCount, h.CapWindow = 3, day
				hs = append(hs, h)
			}
			n++
			if res := apply(t, s, lead, fmt.Sprintf("e%d", n), model(0, 1e9, 0, hs...)); !res.Applied {
				t.Fatalf("event %d not applied", n)
			}
			if v, _ := vt(t, s, lead); v != wantV {
				t.Fatalf("after event %d (%d hits at %v): v = %v, want %v", n, hits, at, v, wantV)
			}
		}
		for i, want := range []float64{10, 20, 30, 30, 30} { // 5 hits in one window score 3
			f(1, dayStart.Add(time.Duration(i+1)*time.Hour), want)
		}
		f(1, dayStart.Add(day), 40)                // next window, first instant
		f(1, dayStart.Add(day+23*time.Hour), 50)   // second of that window
		f(1, dayStart.Add(-time.Millisecond), 60)  // the window before, last instant
		f(1, dayStart.Add(23*time.Hour), 60)       // late hit in the full window
		f(5, dayStart.Add(2*day), 90)              // 5 hits of one event: 3 score
		f(1, dayStart.Add(day+12*time.Hour), 100)  // third hit of day 2
		f(1, dayStart.Add(day+13*time.Hour), 100)  // fourth: capped
		f(1, dayStart.Add(2*day+time.Minute), 100) // day 3 full
		f(1, dayStart.Add(3*day-time.Millisecond), 100)
	})
}

// Fit points are set and replaced (never added), and left alone by updates without fit.
func TestApplyFit(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		lead := newID("lead")
		infos := []scoring.Model{{Name: "m", Threshold: 1e9}}
		n := 0
		f := func(fit *float64, reasons []event.Reason, hits []leadstate.Hit, wantFit, wantBehaviour float64, wantReasons string) {
			t.Helper()
			u := model(0, 1e9, 0, hits...)
			u.Fit, u.FitReasons = fit, reasons
			n++
			if res := apply(t, s, leadstate.Lead(lead), fmt.Sprintf("e%d", n), u); !res.Applied {
				t.Fatalf("event %d not applied", n)
			}
			v, err := leadapi.Read(context.Background(), s, lead, infos, t0.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			mv := v.Models["m"]
			if mv.Fit != wantFit || mv.Behaviour != wantBehaviour || mv.Score != wantFit+wantBehaviour {
				t.Errorf("event %d: fit %v behaviour %v score %v, want %v %v %v", n, mv.Fit, mv.Behaviour, mv.Score, wantFit, wantBehaviour, wantFit+wantBehaviour)
			}
			if got := hash(t, s, leadstate.Lead(lead), "m")["fitr"]; got != wantReasons {
				t.Errorf("event %d: stored fit reasons %s, want %s", n, got, wantReasons)
			}
		}
		fit := func(f float64) *float64 { return &f }
		both := []event.Reason{{Rule: "senior-title", Points: 20}, {Rule: "big-company", Points: 10}}
		f(fit(30), both, nil, 30, 0, `[{"rule":"senior-title","points":20},{"rule":"big-company","points":10}]`)
		f(nil, nil, []leadstate.Hit{hit("a", 5, t0)}, 30, 5, `[{"rule":"senior-title","points":20},{"rule":"big-company","points":10}]`)
		f(fit(10), both[1:], nil, 10, 5, `[{"rule":"big-company","points":10}]`)
		f(fit(10), both[1:], []leadstate.Hit{hit("a", 5, t0)}, 10, 10, `[{"rule":"big-company","points":10}]`)
		f(fit(0), nil, nil, 0, 10, `[]`)
	})
}

// wantReasons computes what an MQL's reasons must be: each rule's points folded
// with scoring.Add and decayed to at, then the fit reasons, largest first.
func wantReasons(hits []leadstate.Hit, halfLife time.Duration, at int64, fit []event.Reason) []event.Reason {
	type st struct {
		v float64
		t int64
	}
	rules := map[string]st{}
	for _, h := range hits {
		r := rules[h.Rule]
		r.v, r.t = scoring.Add(r.v, r.t, h.Points, h.TimeMs, halfLife)
		rules[h.Rule] = r
	}
	var out []event.Reason
	for name, r := range rules {
		out = append(out, event.Reason{Rule: name, Points: scoring.ValueAt(r.v, r.t, at, halfLife)})
	}
	out = append(out, fit...)
	event.SortReasons(out)
	return out
}

func sameReasons(got, want []event.Reason) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		// Reasons pass through Lua's cjson, which keeps 14 significant digits.
		if got[i].Rule != want[i].Rule || !near(got[i].Points, want[i].Points, 1e-12, 0) {
			return false
		}
	}
	return true
}

// Crossing the threshold writes exactly one MQL to the outbox, with a
// deterministic id, the score, the newest event time and the reasons; it stays
// there (and every Apply, duplicates included, returns it) until AckOutbox.
func TestApplyMQLOutbox(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		lead := newID("lead")
		subj := leadstate.Lead(lead)
		fitReasons := []event.Reason{{Rule: "senior-title", Points: 20}, {Rule: "big-company", Points: 10}}
		var all []leadstate.Hit
		f := func(id string, fit bool, hits []leadstate.Hit, wantApplied bool, wantOutbox ...string) []event.MQL {
			t.Helper()
			u := model(hl, 100, 50, hits...)
			if fit {
				f := 30.0
				u.Fit, u.FitReasons = &f, fitReasons
			}
			res := apply(t, s, subj, id, u)
			if res.Applied != wantApplied {
				t.Fatalf("%s: applied = %v, want %v", id, res.Applied, wantApplied)
			}
			if res.Applied {
				all = append(all, hits...)
			}
			var ids []string
			for _, m := range res.Outbox {
				ids = append(ids, m.MQLID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(wantOutbox) {
				t.Fatalf("%s: outbox %v, want %v", id, ids, wantOutbox)
			}
			if n := hlen(t, s, key(subj, "outbox")); n != int64(len(wantOutbox)) {
				t.Fatalf("%s: HLEN outbox = %d, want %d", id, n, len(wantOutbox))
			}
			return res.Outbox
		}
		at := func(d time.Duration) time.Time { return t0.Add(d) }
		mqlID := event.MQLID(lead, "m", "e4")
		if mqlID != event.MQLID(lead, "m", "e4") || mqlID == event.MQLID(lead, "m", "e5") ||
			mqlID == event.MQLID(lead, "n", "e4") || mqlID == event.MQLID(lead+"x", "m", "e4") {
			t.Fatal("MQLID is not a deterministic function of (lead, model, trigger)")
		}

		f("e1", false, []leadstate.Hit{hit("page-view", 5, at(0)), hit("pricing-page", 15, at(0))}, true)
		f("e2", true, nil, true) // identify: fit 30
		f("e3", false, []leadstate.Hit{hit("form-submit", 30, at(2*day))}, true)
		// 20·2^(-3/30) + 30·2^(-1/30) + 30 + fit 30 ≈ 108: crosses.
		out := f("e4", false, []leadstate.Hit{hit("email-click", 15, at(3*day)), hit("pricing-page", 15, at(3*day))}, true, mqlID)
		var v float64
		var tm int64
		for _, h := range all {
			v, tm = scoring.Add(v, tm, h.Points, h.TimeMs, hl)
		}
		m := out[0]
		want := event.MQL{MQLID: mqlID, LeadID: lead, Model: "m", Score: v + 30, Threshold: 100, CrossedAt: at(3 * day), TriggerEventID: "e4",
			Reasons: wantReasons(all, hl, tm, fitReasons)}
		if m.MQLID != want.MQLID || m.LeadID != want.LeadID || m.Model != want.Model || !near(m.Score, want.Score, 1e-12, 0) ||
			m.Threshold != want.Threshold || !m.CrossedAt.Equal(want.CrossedAt) || m.TriggerEventID != want.TriggerEventID ||
			!sameReasons(m.Reasons, want.Reasons) {
			t.Fatalf("MQL\n got %+v\nwant %+v", m, want)
		}
		if b, _ := json.Marshal(m); !json.Valid(b) {
			t.Fatalf("MQL does not encode: %s", b)
		}
		h := hash(t, s, subj, "m")
		if h["mql"] != "1" || h["mql_id"] != mqlID || h["mql_at"] != fmt.Sprint(ms(at(3*day))) {
			t.Errorf("model hash after crossing: mql=%q mql_id=%q mql_at=%q", h["mql"], h["mql_id"], h["mql_at"])
		}
		lv, err := leadapi.Read(ctx, s, lead, []scoring.Model{{Name: "m", HalfLife: hl, Threshold: 100}}, at(3*day))
		if err != nil {
			t.Fatal(err)
		}
		if mv := lv.Models["m"]; !mv.MQL || mv.MQLAt == nil || !mv.MQLAt.Equal(at(3*day)) || !near(mv.Score, want.Score, 1e-12, 0) {
			t.Errorf("lead view after crossing: %+v", mv)
		}

		// Still above: no second MQL; the pending one is returned until acknowledged.
		f("e5", false, []leadstate.Hit{hit("email-click", 15, at(4*day))}, true, mqlID)
		f("e6", true, nil, true, mqlID)
		// Crash recovery: the redelivered trigger finds the pending record.
		dup := f("e4", false, []leadstate.Hit{hit("email-click", 15, at(3*day))}, false, mqlID)
		if dup[0].MQLID != m.MQLID || dup[0].Score != m.Score || !dup[0].CrossedAt.Equal(m.CrossedAt) || !sameReasons(dup[0].Reasons, m.Reasons) {
			t.Fatalf("pending MQL changed: %+v, was %+v", dup[0], m)
		}
		leadstatetest.AckOutbox(t, s, lead)
		leadstatetest.AckOutbox(t, s, lead, "not-pending")
		f("e7", false, nil, true, mqlID) // an update that changes nothing
		leadstatetest.AckOutbox(t, s, lead, mqlID)
		f("e4", false, nil, false)
		f("e8", false, []leadstate.Hit{hit("form-submit", 30, at(6*day))}, true)
		if h := hash(t, s, subj, "m"); h["mql"] != "1" || h["mql_id"] != mqlID {
			t.Errorf("model hash after ack: mql=%q mql_id=%q", h["mql"], h["mql_id"])
		}
	})
}

// Models of one update cross independently, each with its own mql_id.
func TestApplyMQLModels(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		lead := newID("lead")
		mu := func(name string, thr float64, pts float64) leadstate.ModelUpdate {
			return leadstate.ModelUpdate{Name: name, HalfLife: hl, Threshold: thr, RearmBelow: thr / 2, Hits: []leadstate.Hit{hit("r", pts, t0)}}
		}
		f := func(id string, want ...string) {
			t.Helper()
			res := apply(t, s, leadstate.Lead(lead), id, mu("a", 10, 10), mu("b", 100, 60))
			got := map[string]string{}
			for _, m := range res.Outbox {
				got[m.MQLID] = m.Model
			}
			if len(got) != len(want) {
				t.Fatalf("%s: outbox %v, want models %v", id, got, want)
			}
			for _, w := range want {
				if got[event.MQLID(lead, w, id)] != w {
					t.Fatalf("%s: outbox %v, want an MQL of model %s triggered by %s", id, got, w, id)
				}
			}
		}
		f("e1", "a")
		leadstatetest.AckOutbox(t, s, lead, event.MQLID(lead, "a", "e1"))
		f("e2", "b")
	})
}

// After an MQL the lead fires again only once its score fell strictly below
// rearm_below and then reached the threshold again; each crossing has its own id.
func TestApplyRearm(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		lead := newID("lead")
		infos := []scoring.Model{{Name: "m", Threshold: 100}}
		n := 0
		var pending []string
		f := func(points, wantScore float64, wantMQL, fires bool) {
			t.Helper()
			n++
			id := fmt.Sprintf("e%d", n)
			res := apply(t, s, leadstate.Lead(lead), id, model(0, 100, 50, hit("r", points, t0.Add(time.Duration(n)*time.Minute))))
			if fires {
				pending = append(pending, event.MQLID(lead, "m", id))
			}
			got := map[string]bool{}
			for _, m := range res.Outbox {
				got[m.MQLID] = true
			}
			if len(got) != len(pending) {
				t.Fatalf("%s (%+v): outbox %v, want %v", id, points, got, pending)
			}
			for _, p := range pending {
				if !got[p] {
					t.Fatalf("%s (%+v): outbox %v, want %v", id, points, got, pending)
				}
			}
			v, err := leadapi.Read(ctx, s, lead, infos, t0)
			if err != nil {
				t.Fatal(err)
			}
			if mv := v.Models["m"]; mv.Score != wantScore || mv.MQL != wantMQL {
				t.Fatalf("%s (%+v): score %v mql %v, want %v %v", id, points, mv.Score, mv.MQL, wantScore, wantMQL)
			}
		}
		ack := func() {
			t.Helper()
			leadstatetest.AckOutbox(t, s, lead, pending...)
			pending = nil
		}
		f(60, 60, false, false)
		f(50, 110, true, true)
		ack()
		f(-30, 80, true, false)  // still at or above rearm_below
		f(30, 110, true, false)  // above threshold, but not re-armed
		f(-60, 50, true, false)  // equal to rearm_below: not re-armed
		f(-10, 40, false, false) // below: re-armed
		f(20, 60, false, false)
		f(40, 100, true, true) // score == threshold fires
		f(-80, 20, false, false)
		f(80, 100, true, true) // a third crossing while the second is still pending
		if pending[0] == pending[1] {
			t.Fatal("two crossings share an mql_id")
		}
		ack()
		if n := hlen(t, s, key(leadstate.Lead(lead), "outbox")); n != 0 {
			t.Fatalf("HLEN outbox = %d after ack", n)
		}
	})
}

// Anonymous visitors score but never become MQLs (an MQL needs a lead id).
func TestApplyAnonymousNoMQL(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		anon := leadstate.Anon(newID("anon"))
		for i := range 3 {
			res := apply(t, s, anon, fmt.Sprintf("e%d", i), model(hl, 100, 50, hit("r", 200, t0)))
			if !res.Applied || len(res.Outbox) != 0 {
				t.Fatalf("event %d: %+v, want applied with an empty outbox", i, res)
			}
		}
		h := hash(t, s, anon, "m")
		if h["v"] != "600" || h["mql"] != "" || h["mql_id"] != "" {
			t.Errorf("anonymous model hash: %v", h)
		}
		if n := hlen(t, s, key(anon, "outbox")); n != 0 {
			t.Errorf("anonymous outbox has %d entries", n)
		}
		// The lead with the same id is a different subject.
		if lv, err := leadapi.Read(context.Background(), s, anon.ID, []scoring.Model{{Name: "m", HalfLife: hl, Threshold: 100}}, t0); err != nil || lv.Known {
			t.Errorf("Lead(%s) = %+v, %v: want unknown", anon.ID, lv, err)
		}
	})
}

// A fit change (an identify) counts from its event time: the behaviour is
// decayed to that time before the threshold check, so a lead whose activity
// faded long ago does not become an MQL by identifying, and crossed_at is the
// identify's time when it is the newest event.
func TestApplyFitTime(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		fitReasons := []event.Reason{{Rule: "senior-title", Points: 20}, {Rule: "big-company", Points: 10}}
		f := func(name string, behaviour float64, fit float64, fitAt time.Time, wantT time.Time, wantV float64, wantMQL bool) {
			t.Helper()
			lead := newID("lead")
			if behaviour != 0 {
				apply(t, s, leadstate.Lead(lead), "e1", model(hl, 100, 50, hit("form-submit", behaviour, t0)))
			}
			u := model(hl, 100, 50)
			u.Fit, u.FitReasons = &fit, fitReasons
			if !fitAt.IsZero() {
				u.FitTimeMs = ms(fitAt)
			}
			res := apply(t, s, leadstate.Lead(lead), "id1", u)
			v, tm := vt(t, s, leadstate.Lead(lead))
			if !near(v, wantV, 1e-12, 0) || tm != ms(wantT) {
				t.Errorf("%s: (v, t) = (%v, %v), want (%v, %v)", name, v, time.UnixMilli(tm).UTC(), wantV, wantT)
			}
			if (len(res.Outbox) == 1) != wantMQL || len(res.Outbox) > 1 {
				t.Fatalf("%s: outbox %+v, want an MQL: %v", name, res.Outbox, wantMQL)
			}
			if wantMQL {
				m := res.Outbox[0]
				if !m.CrossedAt.Equal(wantT) || !near(m.Score, wantV+fit, 1e-12, 0) || m.TriggerEventID != "id1" ||
					!sameReasons(m.Reasons, wantReasons([]leadstate.Hit{hit("form-submit", behaviour, t0)}, hl, tm, fitReasons)[:len(m.Reasons)]) {
					t.Errorf("%s: MQL %+v, want crossed at %v with score %v", name, m, wantT, wantV+fit)
				}
			}
			lv, err := leadapi.Read(ctx, s, lead, []scoring.Model{{Name: "m", HalfLife: hl, Threshold: 100}}, wantT)
			if err != nil {
				t.Fatal(err)
			}
			if mv := lv.Models["m"]; mv.MQL != wantMQL || !near(mv.Score, wantV+fit, 1e-12, 0) {
				t.Errorf("%s: lead view at %v: %+v, want score %v, MQL %v", name, wantT, mv, wantV+fit, wantMQL)
			}
		}
		// 80 behaviour points, then an identify two half-lives later: 20 + 30 < 100.
		f("identify long after the activity", 80, 30, t0.Add(2*hl), t0.Add(2*hl), 20, false)
		f("identify soon after the activity", 80, 30, t0.Add(time.Hour), t0.Add(time.Hour), 80*scoring.DecayFactor(time.Hour.Milliseconds(), hl), true)
		f("identify before the activity (late arrival)", 80, 30, t0.Add(-day), t0, 80, true)
		f("fit alone crosses at the identify's time", 0, 150, t0, t0, 0, true)
		f("fit without a time: at the reference time", 80, 30, time.Time{}, t0, 80, true)
	})
}
