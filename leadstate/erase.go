package leadstate

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/leadstream/leadstream/scoring"
)

// ACLEraser is what a collector serving DELETE /v1/leads/{id} (erasure)
// and `leadstream erase` need: the lead's keys are deleted (DEL) and its
// account's state rewritten by the compare-and-set script, so the
// processor's rule on ls2:* keys.
const ACLEraser = "~ls2:* resetchannels -@all +@connection +@read +@write +@scripting -@dangerous +cluster|slots"

// ErrBusyAccount means an account changed under every compare-and-set
// ForgetMembers tried: erasing again will finish it.
var ErrBusyAccount = errors.New("account state kept changing")

// SubjectState is what Erase found of one subject before deleting it.
type SubjectState struct {
	State   *scoring.State // nil: none, or Corrupt
	Corrupt bool           // a value that does not decode (deleted all the same)
}

// States reads each subject's state on its own, so that one that does not
// decode (ErrCorruptState) is reported as Corrupt instead of failing the rest.
func (s *Store) States(ctx context.Context, subjects []scoring.Subject) (map[scoring.Subject]SubjectState, error) {
	out := make(map[scoring.Subject]SubjectState, len(subjects))
	if len(subjects) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(subjects))
	for i, subj := range subjects {
		cmds[i] = pipe.Get(ctx, keysOf(subj).state())
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("reading %d states: %w", len(subjects), err)
	}
	for i, subj := range subjects {
		v, err := cmds[i].Result()
		switch {
		case errors.Is(err, redis.Nil):
			out[subj] = SubjectState{}
		case err != nil:
			return nil, fmt.Errorf("reading a state: %w", err)
		default:
			rec, err := decodeValue(subj, v)
			out[subj] = SubjectState{State: rec.State, Corrupt: err != nil}
		}
	}
	return out, nil
}

// Erase deletes everything stored for subjects: each one's state, its MQL
// outbox (crossings not published yet are dropped with it) and its dedup
// sets. The dedup sets are named by the state (State.Spilled); for a state
// that does not decode they are found with SCAN on the subject's hash tag.
// A subject without a state has no dedup sets left (they expire before the
// state does). It returns how many keys it deleted.
//
// A processor that read a state before it was erased loses its
// compare-and-set (the version it expects is gone) and plans again from no
// state, so an erased state is never written back; events arriving after the
// erasure start a new state.
func (s *Store) Erase(ctx context.Context, subjects []scoring.Subject) (int, error) {
	states, err := s.States(ctx, subjects)
	if err != nil {
		return 0, err
	}
	var dels []*redis.IntCmd
	pipe := s.rdb.Pipeline()
	for _, subj := range subjects {
		k := keysOf(subj)
		keys := []string{k.state(), k.outbox()}
		st := states[subj]
		if st.State != nil {
			for _, b := range st.State.Spilled {
				keys = append(keys, k.bucket(b))
			}
		}
		if st.Corrupt {
			more, err := s.scanTag(ctx, k)
			if err != nil {
				return 0, err
			}
			keys = append(keys, more...)
		}
		// One DEL per key: they share a slot, but a key list must not repeat.
		for _, key := range keys {
			dels = append(dels, pipe.Del(ctx, key))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("erasing the states of %d subjects: %w", len(subjects), err)
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	return n, nil
}

// scanTag lists the dedup sets of one subject: SCAN over the node holding
// its hash tag's slot.
func (s *Store) scanTag(ctx context.Context, k keys) ([]string, error) {
	pattern := k.prefix + "d:*" // no glob character in a prefix
	var node redis.Cmdable = s.rdb
	if c, ok := s.rdb.(*redis.ClusterClient); ok {
		m, err := c.MasterForKey(ctx, k.state())
		if err != nil {
			return nil, fmt.Errorf("finding the node of a state: %w", err)
		}
		node = m
	}
	var out []string
	iter := node.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("listing the dedup sets of a state: %w", err)
	}
	return out, nil
}

// maxForgetTries bounds the compare-and-sets ForgetMembers tries on one
// account that processors keep changing.
const maxForgetTries = 10

// ForgetMembers removes the entries of leads from account's state (an
// erasure: the account keeps no trace of them, tombstones included), with a
// compare-and-set retried while processors change the account. It reports
// how many entries it removed. The account's engagement is recomputed from
// its remaining members at its next event.
func (s *Store) ForgetMembers(ctx context.Context, account string, leads []string) (int, error) {
	subj := scoring.Account(account)
	drop := make(map[string]bool, len(leads))
	for _, l := range leads {
		drop[l] = true
	}
	for range maxForgetTries {
		recs, err := s.Read(ctx, []scoring.Subject{subj})
		if err != nil {
			return 0, err
		}
		rec := recs[subj]
		if rec.State == nil {
			return 0, nil
		}
		st := rec.State.Clone()
		kept := st.Members[:0]
		for _, m := range st.Members {
			if !drop[m.Lead] {
				kept = append(kept, m)
			}
		}
		n := len(st.Members) - len(kept)
		if n == 0 {
			return 0, nil
		}
		st.Members = kept
		res, err := s.Commit(ctx, []Commit{{Subject: subj, Expect: rec.Version, State: st}})
		if err != nil {
			return 0, fmt.Errorf("removing members from an account: %w", err)
		}
		if res[0].Status == Stored {
			return n, nil
		}
	}
	return 0, fmt.Errorf("removing members from an account: %w after %d tries", ErrBusyAccount, maxForgetTries)
}
