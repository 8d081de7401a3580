package leadstate

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/leadstream/leadstream/scoring"
	"github.com/redis/go-redis/v9"
)

// ReadLead returns a lead's stored state per model name, for the models
// named; a model in which the lead has no state is absent, so an empty map
// means leadstream knows nothing of the lead. Rule values are as stored (at
// their own reference times); MQLID is left empty.
func (s *Store) ReadLead(ctx context.Context, lead string, models []string) (map[string]*scoring.ModelState, error) {
	subj := Lead(lead)
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(models))
	for i, m := range models {
		cmds[i] = pipe.HGetAll(ctx, subj.key("m:"+m))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading lead state: %w", err)
	}
	out := make(map[string]*scoring.ModelState, len(models))
	for i, m := range models {
		if h := cmds[i].Val(); len(h) > 0 {
			out[m] = modelState(h)
		}
	}
	return out, nil
}

// modelState decodes one model hash (see the package comment for its fields).
func modelState(h map[string]string) *scoring.ModelState {
	ms := &scoring.ModelState{V: parseF(h["v"]), T: int64(parseF(h["t"])), Fit: parseF(h["fit"]),
		MQL: h["mql"] == "1", Rules: map[string]scoring.RuleValue{}, Caps: map[string]int{}}
	if ms.MQL {
		ms.MQLAt = int64(parseF(h["mql_at"]))
	}
	if fr := h["fitr"]; fr != "" {
		// A fit list that does not decode shows no fit reasons rather than
		// failing the read; the script always writes it with cjson.
		_ = json.Unmarshal([]byte(fr), &ms.FitReasons)
	}
	for f, val := range h {
		if rule, ok := strings.CutPrefix(f, "r:"); ok {
			ms.Rules[rule] = scoring.RuleValue{V: parseF(val), T: int64(parseF(h["rt:"+rule]))}
		} else if c, ok := strings.CutPrefix(f, "c:"); ok {
			ms.Caps[c] = int(parseF(val))
		}
	}
	return ms
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
