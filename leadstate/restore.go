package leadstate

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/scoring"
	"github.com/redis/go-redis/v9"
)

// Restore replaces a subject's model state with a replayed one (rescore
// --apply) and marks its replayed event ids as applied, so events the
// processor has not reached yet are not counted again. One MULTI/EXEC on the
// subject's hash slot: readers see the old state or the new one.
func (s *Store) Restore(ctx context.Context, st *scoring.SubjectState, models []scoring.Model) error {
	subj := Subject{ID: st.ID, Anonymous: st.Anonymous}
	_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, m := range models {
			key := subj.key("m:" + m.Name)
			pipe.Del(ctx, key)
			ms := st.Models[m.Name]
			if ms == nil {
				continue
			}
			fields := []any{"v", num(ms.V), "t", strconv.FormatInt(ms.T, 10), "mql", boolFlag(ms.MQL)}
			if ms.Fit != 0 || len(ms.FitReasons) > 0 {
				b, err := json.Marshal(ms.FitReasons)
				if err != nil {
					return err
				}
				fields = append(fields, "fit", num(ms.Fit), "fitr", string(b))
			}
			if ms.MQLID != "" {
				lead := ""
				if !st.Anonymous {
					lead = st.ID
				}
				fields = append(fields, "mql_at", strconv.FormatInt(ms.MQLAt, 10), "mql_id", event.MQLID(lead, m.Name, ms.MQLID))
			}
			for rule, rv := range ms.Rules {
				fields = append(fields, "r:"+rule, num(rv.V), "rt:"+rule, strconv.FormatInt(rv.T, 10))
			}
			for c, n := range ms.Caps {
				fields = append(fields, "c:"+c, n)
			}
			pipe.HSet(ctx, key, fields...)
		}
		for i := 0; i < len(st.EventIDs); i += 1000 {
			ids := st.EventIDs[i:min(i+1000, len(st.EventIDs))]
			members := make([]any, len(ids))
			for j, id := range ids {
				members[j] = id
			}
			pipe.SAdd(ctx, subj.key("seen"), members...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing rescored state: %w", err)
	}
	return nil
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', 17, 64) }

func boolFlag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
