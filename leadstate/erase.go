package leadstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/leadstream/leadstream/event"
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

// forgetScript stores an account's state without some members, and rewrites
// the pending MQA records of its outbox that named them, at once: the state
// only if it is still the version read, each record only if it is still the
// one read (one the processor acknowledged meanwhile is not brought back).
// Both keys are the account's (one hash tag, one Cluster slot).
//
// KEYS[1] = state, KEYS[2] = outbox
// ARGV[1] = expected version (8 bytes; empty: the state must not exist)
// ARGV[2] = new value (empty: leave the state as it is)
// ARGV[3] = n, then n (mqa_id, record read, new record) triples
// Returns 1, or 0 when the state changed meanwhile (nothing is written).
var forgetScript = redis.NewScript(`
if redis.call('GETRANGE', KEYS[1], 0, 7) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') end
local n = tonumber(ARGV[3])
for i = 0, n - 1 do
  local f = ARGV[4 + 3 * i]
  if redis.call('HGET', KEYS[2], f) == ARGV[5 + 3 * i] then redis.call('HSET', KEYS[2], f, ARGV[6 + 3 * i]) end
end
return 1
`)

// ForgetMembers removes the entries of leads from account's state (an
// erasure: the account keeps no trace of them, tombstones included), and
// removes them from the top_members of the account's MQA records still
// pending in its outbox (not yet published: published afterwards without
// them), in one compare-and-set retried while processors change the
// account. It reports how many member entries it removed. The account's
// engagement is recomputed from its remaining members at its next event. A
// record a processor is publishing at that moment (read before) still names
// them on the mqa topic.
func (s *Store) ForgetMembers(ctx context.Context, account string, leads []string) (int, error) {
	subj := scoring.Account(account)
	k := keysOf(subj)
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
		pending, err := s.rdb.HGetAll(ctx, k.outbox()).Result()
		if err != nil {
			return 0, fmt.Errorf("reading the mqa outbox of an account: %w", err)
		}
		args := []any{rec.Version, "", 0}
		n := 0
		if rec.State != nil {
			st := rec.State.Clone()
			kept := st.Members[:0]
			for _, m := range st.Members {
				if !drop[m.Lead] {
					kept = append(kept, m)
				}
			}
			if n = len(st.Members) - len(kept); n > 0 {
				st.Members = kept
				args[1] = value(newVersion(), st)
			}
		}
		rewrites := 0
		for id, old := range pending {
			var m event.MQA
			if err := json.Unmarshal([]byte(old), &m); err != nil {
				continue // not a record the processor can publish either
			}
			kept := m.TopMembers[:0:0]
			for _, tm := range m.TopMembers {
				if !drop[tm.LeadID] {
					kept = append(kept, tm)
				}
			}
			if len(kept) == len(m.TopMembers) {
				continue
			}
			m.TopMembers = kept
			rec, err := json.Marshal(&m)
			if err != nil {
				return 0, fmt.Errorf("encoding mqa record: %w", err)
			}
			args = append(args, id, old, rec)
			rewrites++
		}
		if args[1] == "" && rewrites == 0 {
			return 0, nil
		}
		args[2] = rewrites
		ok, err := forgetScript.Run(ctx, s.rdb, []string{k.state(), k.outbox()}, args...).Int()
		if err != nil {
			return 0, fmt.Errorf("removing members from an account: %w", err)
		}
		if ok == 1 {
			return n, nil
		}
	}
	return 0, fmt.Errorf("removing members from an account: %w after %d tries", ErrBusyAccount, maxForgetTries)
}
