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
	RulesHash string         `json:"rules_hash,omitempty"`    // the model's rules the state was scored with (scoring.Model.Hash)
}

// LeadView is the lead API's answer.
type LeadView struct {
	LeadID       string     `json:"lead_id"`
	Known        bool       `json:"known"` // any state at all
	AsOf         time.Time  `json:"as_of"`
	LastActivity *time.Time `json:"last_activity,omitempty"`
	// MergedInto names the lead this one was merged into by an alias:
	// Models are then the survivor's, where its history now scores.
	MergedInto string `json:"merged_into,omitempty"`
	// Account is the account the lead is a member of (GET /v1/accounts/{id}).
	Account string               `json:"account,omitempty"`
	Models  map[string]ModelView `json:"models"`
}

// Read reads a lead's state in the given models and views it as of now.
func Read(ctx context.Context, store *leadstate.Store, lead string, models []scoring.Model, now time.Time) (*LeadView, error) {
	rec, err := store.ReadLead(ctx, lead)
	if err != nil {
		return nil, err
	}
	return View(lead, rec, models, now), nil
}

// View is a lead's stored state seen at now: behaviour decayed to now, fit
// added, each rule's points decayed alike. A lead merged into another shows
// the survivor's scores, with the history of merges stored half-way folded
// in as the scoring core will (survivor).
func View(lead string, rec leadstate.LeadRecord, models []scoring.Model, now time.Time) *LeadView {
	nowMs := now.UnixMilli()
	v := &LeadView{LeadID: lead, AsOf: now.UTC().Truncate(time.Millisecond), Known: rec.State != nil, Models: make(map[string]ModelView, len(models))}
	v.MergedInto = rec.Into
	surv := survivor(rec, models)
	v.Account = scoring.AccountOf(surv)
	for _, m := range models {
		mv := ModelView{Threshold: m.Threshold, TopRules: []event.Reason{}}
		var st *scoring.ModelState
		if surv != nil {
			st = surv.Model(m.Name)
		}
		if st != nil {
			mv.Behaviour = scoring.ValueAt(st.V, st.T, nowMs, m.HalfLife)
			mv.Fit = st.Fit
			mv.MQL = st.MQL
			mv.RulesHash = st.RulesHash
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
			// Rules decay to the same time as the behaviour value, which is
			// never un-decayed to before T, so their points add up to Behaviour.
			mv.TopRules = st.ReasonsAt(nowMs, m.HalfLife)
		}
		mv.Score = mv.Behaviour + mv.Fit
		v.Models[m.Name] = mv
	}
	return v
}

// survivor is the state whose scores are the lead's: rec.Survivor, with the
// frozen states of merges half done on the lead's way to it folded in by the
// scoring core's Merge, as the next event through them completes them (the
// processor between two writes of a merge, or killed there). nil: none.
func survivor(rec leadstate.LeadRecord, models []scoring.Model) *scoring.State {
	if len(rec.Pending) == 0 {
		return rec.Survivor
	}
	surv := rec.Survivor.Clone()
	if surv == nil {
		surv = &scoring.State{Subject: scoring.Lead(rec.Into)}
	}
	core := scoring.NewCore(&scoring.Rules{Models: models}, 0)
	for _, p := range rec.Pending {
		// The crossing a fold may cause is attributed to the merge mark,
		// never an event's id: as the event completing it would, it sets
		// the flag (mql_at the merged time).
		core.Merge(surv, p.Clone(), p.MergeMark, p.MergeTime)
	}
	return surv
}
