package scoring

import (
	"slices"

	"github.com/leadstream/leadstream/event"
)

// The planner's side of accounts (see accounts.go): a group call's traits
// go to its account, and every lead an event touches is checked against its
// account after the event, so the account's entry for it follows its state.

// groupAccount merges a group call's traits into its account. It runs for a
// duplicate too (its account write may have been lost): merging traits is
// idempotent. ok is false when the account's state is not known.
func (p *planner) groupAccount(e *event.Event, te int64) (ok bool, err error) {
	if e.Type != event.Group || e.GroupID == "" || len(e.Traits) == 0 {
		return true, nil
	}
	aw, ok := p.get(Account(e.GroupID))
	if !ok {
		return false, nil
	}
	p.touchAccount(aw)
	changed, err := p.c.mergeAccountTraits(aw.cur, e.Traits, te, e.ID)
	if err != nil {
		return true, err
	}
	if changed {
		p.accountChanged(aw, e.ID, te)
	}
	return true, nil
}

// touchAccount keeps an account as it is before the event being planned
// changes it (the first time that event touches it), for finishAccounts.
func (p *planner) touchAccount(aw *working) {
	if aw.acctBefore == nil {
		aw.acctBefore = p.c.snapshotAccount(aw.cur)
		aw.acctTrigger, aw.acctTime = "", 0
		p.acctTouched = append(p.acctTouched, aw)
	}
}

// accountChanged recomputes an account changed since touchAccount; whether
// it crossed is decided when the event's changes are all made
// (finishAccounts). Of the events the changes name (one, but for the leads
// synced at the end of a plan), the latest by (time, id) is the crossing's
// trigger.
func (p *planner) accountChanged(aw *working, trigger string, te int64) {
	aw.changed = true
	if aw.acctTrigger == "" || te > aw.acctTime || (te == aw.acctTime && trigger > aw.acctTrigger) {
		aw.acctTrigger, aw.acctTime = trigger, te
	}
	p.c.refreshAccount(aw.cur)
}

// finishAccounts decides the crossings of the accounts the last event (or
// the plan's final sync) changed.
func (p *planner) finishAccounts() {
	for _, aw := range p.acctTouched {
		if aw.acctTrigger != "" {
			aw.mqas = append(aw.mqas, p.c.accountCrossings(aw.cur, aw.acctBefore, aw.acctTrigger, aw.acctTime)...)
		}
		aw.acctBefore = nil
	}
	p.acctTouched = p.acctTouched[:0]
}

// syncLead brings the accounts of a lead in line with its state: its entry
// in its account (a higher count when it changed since it was stored), a
// tombstone in the accounts it left. trigger and te name the event a
// crossing is attributed to. It returns false when an account's state is
// not known.
func (p *planner) syncLead(w *working, trigger string, te int64) bool {
	st := w.cur
	if st.Anonymous || st.Account {
		return true
	}
	acct := p.c.accountOf(st)
	var baseAcct string
	var baseSeq uint64
	if w.base != nil {
		baseAcct, baseSeq = w.base.MemberOf, w.base.AcctSeq
	}
	if acct == "" && baseAcct == "" && len(st.Left) == 0 && len(w.accts) == 0 {
		return true // in no account, and never was lately: the common case
	}
	var vals []MemberValue
	if acct != "" {
		vals = p.c.entryOf(st)
	}
	if st.MemberOf != acct {
		st.MemberOf = acct
		w.changed = true
	}
	if st.AcctSeq == baseSeq && (acct != baseAcct || !sameValues(vals, p.c.entryOf(w.base))) {
		st.AcctSeq = baseSeq + 1
		w.changed = true
	}
	if baseAcct != "" && baseAcct != acct && !slices.ContainsFunc(st.Left, func(l LeftAccount) bool { return l.Account == baseAcct }) {
		st.Left = append(slices.Clone(st.Left), LeftAccount{Account: baseAcct, Seq: st.AcctSeq})
		if len(st.Left) > maxLeft {
			st.Left = st.Left[len(st.Left)-maxLeft:]
		}
		w.changed = true
	}
	if i := slices.IndexFunc(st.Left, func(l LeftAccount) bool { return l.Account == acct }); acct != "" && i >= 0 {
		st.Left = slices.Delete(slices.Clone(st.Left), i, i+1)
		w.changed = true
	}
	if acct != "" {
		aw, ok := p.get(Account(acct))
		if !ok {
			return false
		}
		p.touchAccount(aw)
		if p.c.setEntry(aw.cur, st.ID, st.AcctSeq, vals, false) {
			p.accountChanged(aw, trigger, te)
		}
		if !slices.Contains(w.accts, acct) {
			w.accts = append(w.accts, acct)
		}
	}
	// Accounts this plan gave a live entry, then moved away from.
	for _, a := range w.accts {
		if a == acct {
			continue
		}
		aw, ok := p.get(Account(a))
		if !ok {
			return false
		}
		p.touchAccount(aw)
		if p.c.setEntry(aw.cur, st.ID, st.AcctSeq, nil, true) {
			p.accountChanged(aw, trigger, te)
		}
	}
	for _, l := range slices.Clone(st.Left) {
		aw, ok := p.get(Account(l.Account))
		if !ok {
			return false
		}
		p.touchAccount(aw)
		if p.c.setEntry(aw.cur, st.ID, st.AcctSeq, nil, true) {
			p.accountChanged(aw, trigger, te)
		}
		// The stored account shows the removal: forget it, when the lead
		// is written anyway.
		if w.changed && aw.base != nil && hasTombstone(aw.base, st.ID, l.Seq) {
			st.Left = slices.DeleteFunc(slices.Clone(st.Left), func(x LeftAccount) bool { return x.Account == l.Account })
		}
	}
	if len(st.Left) == 0 {
		st.Left = nil
	}
	return true
}

func hasTombstone(acct *State, lead string, seq uint64) bool {
	i, found := slices.BinarySearchFunc(acct.Members, lead, func(e AccountEntry, l string) int { return cmpString(e.Lead, l) })
	return found && acct.Members[i].Left && acct.Members[i].Seq >= seq
}

// resync checks the accounts of an event's subject without applying it: an
// event a caller already committed (its subject's write was stored, its
// account's may not have been).
func (p *planner) resync(e *event.Event) {
	if !p.c.Relevant(e) {
		return
	}
	te := e.EventTime.UnixMilli()
	from := Lead(e.LeadID)
	if e.LeadID == "" {
		from = Anon(e.AnonymousID)
	}
	target, _, ok := p.survivor(from)
	if !ok {
		return
	}
	if ok, _ := p.groupAccount(e, te); !ok {
		return
	}
	p.syncLead(target, e.ID, te)
}

// syncUnsynced checks the accounts of the leads the event just planned
// changed besides applying it (a merge's survivor and source, a link), as a
// plan of that event alone would: a crossing is attributed to the same
// event (or merge) however the events are batched. Leads merged away go
// first, so their entries leave before their survivors' grow.
func (p *planner) syncUnsynced() {
	if len(p.unsynced) == 0 {
		return
	}
	for _, away := range []bool{true, false} {
		for _, w := range p.unsynced {
			if (w.cur.Into != "") != away || w.cur.Anonymous || w.cur.Account {
				continue
			}
			p.syncTriggered(w)
		}
	}
	p.unsynced = p.unsynced[:0]
}

// syncChanged checks the accounts of every lead the plan changed (leads
// merged away leave theirs) once all events are planned.
func (p *planner) syncChanged() {
	for i := 0; i < len(p.order); i++ {
		w := p.work[p.order[i]]
		if w.changed && !w.cur.Anonymous && !w.cur.Account {
			p.syncTriggered(w)
		}
	}
}

// syncTriggered checks w's accounts, a crossing named by the event that
// last applied to w, else by the event being planned.
func (p *planner) syncTriggered(w *working) {
	trigger, te := w.trigger, w.triggerTime
	if trigger == "" {
		trigger, te = p.lastID, p.lastTime
	}
	p.syncLead(w, trigger, te)
}
