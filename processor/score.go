package processor

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
)

// maxAttempts bounds how often a batch is planned again after losing
// compare-and-sets to concurrent changes before Score fails (the consumer
// then retries the batch whole, with backoff).
const maxAttempts = 25

// Scorer applies batches of events to the states in Redis: the processor's
// work without Kafka. The benchmark harness measures it alone as the
// processor's Redis ceiling.
type Scorer struct {
	core    *scoring.Core
	store   *leadstate.Store
	anonTTL time.Duration
	clock   func() time.Time // time.Now; tests simulate time passing
	cache   *stateCache      // the processor's; nil: every state is read
}

// NewScorer returns a scorer storing visitors' states for anonTTL after
// their last write.
func NewScorer(core *scoring.Core, store *leadstate.Store, anonTTL time.Duration) *Scorer {
	return &Scorer{core: core, store: store, anonTTL: anonTTL, clock: time.Now}
}

// Scored is what Score did with a batch.
type Scored struct {
	Outcomes  []scoring.Outcome // per event
	Errors    []error           // per event: why a Dead one can never be applied
	Outbox    []event.MQL       // MQL records pending in the outboxes of the subjects stored
	OutboxMQA []event.MQA       // MQA records pending in the outboxes of the accounts stored
	Stored    map[scoring.Subject]leadstate.Record
	Merges    int // histories merged
	Writes    int // compare-and-sets sent
	Conflicts int // of which lost to a concurrent change
}

// facts answers Core.Plan from the records read and what the batch learned.
type facts struct {
	recs    map[scoring.Subject]leadstate.Record
	applied map[scoring.AppliedQuery]bool // read from Redis, or learned from commits
}

func (f *facts) State(s scoring.Subject) (*scoring.State, bool) {
	r, ok := f.recs[s]
	return r.State, ok
}

func (f *facts) Applied(s scoring.Subject, fp uint64, b int64) (bool, bool) {
	v, ok := f.applied[scoring.AppliedQuery{Subject: s, FP: fp, Bucket: b}]
	return v, ok
}

// Score plans events over the states in recs (read ahead; read here when
// missing or stale), stores the plan's writes phase by phase with
// compare-and-sets, and plans again after a lost one, keeping what was
// stored, until every write is stored. recs is updated with what it learns.
func (sc *Scorer) Score(ctx context.Context, events []*event.Event, recs map[scoring.Subject]leadstate.Record) (*Scored, error) {
	f := &facts{recs: recs, applied: map[scoring.AppliedQuery]bool{}}
	res := &Scored{Stored: map[scoring.Subject]leadstate.Record{}}
	skip := make([]bool, len(events))
	mqlSeen := map[string]bool{}
	forgot := map[string]bool{} // accounts a stored lead no longer names (see commit)
	for attempt := 0; ; attempt++ {
		if attempt == maxAttempts {
			return nil, fmt.Errorf("scoring a batch of %d events: still losing to concurrent changes after %d attempts", len(events), maxAttempts)
		}
		now := sc.clock().UnixMilli()
		plan := sc.core.Plan(events, skip, f, now)
		if !plan.Complete() {
			// Reading what was missing is progress, not a lost attempt
			// (a long chain of merges takes a plan per stretch of it);
			// only a round that learns nothing new counts.
			known := len(f.recs) + len(f.applied)
			if err := sc.learnMissing(ctx, f, plan); err != nil {
				return nil, err
			}
			if len(f.recs)+len(f.applied) > known {
				attempt--
			}
			continue
		}
		done, err := sc.commit(ctx, f, plan, now, skip, res, mqlSeen, forgot)
		if err != nil {
			return nil, err
		}
		if !done {
			continue
		}
		if err := sc.store.Touch(ctx, plan.Via, now+sc.anonTTL.Milliseconds()); err != nil {
			return nil, err
		}
		sc.cache.put(f.recs)
		res.Outcomes, res.Errors = plan.Outcomes, plan.Errors
		var dupLeads, dupAccts []string
		dupSeen, acctSeen := map[string]bool{}, map[string]bool{}
		addAcct := func(a string) {
			if a != "" && !acctSeen[a] {
				acctSeen[a] = true
				dupAccts = append(dupAccts, a)
			}
		}
		for i, o := range res.Outcomes {
			if skip[i] {
				res.Outcomes[i] = scoring.Scored // stored by an earlier attempt
			}
			// A redelivered event's lead (and its account) may hold an
			// MQL (MQA) record a crashed processor stored but did not
			// publish. The account may be one the lead has left since
			// (later in the same batch, say): the lead names those until
			// it sees its removal stored.
			if s := plan.Subjects[i]; o == scoring.Duplicate && !s.Anonymous && !dupSeen[s.ID] {
				dupSeen[s.ID] = true
				dupLeads = append(dupLeads, s.ID)
				for _, a := range leadAccounts(f.recs[s].State) {
					addAcct(a)
				}
			}
			// Its own lead (and an alias's previous one) may have been
			// merged into the survivor since its crossing was stored: that
			// record waits in the merged lead's outbox.
			if o == scoring.Duplicate {
				for _, l := range []string{events[i].LeadID, aliasPrevious(events[i])} {
					if l != "" && !dupSeen[l] {
						dupSeen[l] = true
						dupLeads = append(dupLeads, l)
					}
				}
			}
			if o == scoring.Duplicate && events[i].Type == event.Group {
				addAcct(events[i].GroupID)
			}
		}
		// And a lead stored by this batch that stopped naming an account
		// can no longer lead a redelivery there: its outbox is checked now.
		for a := range forgot {
			addAcct(a)
		}
		pending, err := sc.store.Outbox(ctx, dupLeads)
		if err != nil {
			return nil, err
		}
		for _, m := range pending {
			if !mqlSeen[m.MQLID] {
				mqlSeen[m.MQLID] = true
				res.Outbox = append(res.Outbox, m)
			}
		}
		pendingMQA, err := sc.store.OutboxMQA(ctx, dupAccts)
		if err != nil {
			return nil, err
		}
		for _, m := range pendingMQA {
			if !mqlSeen[m.MQAID] {
				mqlSeen[m.MQAID] = true
				res.OutboxMQA = append(res.OutboxMQA, m)
			}
		}
		return res, nil
	}
}

// aliasPrevious is an alias's previousId, which may name a lead ("" for
// other events).
func aliasPrevious(e *event.Event) string {
	if e.Type == event.Alias {
		return e.PreviousID
	}
	return ""
}

// leadAccounts are the accounts a lead's state names: the one it is a
// member of and those it left whose removal it has not seen stored.
func leadAccounts(st *scoring.State) []string {
	if st == nil {
		return nil
	}
	var out []string
	if a := scoring.AccountOf(st); a != "" {
		out = append(out, a)
	}
	for _, l := range st.Left {
		out = append(out, l.Account)
	}
	return out
}

// read adds the records of want, and of the leads they were merged into and
// the accounts they are members of (scoring.Related), to recs: a chain of
// merges to its end, one round trip per hop (each reads subjects not read
// before, so it ends).
func (sc *Scorer) read(ctx context.Context, recs map[scoring.Subject]leadstate.Record, want []scoring.Subject) error {
	for len(want) > 0 {
		var todo, next []scoring.Subject
		seen := map[scoring.Subject]bool{}
		for _, s := range want {
			if _, ok := recs[s]; ok || seen[s] {
				continue
			}
			seen[s] = true
			if r, ok := sc.cache.get(s); ok {
				recs[s] = r
				next = append(next, scoring.Related(r.State)...)
				continue
			}
			todo = append(todo, s)
		}
		got, err := sc.store.Read(ctx, todo)
		if err != nil {
			return err
		}
		for s, r := range got {
			recs[s] = r
			next = append(next, scoring.Related(r.State)...)
		}
		want = next
	}
	return nil
}

// learnMissing reads what an incomplete plan lacked.
func (sc *Scorer) learnMissing(ctx context.Context, f *facts, plan *scoring.Plan) error {
	if err := sc.read(ctx, f.recs, plan.Missing); err != nil {
		return err
	}
	got, err := sc.store.Applied(ctx, plan.MissingApplied)
	if err != nil {
		return err
	}
	for i, q := range plan.MissingApplied {
		f.applied[q] = got[i]
	}
	return nil
}

// commit stores a complete plan's writes phase by phase. It returns done =
// true when every write was stored; otherwise what it learned (a state
// changed by another processor, ids applied already) is in f, the events
// whose writes were stored are marked in skip, and the batch must be planned
// again. The accounts a stored lead's state no longer names (a removal it saw
// stored, or one beyond the few it remembers) are added to forgot.
func (sc *Scorer) commit(ctx context.Context, f *facts, plan *scoring.Plan, now int64, skip []bool, res *Scored, mqlSeen, forgot map[string]bool) (bool, error) {
	last := 0
	for _, w := range plan.Writes {
		last = max(last, w.Phase)
	}
	for phase := 0; phase <= last; phase++ {
		var cs []leadstate.Commit
		var ws []*scoring.Write
		for i := range plan.Writes {
			w := &plan.Writes[i]
			if w.Phase != phase {
				continue
			}
			c := leadstate.Commit{Subject: w.Subject, Expect: f.recs[w.Subject].Version, State: w.State, MQLs: w.MQLs, MQAs: w.MQAs}
			if w.Subject.Anonymous || (w.Subject.Account && scoring.Memberless(w.State)) {
				// An account no lead belongs to expires as a visitor does
				// (a write with members clears the expiry).
				c.ExpireAt = now + sc.anonTTL.Milliseconds()
			}
			for _, s := range w.Seen {
				c.Seen = append(c.Seen, leadstate.Seen{FP: s.FP, Bucket: s.Bucket, ExpireAt: sc.core.BucketExpiry(s.Bucket)})
			}
			cs = append(cs, c)
			ws = append(ws, w)
		}
		if len(cs) == 0 {
			continue
		}
		results, err := sc.store.Commit(ctx, cs)
		if err != nil {
			return false, err
		}
		res.Writes += len(cs)
		lost := false
		for i, r := range results {
			w := ws[i]
			switch r.Status {
			case leadstate.Stored:
				if prev := f.recs[w.Subject].State; prev != nil && prev.Pending && !w.State.Pending {
					res.Merges++ // a merged subject emptied: its history is in its survivor
				}
				if !w.Subject.Account && !w.Subject.Anonymous {
					names := leadAccounts(w.State)
					for _, a := range leadAccounts(f.recs[w.Subject].State) {
						if !slices.Contains(names, a) {
							forgot[a] = true
						}
					}
				}
				rec := leadstate.Record{State: w.State, Version: r.Version}
				f.recs[w.Subject], res.Stored[w.Subject] = rec, rec
				for _, s := range w.Seen {
					f.applied[scoring.AppliedQuery{Subject: w.Subject, FP: s.FP, Bucket: s.Bucket}] = true
				}
				for j := range plan.Outcomes {
					if plan.Outcomes[j] == scoring.Scored && plan.Subjects[j] == w.Subject {
						skip[j] = true // recorded by this write
					}
				}
				for _, m := range w.MQLs {
					if !mqlSeen[m.MQLID] {
						mqlSeen[m.MQLID] = true
						res.Outbox = append(res.Outbox, m)
					}
				}
				for _, m := range w.MQAs {
					if !mqlSeen[m.MQAID] {
						mqlSeen[m.MQAID] = true
						res.OutboxMQA = append(res.OutboxMQA, m)
					}
				}
			case leadstate.Conflict:
				f.recs[w.Subject] = r.Current
				res.Conflicts++
				lost = true
			case leadstate.Duplicate:
				dups := map[uint64]bool{}
				for _, fp := range r.Dups {
					dups[fp] = true
				}
				for _, s := range w.Seen {
					if dups[s.FP] {
						f.applied[scoring.AppliedQuery{Subject: w.Subject, FP: s.FP, Bucket: s.Bucket}] = true
					}
				}
				lost = true
			}
		}
		if lost {
			return false, nil
		}
	}
	return true, nil
}
