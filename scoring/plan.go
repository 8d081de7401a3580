package scoring

import (
	"fmt"
	"slices"

	"github.com/leadstream/leadstream/event"
)

// Facts is what planning needs to know besides the events: the stored state
// of subjects and which event ids they applied. The processor answers from
// Redis (and what it learned from its writes), `rescore` from memory.
type Facts interface {
	// State returns s's stored state (nil when it has none) and whether
	// that is known; an unknown state is listed in Plan.Missing.
	State(s Subject) (st *State, known bool)
	// Applied reports whether s applied the id of fingerprint fp in dedup
	// bucket b, among the ids kept beside its state (a bucket it spilled,
	// see State.Spilled), and whether that is known; an unknown answer is
	// listed in Plan.MissingApplied. The ids a state keeps itself the plan
	// reads from the state.
	Applied(s Subject, fp uint64, b int64) (applied, known bool)
}

// Outcome is what a plan does with one event.
type Outcome uint8

// Event outcomes.
const (
	Blocked   Outcome = iota // not planned: a fact it needs is missing
	Scored                   // changed its subject's state
	NoMatch                  // matched no rule: changes nothing
	Duplicate                // its id was applied already
	Late                     // event time more than the dedup window before its receipt: not scored
	Stale                    // processed too long after its receipt to be sure of dedup: not scored
	Bot                      // flagged by the collector: never scored
	Dead                     // can never be applied (see Plan.Errors)
	Skipped                  // the caller said it is done (committed by an earlier attempt)
)

var outcomeNames = [...]string{"blocked", "scored", "no_match", "duplicate", "late", "stale", "bot", "dead_letter", "skipped"}

func (o Outcome) String() string { return outcomeNames[o] }

// Seen is an applied id a write records beside its subject's state (in a
// bucket its state spilled).
type Seen struct {
	FP     uint64 // Fingerprint of the id
	Bucket int64
}

// Write is one subject's new state, to store only if the stored state is
// still the one the plan started from (a compare-and-set).
type Write struct {
	Subject Subject
	State   *State
	// Seen are the ids to record beside the state; the write must fail if
	// one of them is recorded already, and the caller plans again knowing it.
	Seen []Seen
	MQLs []event.MQL // crossings to put in the subject's outbox
	MQAs []event.MQA // an account's crossings to put in its outbox
	// Phase orders the writes: a phase is committed only after every write
	// of the phases before it succeeded (a merge target after its frozen
	// source, the source's clean-up after the target).
	Phase int
}

// Plan is what a batch of events does to the subjects it touches.
type Plan struct {
	Outcomes []Outcome
	Errors   []error   // per event, for Dead
	Subjects []Subject // per event: for Scored, the subject whose write records it; for Duplicate, the one that applied it
	Writes   []Write
	// Via are subjects events passed through (merged into another one):
	// visitors among them are kept alive (their expiry restarts).
	Via []Subject
	// Missing and MissingApplied are the facts the plan could not do
	// without; when either is set the plan is incomplete: learn them and
	// plan again.
	Missing        []Subject
	MissingApplied []AppliedQuery
}

// AppliedQuery is a Facts.Applied question.
type AppliedQuery struct {
	Subject Subject
	FP      uint64
	Bucket  int64
}

// Complete reports whether nothing was missing.
func (p *Plan) Complete() bool { return len(p.Missing) == 0 && len(p.MissingApplied) == 0 }

// Into chains are followed to their end however long (a person whose id
// changed many times, each aliased to the next): an event scores on its
// survivor, never on a lead merged away. maxNested bounds how deeply
// pending merges are completed within one another on the way (survivor,
// completeMerge, survivor …); deeper ones are followed as links. shortChain
// is how many subjects breakCycle tracks without allocating.
const (
	maxNested  = 32
	shortChain = 16
)

// planner is the state of one Plan call.
type planner struct {
	c       *Core
	f       Facts
	now     int64
	work    map[Subject]*working
	order   []Subject // work in first-touched order, for deterministic writes
	missing map[Subject]bool
	missQ   map[AppliedQuery]bool
	blocked map[Subject]bool
	plan    *Plan
	// edges order the writes: from is stored before to (see phases).
	edges []edge
	// lastID and lastTime are the event being planned (a crossing found
	// when checking accounts is attributed to it).
	lastID   string
	lastTime int64
	// folded is the survivor the event being planned folded a merged
	// subject's history into (nil: none).
	folded *working
	// unsynced are the leads the event being planned changed besides
	// applying it (merges, links): their accounts are checked after it.
	unsynced []*working
	// depth is how deep survivor calls are nested (completeMerge).
	depth int
	// acctTouched lists the accounts the current event changed.
	acctTouched []*working
}

// working is one subject's state as the plan changes it.
type working struct {
	base    *State // as stored (nil = none)
	cur     *State
	seen    []Seen // ids spilled beside the state
	seenSet map[uint64]bool
	mqls    []event.MQL
	mqas    []event.MQA // an account's crossings
	phase   int         // computed from the plan's edges once it is complete
	changed bool
	via     bool
	// frozen, when set, is the subject frozen for a merge (Pending, with
	// its history): written at frozenPhase with seen and mqls, before cur
	// (emptied once the merge is done) at phase.
	frozen      *State
	frozenPhase int
	// trigger and triggerTime are the last event applied to it; accts the
	// accounts this plan gave it an entry in.
	trigger     string
	triggerTime int64
	accts       []string
	// An account the current event changed: as it was before, and the
	// event its crossing would name (finishAccounts).
	acctBefore  *accountBefore
	acctTrigger string
	acctTime    int64
}

// Plan resolves each event's subject and applies the events, in order, to
// the states in facts: the identity rules (an event with a lead and an
// anonymous id merges the visitor into the lead the first time they appear
// together; alias merges previousId, visitor or lead, into userId; merged
// subjects redirect to their survivor), dedup, lateness, and Core.Apply and
// Merge. skip marks events a caller already committed. now (Unix ms) is the
// processing time for Stale and Prune; 0 disables both (replays).
func (c *Core) Plan(events []*event.Event, skip []bool, f Facts, now int64) *Plan {
	p := &planner{c: c, f: f, now: now, work: map[Subject]*working{}, missing: map[Subject]bool{},
		missQ: map[AppliedQuery]bool{}, blocked: map[Subject]bool{},
		plan: &Plan{Outcomes: make([]Outcome, len(events)), Errors: make([]error, len(events)), Subjects: make([]Subject, len(events))}}
	for i, e := range events {
		p.lastID, p.lastTime = e.ID, e.EventTime.UnixMilli()
		if skip != nil && skip[i] {
			p.plan.Outcomes[i] = Skipped
			p.resync(e)
			p.syncUnsynced()
			p.finishAccounts()
			p.visitorHits(e, Skipped)
			continue
		}
		p.plan.Outcomes[i], p.plan.Subjects[i], p.plan.Errors[i] = p.event(e)
		p.syncUnsynced()
		p.finishAccounts()
		p.visitorHits(e, p.plan.Outcomes[i])
	}
	p.syncChanged()
	p.finishAccounts()
	p.phases()
	for s := range p.missing {
		p.plan.Missing = append(p.plan.Missing, s)
	}
	for q := range p.missQ {
		p.plan.MissingApplied = append(p.plan.MissingApplied, q)
	}
	if !p.plan.Complete() {
		return p.plan
	}
	// An account is written after its members: the entries it holds
	// refer to their stored states.
	acctPhase := 0
	for _, w := range p.work {
		if w.changed && !w.cur.Account {
			acctPhase = max(acctPhase, w.phase+1)
		}
	}
	for _, s := range p.order {
		w := p.work[s]
		if w.via && w.cur.Anonymous && !w.changed {
			p.plan.Via = append(p.plan.Via, s)
		}
		if !w.changed {
			continue
		}
		if s.Account {
			p.plan.Writes = append(p.plan.Writes, Write{Subject: s, State: w.cur, MQAs: w.mqas, Phase: acctPhase})
			continue
		}
		if now > 0 {
			c.Prune(w.cur, now)
		}
		if w.frozen != nil {
			p.plan.Writes = append(p.plan.Writes,
				Write{Subject: s, State: w.frozen, Seen: w.seen, MQLs: w.mqls, Phase: w.frozenPhase},
				Write{Subject: s, State: w.cur, Phase: w.phase})
			continue
		}
		p.plan.Writes = append(p.plan.Writes, Write{Subject: s, State: w.cur, Seen: w.seen, MQLs: w.mqls, Phase: w.phase})
	}
	return p.plan
}

// get returns the working state of s (nil when s has none), or ok = false
// when its state is not known.
func (p *planner) get(s Subject) (*working, bool) {
	if w := p.work[s]; w != nil {
		return w, true
	}
	if p.blocked[s] {
		return nil, false
	}
	st, known := p.f.State(s)
	if !known {
		p.missing[s] = true
		p.blocked[s] = true
		return nil, false
	}
	w := &working{base: st, cur: st.Clone()}
	if w.cur == nil {
		w.cur = &State{Subject: s}
	}
	p.work[s] = w
	p.order = append(p.order, s)
	return w, true
}

// exists reports whether a working state holds anything stored or planned.
func (w *working) exists() bool { return w.base != nil || w.changed }

// survivor follows s's Into chain to the subject that scores its events,
// completing pending merges on the way. via lists the subjects passed.
func (p *planner) survivor(s Subject) (target *working, via []*working, ok bool) {
	if !p.breakCycle(s) {
		return nil, nil, false
	}
	// Completing a merge looks for its target's survivor (recursion);
	// nested deeper than maxNested, pending merges are followed as links.
	p.depth++
	defer func() { p.depth-- }()
	cur := s
	for {
		w, ok := p.get(cur)
		if !ok {
			return nil, nil, false
		}
		if w.cur.Into == "" {
			return w, via, true
		}
		if w.cur.Pending && p.depth <= maxNested && !p.completeMerge(w) {
			return nil, nil, false
		}
		if w.cur.Into == "" { // its merge was the one a cycle gave up
			return w, via, true
		}
		// breakCycle left the chain without a cycle and completing merges
		// moves no link, so it ends; should it not, a chain passing more
		// subjects than are known goes round: score where it got to.
		if len(via) > len(p.work) {
			return w, via, true
		}
		via = append(via, w)
		cur = Lead(w.cur.Into)
	}
}

// breakCycle follows s's Into chain and, when it comes back on itself, breaks
// the cycle. Two processors storing opposite merges of the same leads at once
// (alias A<-B and alias B<-A on two partitions; a stale read) can leave them
// pointing at each other: each compare-and-set is one subject's. Every
// processor breaks it at the same place, decided by what is stored: one lead
// of the cycle stops pointing on and survives with what it holds, the others
// fold into it (survivor completes the merges downstream first).
//
// A member that recorded another's merge mark holds that one's history, and
// a merge is found done only by a target it reaches after the recorder folded
// in: so the survivor is the lowest id that lies, for every recorded merge,
// past its recorder on the way from the merged member (the recorder itself,
// typically); with no merge recorded, the lowest id.
func (p *planner) breakCycle(s Subject) bool {
	var buf [shortChain]*working // no allocation on the common path: chains are short
	chain := buf[:0]
	var at map[*working]int // a long chain's members, by position
	cur := s
	for {
		w, ok := p.get(cur)
		if !ok {
			return false
		}
		if w.cur.Into == "" {
			return true
		}
		i := -1
		if at == nil {
			i = slices.Index(chain, w)
		} else if j, ok := at[w]; ok {
			i = j
		}
		if i < 0 {
			chain = append(chain, w)
			if at != nil {
				at[w] = len(chain) - 1
			} else if len(chain) > shortChain {
				at = make(map[*working]int, 2*len(chain))
				for j, c := range chain {
					at[c] = j
				}
			}
			cur = Lead(w.cur.Into)
			continue
		}
		cycle := chain[i:]
		var recs [][2]int // {m, r}: cycle[r] recorded cycle[m]'s merge
		for mi, m := range cycle {
			if !m.cur.Pending {
				continue
			}
			fp, b := Fingerprint(m.cur.MergeMark), p.c.Bucket(m.cur.MergeTime)
			for ri, r := range cycle {
				if ri == mi {
					continue
				}
				done, known := p.applied(r, fp, b)
				if !known {
					return false
				}
				if done {
					recs = append(recs, [2]int{mi, ri})
				}
			}
		}
		give := cycle[CycleSurvivor(len(cycle), func(i int) string { return cycle[i].cur.ID }, recs)]
		give.cur.Into, give.cur.Pending, give.cur.MergeMark, give.cur.MergeTime = "", false, "", 0
		give.changed = true
		p.unsynced = append(p.unsynced, give)
		return true
	}
}

// CycleSurvivor returns the index of the member of a cycle of merges of n
// leads (member i merged into member i+1, the last into the first) that
// survives it, where id(i) is member i's id and recs lists what was
// recorded: {m, r} when member r recorded member m's merge. It is the lowest
// id that lies, for every recorded merge, past its recorder on the way from
// the merged member (so that nothing recorded is lost or counted twice);
// with nothing recorded, the lowest id; when no member qualifies (recorded
// both ways), the lowest recorder. The planner breaks a cycle there, and
// the lead API answers as it will.
func CycleSurvivor(n int, id func(int) string, recs [][2]int) int {
	dist := func(from, to int) int { return (to - from + n) % n }
	give := -1
	for si := 0; si < n; si++ {
		ok := true
		for _, rc := range recs {
			if d := dist(rc[0], si); d == 0 || dist(rc[0], rc[1]) > d {
				ok = false
				break
			}
		}
		if ok && (give < 0 || id(si) < id(give)) {
			give = si
		}
	}
	if give < 0 {
		for _, rc := range recs {
			if give < 0 || id(rc[1]) < id(give) {
				give = rc[1]
			}
		}
	}
	return give
}

// completeMerge folds a frozen subject's history into its survivor, unless
// the survivor's dedup shows that was done; then the subject is emptied:
// its ids are recorded in the survivor too, and stay with it (the events
// that pass through it check them).
func (p *planner) completeMerge(src *working) bool {
	target, _, ok := p.survivor(Lead(src.cur.Into))
	if !ok {
		return false
	}
	mark, bucket := Fingerprint(src.cur.MergeMark), p.c.Bucket(src.cur.MergeTime)
	done, known := p.applied(target, mark, bucket)
	if !known {
		return false
	}
	if target == src {
		return true // a cycle breakCycle did not see: never fold src into itself
	}
	own := p.c.ownAudiences(src.cur) // a visitor keeps its own hits (audiences.go)
	if !done {
		// The ids src applied are recorded in the target too, except
		// those the target applied itself (a client sent one messageId
		// as the visitor and as the lead): the commit refuses a write
		// recording an id twice, and would refuse this one at every
		// attempt.
		var ids []Seen
		unknown := false
		for _, b := range src.cur.Recent {
			for _, fp := range b.IDs {
				a, known := p.applied(target, fp, b.Bucket)
				if !known {
					unknown = true
				} else if !a {
					ids = append(ids, Seen{FP: fp, Bucket: b.Bucket})
				}
			}
		}
		if unknown {
			return false
		}
		mqls := p.c.Merge(target.cur, src.cur, p.lastID, src.cur.MergeTime)
		p.record(target, mark, bucket)
		p.folded = target
		// A crossing the merge causes names the event that completed it
		// (its MQL here; its accounts' MQA right after this event, in
		// syncUnsynced), however the events are batched. Not the merge
		// mark: for an alias of a lead it holds that lead's id (an
		// e-mail), and MQL and MQA records outlive the lead's erasure.
		p.unsynced = append(p.unsynced, target)
		for _, id := range ids {
			p.record(target, id.FP, id.Bucket)
		}
		target.mqls = append(target.mqls, mqls...)
		if src.frozen != nil {
			p.before(node{src, true}, node{target, false}) // the history is stored frozen first
		}
	}
	// src keeps its ids (its dedup): a visitor linked to another lead
	// later passes its redelivered events through them (appliedVia),
	// while the lead holding them is no longer on its way.
	src.cur.Models, src.cur.Traits, src.cur.Pending = nil, nil, false
	src.cur.Audiences = own
	src.cur.Group, src.cur.Domain = nil, nil
	src.changed = true
	p.unsynced = append(p.unsynced, src)
	p.before(node{target, false}, node{src, false}) // emptied once its survivor holds the history
	return true
}

// applied reports whether w applied fp in bucket b: in this plan, in its
// state, or beside it (a fact).
func (p *planner) applied(w *working, fp uint64, b int64) (bool, bool) {
	if w.seenSet[fp] || w.cur.hasInline(b, fp) {
		return true, true
	}
	if !w.cur.isSpilled(b) && (w.base == nil || !w.base.isSpilled(b)) {
		return false, true
	}
	applied, known := p.f.Applied(w.cur.Subject, fp, b)
	if !known {
		p.missQ[AppliedQuery{Subject: w.cur.Subject, FP: fp, Bucket: b}] = true
	}
	return applied, known
}

// appliedVia reports whether a subject an event passed through applied fp,
// before it was merged (its state's ids moved to the survivor; what it
// spilled stays beside it).
func (p *planner) appliedVia(w *working, fp uint64, te int64) (bool, bool) {
	if w.base == nil || te > w.base.MaxTime {
		return w.seenSet[fp], true // it applied nothing that late
	}
	return p.appliedNear(w, fp, te)
}

// appliedNear reports whether w applied fp for an event of time te: in its
// dedup bucket, or in the neighbouring one when te lies by the edge between
// them (Core.Neighbour). Both lookups are queued at once when unknown.
func (p *planner) appliedNear(w *working, fp uint64, te int64) (bool, bool) {
	applied, known := p.applied(w, fp, p.c.Bucket(te))
	if applied {
		return true, true
	}
	if nb, ok := p.c.Neighbour(te); ok {
		a2, k2 := p.applied(w, fp, nb)
		if a2 {
			return true, true
		}
		return false, known && k2
	}
	return false, known
}

// record remembers that w applied fp in bucket b: in its state, or beside
// it once the state keeps InlineIDs.
func (p *planner) record(w *working, fp uint64, b int64) {
	w.changed = true
	if w.cur.addInline(b, fp) {
		return
	}
	w.cur.spill(b)
	if w.seenSet == nil {
		w.seenSet = map[uint64]bool{}
	}
	if !w.seenSet[fp] {
		w.seenSet[fp] = true
		w.seen = append(w.seen, Seen{FP: fp, Bucket: b})
	}
}

// event plans one event.
func (p *planner) event(e *event.Event) (Outcome, Subject, error) {
	o, target, err := p.event1(e)
	if target == nil {
		return o, Subject{}, err
	}
	return o, target.cur.Subject, err
}

func (p *planner) event1(e *event.Event) (Outcome, *working, error) {
	te := e.EventTime.UnixMilli()
	p.folded = nil
	switch {
	case e.Bot:
		return Bot, nil, nil
	case p.c.Late(e):
		return Late, nil, nil
	case p.now > 0 && p.c.Stale(te, p.now):
		return Stale, nil, nil
	case !p.c.Relevant(e):
		return NoMatch, nil, nil
	}
	anon := e.AnonymousID
	if e.Type == event.Alias && e.PreviousID != "" && e.LeadID == "" {
		anon = e.PreviousID
	}
	var from Subject
	if e.LeadID != "" {
		from = Lead(e.LeadID)
	} else {
		from = Anon(anon)
	}
	target, via, ok := p.survivor(from)
	if !ok {
		return Blocked, nil, nil
	}
	if e.LeadID != "" {
		var srcs []Subject
		if anon != "" {
			srcs = append(srcs, Anon(anon))
		}
		if e.Type == event.Alias && e.PreviousID != "" {
			srcs = append(srcs, Anon(e.PreviousID), Lead(e.PreviousID))
		}
		for _, src := range srcs {
			if !p.merge(src, target, te) {
				return Blocked, nil, nil
			}
		}
	}
	fp, bucket := Fingerprint(e.ID), p.c.Bucket(te)
	for _, v := range via {
		v.via = true
		applied, known := p.appliedVia(v, fp, te)
		if !known {
			return Blocked, nil, nil
		}
		if applied {
			return Duplicate, target, nil
		}
	}
	applied, known := p.appliedNear(target, fp, te)
	if !known {
		return Blocked, nil, nil
	}
	if applied {
		// Its accounts' writes may have been lost (a processor killed
		// between the two): check them again.
		if ok, _ := p.groupAccount(e, te); !ok {
			return Blocked, nil, nil
		}
		if !p.syncLead(target, e.ID, te) {
			return Blocked, nil, nil
		}
		return Duplicate, target, nil
	}
	if ok, err := p.groupAccount(e, te); err != nil {
		return Dead, nil, err
	} else if !ok {
		return Blocked, nil, nil
	}
	changed, mqls, err := p.c.Apply(target.cur, e)
	if err != nil {
		return Dead, nil, err
	}
	if !changed {
		if p.folded == target {
			// It merged (an identify or alias scoring nothing itself): its
			// id is stored with the merge, so a redelivery is a duplicate
			// and republishes a crossing the merge left in the outbox.
			p.record(target, fp, bucket)
		}
		return NoMatch, nil, nil
	}
	p.record(target, fp, bucket)
	target.mqls = append(target.mqls, mqls...)
	target.trigger, target.triggerTime = e.ID, te
	if !p.syncLead(target, e.ID, te) {
		return Blocked, nil, nil
	}
	return Scored, target, nil
}

// merge makes src (a visitor, or a lead by alias) part of target: its
// history is folded into target in idempotent steps, each one subject's
// compare-and-set: src frozen (Pending, pointing at target), target given the
// history and a marker id, src emptied. A src already merged into another
// survivor is only pointed at target (last link wins); a src with no state
// becomes a link (for alias, both a visitor and a lead link: previousId may
// name either, and a lead's later events must score on target too).
func (p *planner) merge(src Subject, target *working, te int64) bool {
	w, ok := p.get(src)
	if !ok {
		return false
	}
	if w.cur.Subject == target.cur.Subject {
		return true
	}
	if w.cur.Into != "" {
		end, _, ok := p.survivor(src)
		if !ok {
			return false
		}
		if end == target || w.cur.Pending {
			return true // linked already; or mid-merge elsewhere: relinked at a later event
		}
		p.link(w, target)
		return true
	}
	if !w.exists() || (len(w.cur.Models) == 0 && len(w.cur.Traits) == 0 && len(w.cur.Audiences) == 0 && w.cur.Group == nil && w.cur.Domain == nil) {
		p.link(w, target)
		return true
	}
	w.trigger, w.triggerTime = p.lastID, te
	// Freeze src with its history, then complete the merge: the frozen
	// state is written first, then the target, then the emptied src.
	w.cur.Into, w.cur.Pending = target.cur.ID, true
	w.cur.MergeMark, w.cur.MergeTime = mergeMark(src), te
	w.frozen = w.cur.Clone()
	w.changed = true
	// What was to be stored before or after w's state is now stored before
	// or after its frozen state, which holds what w held.
	for i := range p.edges {
		for _, n := range []*node{&p.edges[i].from, &p.edges[i].to} {
			if n.w == w {
				n.frozen = true
			}
		}
	}
	p.before(node{w, true}, node{w, false})
	return p.completeMerge(w)
}

// link points src, which holds no history, at target. The link is stored
// before target: target's write counts src's events as target's own, which
// is right only if src still holds nothing when the link is stored (were
// src's history stored meanwhile, the link loses its compare-and-set, and
// so nothing that assumed it is stored).
func (p *planner) link(src, target *working) {
	src.cur.Into = target.cur.ID
	src.changed = true
	p.unsynced = append(p.unsynced, src)
	p.before(node{src, false}, node{target, false})
}

// node is one write of a working state: its state, or its frozen state.
type node struct {
	w      *working
	frozen bool
}

// edge says from is stored before to.
type edge struct{ from, to node }

func (p *planner) before(from, to node) { p.edges = append(p.edges, edge{from, to}) }

// phases numbers the writes so that every edge's from is in an earlier
// phase than its to (longest path). Each write is one subject's
// compare-and-set, and Redis (a Cluster's slots) gives no transaction over
// several subjects: a write is stored only once everything it was planned
// on is stored. The edges cannot form a cycle (a merge's target survives
// it); should they, the numbering stops after as many rounds as there are
// writes rather than loop.
func (p *planner) phases() {
	for _, w := range p.work {
		w.phase, w.frozenPhase = 0, 0
	}
	phase := func(n node) *int {
		if n.frozen {
			return &n.w.frozenPhase
		}
		return &n.w.phase
	}
	for range 2*len(p.work) + 1 {
		moved := false
		for _, e := range p.edges {
			if f, t := phase(e.from), phase(e.to); *t < *f+1 {
				*t, moved = *f+1, true
			}
		}
		if !moved {
			return
		}
	}
}

// mergeMark is the id a merge records in its target's dedup ("merge:…").
func mergeMark(src Subject) string {
	if src.Anonymous {
		return "merge:a:" + src.ID
	}
	return "merge:l:" + src.ID
}

// String names an outcome's subject for errors.
func (s Subject) String() string {
	switch {
	case s.Anonymous:
		return fmt.Sprintf("visitor %q", s.ID)
	case s.Account:
		return fmt.Sprintf("account %q", s.ID)
	}
	return fmt.Sprintf("lead %q", s.ID)
}
