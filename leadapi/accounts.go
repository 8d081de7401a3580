package leadapi

import (
	"context"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/httpapi"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
)

// AccountPrefix is the path the account API serves under: AccountPrefix +
// URL-escaped account id (Segment groupId, or an e-mail domain).
const AccountPrefix = "/v1/accounts/"

// AccountModelView is an account's state in one model, as of the read time.
type AccountModelView struct {
	Score          float64        `json:"score"`      // engagement + fit
	Engagement     float64        `json:"engagement"` // members' behaviour, each capped at member_cap, decayed to the read time
	Fit            float64        `json:"fit"`
	Threshold      float64        `json:"threshold"`
	EngagedMembers int            `json:"engaged_members"` // members whose behaviour is at least engaged_at
	MQA            bool           `json:"mqa"`
	MQAAt          *time.Time     `json:"mqa_at,omitempty"`
	LastEvent      *time.Time     `json:"last_event_at,omitempty"` // newest member event time that counted
	Reasons        []event.Reason `json:"reasons"`                 // fit rules, then "engagement"
	RulesHash      string         `json:"rules_hash,omitempty"`
}

// MemberView is one member of an account and its part in each model.
type MemberView struct {
	LeadID string `json:"lead_id"`
	// Scores are per model: the member's behaviour decayed to the read
	// time, and what it adds to the account's engagement (capped).
	Scores map[string]MemberScore `json:"scores"`
}

// MemberScore is a member's behaviour and contribution in one model.
type MemberScore struct {
	Behaviour    float64 `json:"behaviour"`
	Contribution float64 `json:"contribution"`
}

// AccountView is the account API's answer.
type AccountView struct {
	AccountID string                      `json:"account_id"`
	Known     bool                        `json:"known"`
	AsOf      time.Time                   `json:"as_of"`
	Traits    map[string]any              `json:"traits"`
	Models    map[string]AccountModelView `json:"models"`
	Members   []MemberView                `json:"members"` // largest contribution in the first model first
}

// ReadAccount reads an account's state and views it as of now.
func ReadAccount(ctx context.Context, store *leadstate.Store, id string, models []scoring.Model, now time.Time) (*AccountView, error) {
	st, err := store.ReadAccount(ctx, id)
	if err != nil {
		return nil, err
	}
	return ViewAccount(id, st, models, now), nil
}

// ViewAccount is an account's stored state seen at now: every member's
// behaviour decayed to now, capped, summed.
func ViewAccount(id string, st *scoring.State, models []scoring.Model, now time.Time) *AccountView {
	nowMs := now.UnixMilli()
	v := &AccountView{AccountID: id, AsOf: now.UTC().Truncate(time.Millisecond), Known: st != nil, Traits: map[string]any{},
		Models: map[string]AccountModelView{}, Members: []MemberView{}}
	if st == nil {
		return v
	}
	v.Traits = scoring.AccountTraits(st)
	byLead := map[string]*MemberView{}
	entries := map[string]*scoring.AccountEntry{}
	for i, e := range st.Members {
		entries[e.Lead] = &st.Members[i]
		if !e.Left {
			v.Members = append(v.Members, MemberView{LeadID: e.Lead, Scores: map[string]MemberScore{}})
		}
	}
	for i := range v.Members {
		byLead[v.Members[i].LeadID] = &v.Members[i]
	}
	first := ""
	for i := range models {
		m := &models[i]
		if m.Accounts == nil {
			continue
		}
		if first == "" {
			first = m.Name
		}
		mv := AccountModelView{Threshold: m.Accounts.Threshold, Reasons: []event.Reason{}}
		if ms := st.Model(m.Name); ms != nil {
			at := max(nowMs, ms.T)
			sum, engaged, members := scoring.Engagement(st, m, at)
			mv.Engagement, mv.EngagedMembers, mv.Fit = sum, engaged, ms.Fit
			mv.MQA, mv.RulesHash = ms.MQL, ms.RulesHash
			if ms.MQL {
				t := time.UnixMilli(ms.MQLAt).UTC()
				mv.MQAAt = &t
			}
			if ms.T > 0 {
				t := time.UnixMilli(ms.T).UTC()
				mv.LastEvent = &t
			}
			mv.Reasons = append(mv.Reasons, ms.FitReasons...)
			if sum != 0 {
				mv.Reasons = append(mv.Reasons, event.Reason{Rule: "engagement", Points: sum})
			}
			event.SortReasons(mv.Reasons)
			for _, x := range members {
				if mvw := byLead[x.LeadID]; mvw != nil {
					var behaviour float64
					for _, val := range entries[x.LeadID].Values {
						if val.Model == m.Name {
							behaviour = scoring.ValueAt(val.V, val.T, at, m.HalfLife)
						}
					}
					mvw.Scores[m.Name] = MemberScore{Behaviour: behaviour, Contribution: x.Points}
				}
			}
		}
		mv.Score = mv.Engagement + mv.Fit
		v.Models[m.Name] = mv
	}
	if first != "" {
		key := func(m MemberView) float64 { return m.Scores[first].Contribution }
		sortMembers(v.Members, key)
	}
	return v
}

func sortMembers(ms []MemberView, key func(MemberView) float64) {
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && (key(ms[j]) > key(ms[j-1]) || (key(ms[j]) == key(ms[j-1]) && ms[j].LeadID < ms[j-1].LeadID)); j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
}

// ServeAccount answers one request under AccountPrefix.
func (a *API) ServeAccount(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() {
		ctx.Response.Header.Set("Allow", "GET")
		httpapi.Error(ctx, fasthttp.StatusMethodNotAllowed, "use GET")
		return
	}
	if !a.authorized(ctx, "account") {
		return
	}
	id, ok := pathID(ctx, AccountPrefix, "account_id")
	if !ok {
		return
	}
	if a.store == nil {
		httpapi.Error(ctx, fasthttp.StatusServiceUnavailable, "account API not configured: no redis address")
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	now := time.Now()
	view, err := bounded(rctx, func(ctx context.Context) (*AccountView, error) { return ReadAccount(ctx, a.store, id, a.models, now) })
	if err != nil {
		a.readFailed(ctx, "account", err)
		return
	}
	if !view.Known {
		httpapi.Error(ctx, fasthttp.StatusNotFound, "no state for this account_id")
		return
	}
	writeView(ctx, view, "account")
}
