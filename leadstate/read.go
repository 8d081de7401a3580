package leadstate

import (
	"context"
	"time"

	"github.com/leadstream/leadstream/scoring"
)

func msTime(ms int64) time.Time { return time.UnixMilli(ms) }

// maxHops bounds the merge chains ReadLead and ReadChain follow: to the
// survivor however long a chain the processor follows, one GET per link; a
// chain that comes back on itself (opposite aliases the processor has not
// broken yet) ends where it does.
const maxHops = 4096

// LeadRecord is a lead's stored state as the lead API shows it.
type LeadRecord struct {
	State *scoring.State // nil: leadstream knows nothing of the lead
	// Survivor is the state of the lead whose scores are the lead's own:
	// State itself, or where it was merged into (alias).
	Survivor *scoring.State
}

// ReadLead reads a lead's state and, when it was merged into another lead,
// the survivor's (following the chain of merges).
func (s *Store) ReadLead(ctx context.Context, lead string) (LeadRecord, error) {
	subj := scoring.Lead(lead)
	var out LeadRecord
	seen := map[scoring.Subject]bool{}
	for hop := 0; hop <= maxHops && !seen[subj]; hop++ {
		seen[subj] = true
		recs, err := s.Read(ctx, []scoring.Subject{subj})
		if err != nil {
			return LeadRecord{}, err
		}
		st := recs[subj].State
		if hop == 0 {
			out.State = st
		}
		if st == nil {
			return out, nil
		}
		out.Survivor = st
		if st.Into == "" {
			return out, nil
		}
		subj = scoring.Lead(st.Into)
	}
	return out, nil
}

// ReadAccount reads an account's state (nil when leadstream knows nothing of it).
func (s *Store) ReadAccount(ctx context.Context, id string) (*scoring.State, error) {
	subj := scoring.Account(id)
	recs, err := s.Read(ctx, []scoring.Subject{subj})
	if err != nil {
		return nil, err
	}
	return recs[subj].State, nil
}
