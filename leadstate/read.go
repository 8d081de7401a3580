package leadstate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leadstream/leadstream/scoring"
)

func msTime(ms int64) time.Time { return time.UnixMilli(ms) }

// maxHops bounds the merge chains ReadLead and ReadChain follow: to the
// survivor however long a chain the processor follows, one GET per link. A
// chain that comes back on itself (opposite aliases the processor has not
// broken yet) ends, for ReadLead, where the processor will break it, for
// ReadChain where it does.
const maxHops = 4096

// LeadRecord is a lead's stored state as the lead API shows it.
type LeadRecord struct {
	State *scoring.State // nil: leadstream knows nothing of the lead
	// Survivor is the state of the lead whose scores are the lead's own:
	// State itself, or where it was merged into (alias); nil when that
	// lead has no state (a link to a lead erased since).
	Survivor *scoring.State
	// Into is the lead the chain of merges ends at ("" when the lead was
	// not merged): Survivor's id, also when Survivor is nil.
	Into string
	// Pending are the states on the way that are frozen mid-merge (a
	// merge's first step stored, its second not yet: the processor
	// between two writes, or killed there) whose history Survivor does
	// not hold yet, in the order the scoring core folds them into it at
	// the next event through them (the deepest first): the lead's scores
	// are Survivor's with them folded in (scoring.Core.Merge).
	Pending []*scoring.State
}

// ReadLead reads a lead's state and, when it was merged into another lead,
// the survivor's (following the chain of merges), and the merges on the way
// that are half done. A chain that comes back on itself (opposite aliases
// stored at once) ends where the scoring core breaks it (planner.breakCycle).
func (s *Store) ReadLead(ctx context.Context, lead string) (LeadRecord, error) {
	subj := scoring.Lead(lead)
	var out LeadRecord
	var chain []*scoring.State // the lead and the leads it was merged into, before the survivor
	at := map[string]int{}     // chain positions by id
	for hop := 0; ; hop++ {
		if hop > maxHops {
			// Too long to follow: show where it got to, as before.
			out.Survivor = chain[len(chain)-1]
			out.Into = out.Survivor.ID
			return out, nil
		}
		recs, err := s.Read(ctx, []scoring.Subject{subj})
		if err != nil {
			return LeadRecord{}, err
		}
		st := recs[subj].State
		if hop == 0 {
			out.State = st
		}
		if st == nil {
			if hop > 0 {
				out.Into = subj.ID // a link to a lead with no state: its events score on a new state
			}
			break
		}
		if st.Into == "" {
			out.Survivor = st
			if hop > 0 {
				out.Into = st.ID
			}
			break
		}
		at[st.ID] = len(chain)
		chain = append(chain, st)
		if i, ok := at[st.Into]; ok {
			give, err := s.breakCycle(ctx, chain[i:])
			if err != nil {
				return LeadRecord{}, err
			}
			j := at[give.ID]
			surv := give.Clone()
			surv.Into, surv.Pending, surv.MergeMark, surv.MergeTime = "", false, "", 0
			out.Survivor, chain = surv, chain[:j]
			if j > 0 {
				out.Into = give.ID
			}
			break
		}
		subj = scoring.Lead(st.Into)
	}
	var err error
	out.Pending, err = s.unfolded(ctx, chain, out.Survivor)
	return out, err
}

// breakCycle returns the member of a cycle of merges (each pointing at the
// next, the last at the first) that survives it, as the scoring core
// decides it (scoring.CycleSurvivor, from what each member recorded).
func (s *Store) breakCycle(ctx context.Context, cycle []*scoring.State) (*scoring.State, error) {
	var recs [][2]int // {m, r}: cycle[r] recorded cycle[m]'s merge
	for mi, m := range cycle {
		if !m.Pending {
			continue
		}
		fp := scoring.Fingerprint(m.MergeMark)
		for ri, r := range cycle {
			if ri == mi {
				continue
			}
			got, err := s.recordedIn(ctx, r, []uint64{fp})
			if err != nil {
				return nil, err
			}
			if got[fp] {
				recs = append(recs, [2]int{mi, ri})
			}
		}
	}
	return cycle[scoring.CycleSurvivor(len(cycle), func(i int) string { return cycle[i].ID }, recs)], nil
}

// recordedIn reports which of the fingerprints fps st's dedup holds: in
// its state, or in the sets beside it (its spilled buckets). Every bucket
// is looked in, not only the one of an id's event time: the bucket depends
// on the processors' dedup window, which a reader does not know, and a
// 64-bit fingerprint found in another bucket is the same id.
func (s *Store) recordedIn(ctx context.Context, st *scoring.State, fps []uint64) (map[uint64]bool, error) {
	out := map[uint64]bool{}
	want := map[uint64]bool{}
	for _, fp := range fps {
		want[fp] = true
	}
	for _, b := range st.Recent {
		for _, fp := range b.IDs {
			if want[fp] {
				out[fp] = true
			}
		}
	}
	if len(st.Spilled) == 0 {
		return out, nil
	}
	k := keysOf(st.Subject)
	pipe := s.rdb.Pipeline()
	cmds := map[uint64][]*redis.BoolCmd{}
	for _, fp := range fps {
		for _, b := range st.Spilled {
			cmds[fp] = append(cmds[fp], pipe.SIsMember(ctx, k.bucket(b), member(fp)))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("reading the dedup of a lead: %w", err)
	}
	for fp, cs := range cmds {
		for _, c := range cs {
			if c.Val() {
				out[fp] = true
			}
		}
	}
	return out, nil
}

// unfolded returns the frozen states of chain (a lead and the leads it was
// merged into, in order, up to the survivor surv, nil when it has none)
// whose merge surv has not recorded, deepest first, as the scoring core
// completes them (planner.completeMerge): a merge is done when the
// survivor's dedup holds its merge mark, or when the ids of a frozen state
// folded before hold it (folding records them in the survivor).
func (s *Store) unfolded(ctx context.Context, chain []*scoring.State, surv *scoring.State) ([]*scoring.State, error) {
	var frozen []*scoring.State
	var marks []uint64
	for i := len(chain) - 1; i >= 0; i-- {
		if chain[i].Pending {
			frozen = append(frozen, chain[i])
			marks = append(marks, scoring.Fingerprint(chain[i].MergeMark))
		}
	}
	if len(frozen) == 0 {
		return nil, nil
	}
	recorded := map[uint64]bool{}
	if surv != nil {
		var err error
		if recorded, err = s.recordedIn(ctx, surv, marks); err != nil {
			return nil, err
		}
	}
	var out []*scoring.State
	for i, f := range frozen {
		if recorded[marks[i]] {
			continue
		}
		out = append(out, f)
		recorded[marks[i]] = true
		for _, b := range f.Recent {
			for _, fp := range b.IDs {
				recorded[fp] = true
			}
		}
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
