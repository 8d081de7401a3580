package leadstate

import (
	"context"

	"github.com/leadstream/leadstream/scoring"
)

// ReadChain reads a subject's state and the states of the leads it was
// merged into, following Into to the survivor (at most maxHops links): one
// GET per link. The first entry is s's own state, nil when it has none (and
// then the only entry).
func (s *Store) ReadChain(ctx context.Context, subj scoring.Subject) ([]*scoring.State, error) {
	var chain []*scoring.State
	seen := map[scoring.Subject]bool{}
	for hop := 0; hop <= maxHops && !seen[subj]; hop++ {
		seen[subj] = true
		recs, err := s.Read(ctx, []scoring.Subject{subj})
		if err != nil {
			return nil, err
		}
		st := recs[subj].State
		if st == nil && hop > 0 {
			return chain, nil // a link to a lead with no state: the chain ends
		}
		chain = append(chain, st)
		if st == nil || st.Into == "" {
			return chain, nil
		}
		subj = scoring.Lead(st.Into)
	}
	return chain, nil
}
