package leadstate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/scoring"
	"github.com/redis/go-redis/v9"
)

// ModelInfo is what a reader needs to know of a model.
type ModelInfo struct {
	Name      string
	HalfLife  time.Duration
	Threshold float64
}

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

// Lead reads a lead's scores in the given models, decayed to now.
func (s *Store) Lead(ctx context.Context, lead string, models []ModelInfo, now time.Time) (*LeadView, error) {
	subj := Lead(lead)
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(models))
	for i, m := range models {
		cmds[i] = pipe.HGetAll(ctx, subj.key("m:"+m.Name))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading lead state: %w", err)
	}
	nowMs := now.UnixMilli()
	v := &LeadView{LeadID: lead, AsOf: now.UTC(), Models: make(map[string]ModelView, len(models))}
	for i, m := range models {
		h := cmds[i].Val()
		mv := ModelView{Threshold: m.Threshold, TopRules: []event.Reason{}}
		if len(h) > 0 {
			v.Known = true
			t := int64(parseF(h["t"]))
			mv.Behaviour = scoring.ValueAt(parseF(h["v"]), t, nowMs, m.HalfLife)
			mv.Fit = parseF(h["fit"])
			mv.MQL = h["mql"] == "1"
			if at, ok := h["mql_at"]; ok && mv.MQL {
				tm := time.UnixMilli(int64(parseF(at))).UTC()
				mv.MQLAt = &tm
			}
			if t > 0 {
				tm := time.UnixMilli(t).UTC()
				mv.LastEvent = &tm
				if v.LastActivity == nil || tm.After(*v.LastActivity) {
					v.LastActivity = &tm
				}
			}
			// Rules decay to the same time as the behaviour value, which is never
			// un-decayed to before t, so their points add up to Behaviour.
			at := max(nowMs, t)
			for f, val := range h {
				if rule, ok := strings.CutPrefix(f, "r:"); ok {
					pts := parseF(val) * scoring.DecayFactor(at-int64(parseF(h["rt:"+rule])), m.HalfLife)
					if pts != 0 {
						mv.TopRules = append(mv.TopRules, event.Reason{Rule: rule, Points: pts})
					}
				}
			}
			event.SortReasons(mv.TopRules)
			if fr := h["fitr"]; fr != "" {
				var fit []event.Reason
				if err := json.Unmarshal([]byte(fr), &fit); err == nil {
					mv.TopRules = append(mv.TopRules, fit...)
				}
			}
		}
		mv.Score = mv.Behaviour + mv.Fit
		v.Models[m.Name] = mv
	}
	return v, nil
}

// AnonymousHistory returns, per model, the decayed per-rule values of an
// anonymous visitor as hits to fold into a lead, and the event ids it applied.
func (s *Store) AnonymousHistory(ctx context.Context, anon string, models []string) (map[string][]Hit, []string, error) {
	h, err := s.AnonymousHistories(ctx, []string{anon}, models)
	if err != nil {
		return nil, nil, err
	}
	return h[0].Hits, h[0].Seen, nil
}

// DropAnonymous deletes an anonymous visitor's state once it was merged into a lead.
// The link key stays. All keys share one hash tag, so one DEL is cluster-safe.
func (s *Store) DropAnonymous(ctx context.Context, anon string, models []string) error {
	if err := s.rdb.Del(ctx, anonStateKeys(anon, models)...).Err(); err != nil {
		return fmt.Errorf("dropping merged anonymous state: %w", err)
	}
	return nil
}

// anonStateKeys are a visitor's keys that a merge moves to the lead (all but the link).
func anonStateKeys(anon string, models []string) []string {
	subj := Anon(anon)
	keys := []string{subj.key("seen"), subj.key("outbox"), subj.key("profile")}
	for _, m := range models {
		keys = append(keys, subj.key("m:"+m))
	}
	return keys
}

func parseF(s string) float64 {
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

func mqlID(lead, model, trigger string) string {
	h := sha256.Sum256([]byte(lead + "\x00" + model + "\x00" + trigger))
	b := h[:16]
	b[6] = (b[6] & 0x0f) | 0x50 // name-based UUID layout, so it reads as a UUID
	b[8] = (b[8] & 0x3f) | 0x80
	x := hex.EncodeToString(b)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}
