package leadapi

import (
	"context"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
)

// ModelView is a lead's state in one model, as of the read time.
type ModelView struct {
	Score     float64        `json:"score"`     // behaviour + fit
	Behaviour float64        `json:"behaviour"` // decayed to the read time
	Fit       float64        `json:"fit"`
	Threshold float64        `json:"threshold"`
	MQL       bool           `json:"mql"`
	MQLAt     *time.Time     `json:"mql_at,omitempty"`
	LastEvent *time.Time     `json:"last_event_at,omitempty"` // newest event time that scored
	TopRules  []event.Reason `json:"top_rules"`               // behaviour per rule, decayed, then fit rules
}

// LeadView is the lead API's answer.
type LeadView struct {
	LeadID       string               `json:"lead_id"`
	Known        bool                 `json:"known"` // any state at all
	AsOf         time.Time            `json:"as_of"`
	LastActivity *time.Time           `json:"last_activity,omitempty"`
	Models       map[string]ModelView `json:"models"`
}

// Read reads a lead's state in the given models and views it as of now.
func Read(ctx context.Context, store *leadstate.Store, lead string, models []scoring.Model, now time.Time) (*LeadView, error) {
	names := make([]string, len(models))
	for i, m := range models {
		names[i] = m.Name
	}
	states, err := store.ReadLead(ctx, lead, names)
	if err != nil {
		return nil, err
	}
	return View(lead, states, models, now), nil
}

// View is a lead's stored states (per model name) seen at now: behaviour
// decayed to now, fit added, each rule's points decayed alike.
func View(lead string, states map[string]*scoring.ModelState, models []scoring.Model, now time.Time) *LeadView {
	nowMs := now.UnixMilli()
	v := &LeadView{LeadID: lead, AsOf: now.UTC(), Known: len(states) > 0, Models: make(map[string]ModelView, len(models))}
	for _, m := range models {
		mv := ModelView{Threshold: m.Threshold, TopRules: []event.Reason{}}
		if st := states[m.Name]; st != nil {
			mv.Behaviour = scoring.ValueAt(st.V, st.T, nowMs, m.HalfLife)
			mv.Fit = st.Fit
			mv.MQL = st.MQL
			if st.MQL {
				at := time.UnixMilli(st.MQLAt).UTC()
				mv.MQLAt = &at
			}
			if st.T > 0 {
				tm := time.UnixMilli(st.T).UTC()
				mv.LastEvent = &tm
				if v.LastActivity == nil || tm.After(*v.LastActivity) {
					v.LastActivity = &tm
				}
			}
			// Rules decay to the same time as the behaviour value, which is never
			// un-decayed to before t, so their points add up to Behaviour.
			at := max(nowMs, st.T)
			for rule, rv := range st.Rules {
				if pts := rv.V * scoring.DecayFactor(at-rv.T, m.HalfLife); pts != 0 {
					mv.TopRules = append(mv.TopRules, event.Reason{Rule: rule, Points: pts})
				}
			}
			event.SortReasons(mv.TopRules)
			mv.TopRules = append(mv.TopRules, st.FitReasons...)
		}
		mv.Score = mv.Behaviour + mv.Fit
		v.Models[m.Name] = mv
	}
	return v
}
