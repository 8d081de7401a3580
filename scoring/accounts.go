package scoring

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/leadstream/leadstream/event"
)

// Accounts. In B2B the customer is a company: a Segment group call
// (userId + groupId + traits) makes the lead a member of the account
// groupId and merges the account's traits; optionally (SetFromEmailDomain) a
// lead joins the account of its e-mail domain. A lead is a member of one
// account at a time.
//
// An account is a subject of its own (Account(id)): its state holds its
// traits, per account model its fit and MQA flag, and one entry per member
// with the member's behaviour value (V at T) in each model that scores
// accounts. Its engagement at time t is the sum over members of
// min(member's value decayed to t, member_cap), a function of its members'
// states alone, so any arrival order of the same events gives the same
// account. Its score is engagement (at its newest member time) plus fit;
// crossing the threshold with enough engaged members makes it an MQA.
//
// A member's update and its account's are separate compare-and-sets (the
// account's in a later phase). Each is idempotent: the lead's state counts
// the changes of its entry (AcctSeq), and the account replaces a member's
// entry only by one of a higher (or, within a plan, equal) count, so a retry
// or a processor that read an older state never counts a member twice or
// brings a stale value back. A lead that leaves an account leaves a
// tombstone there (same rule), and remembers the account (Left) until it
// sees the tombstone stored. Every batch that touches a lead checks its
// account agrees with it, so a processor killed between the two writes is
// repaired by the redelivered batch.

// DefaultMaxAccountMembers bounds the entries an account keeps: past it the
// tombstones go first, then the members contributing least.
const DefaultMaxAccountMembers = 1000

// maxLeft bounds the accounts a lead remembers having left.
const maxLeft = 4

// AccountTraitNames are the account traits kept besides those an account fit
// rule reads (each at most MaxTraitBytes).
var AccountTraitNames = []string{"name", "domain", "industry", "employees", "website", "plan"}

// Membership is what an event says of a subject's account: a group call's
// groupId, or an identify's e-mail domain, at its (event time, event id).
// The latest wins, whatever the arrival order.
type Membership struct {
	Account string
	Time    int64
	ID      string
}

func (m *Membership) newer(than *Membership) bool {
	return than == nil || m.Time > than.Time || (m.Time == than.Time && m.ID > than.ID)
}

// LeftAccount is an account a lead left, at entry count Seq.
type LeftAccount struct {
	Account string
	Seq     uint64
}

// AccountEntry is one lead's entry in an account: its behaviour value in
// each account model as of its entry count Seq. A Left entry is a
// tombstone: the lead left at Seq, and older entries must not come back.
type AccountEntry struct {
	Lead   string
	Seq    uint64
	Left   bool
	Values []MemberValue // sorted by Model
}

// MemberValue is a member's behaviour value V at event time T in a model.
type MemberValue struct {
	Model string
	V     float64
	T     int64
}

func (e *AccountEntry) value(model string) (MemberValue, bool) {
	for _, v := range e.Values {
		if v.Model == model {
			return v, true
		}
	}
	return MemberValue{}, false
}

// initAccounts prepares the core's account settings (NewCore).
func (c *Core) initAccounts() {
	c.maxMembers = DefaultMaxAccountMembers
	c.acctTraits = map[string]bool{}
	for _, n := range AccountTraitNames {
		c.acctTraits[n] = true
	}
	for i := range c.rules.Models {
		if a := c.rules.Models[i].Accounts; a != nil {
			for _, f := range a.Fit {
				top, _, _ := strings.Cut(f.Trait, ".")
				c.acctTraits[top] = true
			}
		}
	}
}

// SetFromEmailDomain makes leads without a group call members of the account
// of their e-mail domain (identify traits.email), never of a free-mail
// domain (accounts.from-email-domain). Call it before using the core.
func (c *Core) SetFromEmailDomain(on bool) { c.fromDomain = on }

// SetMaxAccountMembers sets the entries an account keeps (tests; default
// DefaultMaxAccountMembers).
func (c *Core) SetMaxAccountMembers(n int) { c.maxMembers = max(n, 1) }

// accountOf is the account a lead's state makes it a member of: its latest
// group call's, else (with from-email-domain) its e-mail domain's; none for
// visitors, accounts and leads merged into another.
func (c *Core) accountOf(st *State) string {
	if st == nil || st.Anonymous || st.Account || st.Into != "" {
		return ""
	}
	if st.Group != nil {
		return st.Group.Account
	}
	if c.fromDomain && st.Domain != nil {
		return st.Domain.Account
	}
	return ""
}

// entryOf is a lead's behaviour value in each model that scores accounts.
func (c *Core) entryOf(st *State) []MemberValue {
	if st == nil {
		return nil
	}
	var out []MemberValue
	for i := range c.rules.Models {
		m := &c.rules.Models[i]
		if m.Accounts == nil {
			continue
		}
		if ms := st.Model(m.Name); ms != nil && (ms.V != 0 || ms.T != 0) {
			out = append(out, MemberValue{Model: m.Name, V: ms.V, T: ms.T})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Model < out[b].Model })
	return out
}

// membership applies what e says of st's account (Apply): a group call's
// groupId; with from-email-domain, an identify's e-mail domain.
func (c *Core) membership(st *State, e *event.Event, te int64) (bool, error) {
	switch {
	case e.Type == event.Group && e.GroupID != "":
		m := &Membership{Account: e.GroupID, Time: te, ID: e.ID}
		if m.newer(st.Group) {
			st.Group = m
			return true, nil
		}
	case c.fromDomain && e.Type == event.Identify && len(e.Traits) > 0:
		var t struct {
			Email any `json:"email"`
		}
		if err := json.Unmarshal(e.Traits, &t); err != nil {
			return false, fmt.Errorf("%w: %w", ErrBadTraits, err)
		}
		email, _ := t.Email.(string)
		if d := EmailDomainAccount(email); d != "" {
			m := &Membership{Account: d, Time: te, ID: e.ID}
			if m.newer(st.Domain) {
				st.Domain = m
				return true, nil
			}
		}
	}
	return false, nil
}

// mergeMembership keeps, of src's membership assertions, those newer than
// dst's (Merge).
func mergeMembership(dst, src *State) {
	if src.Group != nil && src.Group.newer(dst.Group) {
		g := *src.Group
		dst.Group = &g
	}
	if src.Domain != nil && src.Domain.newer(dst.Domain) {
		d := *src.Domain
		dst.Domain = &d
	}
	src.Group, src.Domain = nil, nil
}

// AccountOf is the account a lead is a member of, as its stored state says.
func AccountOf(st *State) string {
	if st == nil {
		return ""
	}
	return st.MemberOf
}

// Memberless reports whether an account's state has no live member: only
// traits (group calls of visitors who never became leads) and tombstones.
// The processor lets such a state expire like a visitor's (a browser key can
// name any group id), and keeps an account with members for ever.
func Memberless(st *State) bool {
	for i := range st.Members {
		if !st.Members[i].Left {
			return false
		}
	}
	return true
}

// Related are the subjects whose states planning an event of st's subject
// may need: the lead it was merged into, its account and the accounts it
// left. The processor reads them ahead.
func Related(st *State) []Subject {
	if st == nil {
		return nil
	}
	var out []Subject
	if st.Into != "" {
		out = append(out, Lead(st.Into))
	}
	if st.MemberOf != "" {
		out = append(out, Account(st.MemberOf))
	}
	for _, l := range st.Left {
		out = append(out, Account(l.Account))
	}
	return out
}

// setEntry stores a lead's entry in an account unless the account holds a
// later one (a higher Seq). It reports whether the account changed. An entry
// evicted at once still counts as a change: the account is written, and its
// compare-and-set checks the read it was planned from (a stale copy of a
// full account must not decide that a lead is gone from it).
func (c *Core) setEntry(acct *State, lead string, seq uint64, vals []MemberValue, left bool) bool {
	i, found := slices.BinarySearchFunc(acct.Members, lead, func(e AccountEntry, l string) int { return cmpString(e.Lead, l) })
	if found {
		cur := &acct.Members[i]
		if cur.Seq > seq || (cur.Seq == seq && cur.Left == left && sameValues(cur.Values, vals)) {
			return false
		}
		cur.Seq, cur.Left, cur.Values = seq, left, slices.Clone(vals)
		if left {
			cur.Values = nil
		}
		return true
	}
	e := AccountEntry{Lead: lead, Seq: seq, Left: left}
	if !left {
		e.Values = slices.Clone(vals)
	}
	acct.Members = slices.Insert(acct.Members, i, e)
	c.evict(acct)
	return true
}

func sameValues(a, b []MemberValue) bool {
	return slices.Equal(a, b)
}

// evict keeps an account within maxMembers entries: tombstones go first
// (lowest count first), then the members whose largest value contributes
// least. The account's times are taken once per entry evicted (an account at
// its limit pays this at every new entry: linear, not quadratic).
func (c *Core) evict(acct *State) {
	for len(acct.Members) > c.maxMembers {
		ts := make(map[string]int64, len(c.rules.Models))
		for _, m := range c.rules.Models {
			ts[m.Name] = c.accountT(acct, m.Name)
		}
		worst, worstLeft, worstV := -1, false, 0.0
		for i := range acct.Members {
			e := &acct.Members[i]
			v := 0.0
			for _, x := range e.Values {
				if m := c.rules.Model(x.Model); m != nil {
					v = max(v, ValueAt(x.V, x.T, ts[x.Model], m.HalfLife))
				}
			}
			switch {
			case worst < 0,
				e.Left && !worstLeft,
				e.Left && worstLeft && e.Seq < acct.Members[worst].Seq,
				!e.Left && !worstLeft && v < worstV:
				worst, worstLeft, worstV = i, e.Left, v
			}
		}
		acct.Members = slices.Delete(acct.Members, worst, worst+1)
	}
}

// accountT is an account's reference time in a model: its newest member time.
func (c *Core) accountT(acct *State, model string) int64 {
	var t int64
	for i := range acct.Members {
		if v, ok := acct.Members[i].value(model); ok && !acct.Members[i].Left {
			t = max(t, v.T)
		}
	}
	return t
}

// Engagement is an account's engagement in model m at time at (Unix ms):
// the sum over its members of their behaviour decayed to at, each at most
// member_cap; engaged counts the members at or over engaged_at; members are
// each member's part, largest first.
func Engagement(acct *State, m *Model, at int64) (sum float64, engaged int, members []event.Member) {
	a := m.Accounts
	if a == nil {
		return 0, 0, nil
	}
	for i := range acct.Members {
		e := &acct.Members[i]
		if e.Left {
			continue
		}
		v, ok := e.value(m.Name)
		x := 0.0
		if ok {
			x = ValueAt(v.V, v.T, at, m.HalfLife)
		}
		if x >= a.EngagedAt {
			engaged++
		}
		if a.MemberCap > 0 && x > a.MemberCap {
			x = a.MemberCap
		}
		sum += x
		members = append(members, event.Member{LeadID: e.Lead, Points: x})
	}
	sort.SliceStable(members, func(i, j int) bool { return members[i].Points > members[j].Points })
	return sum, engaged, members
}

// topMembers is how many members an MQA record lists.
const topMembers = 5

// refreshAccount recomputes an account's models after a change (a member's
// entry, its traits): fit, reference time and engagement. Whether the
// account crosses is decided once per event, over all its changes
// (accountCrossings).
func (c *Core) refreshAccount(acct *State) {
	var traits map[string]any
	for i := range c.rules.Models {
		m := &c.rules.Models[i]
		if m.Accounts == nil {
			continue
		}
		ms := acct.model(m.Name)
		ms.RulesHash = c.hashes[i]
		if traits == nil {
			traits = c.traitMap(acct)
		}
		ms.Fit, ms.FitReasons = m.Accounts.FitPoints(traits)
		ms.T = c.accountT(acct, m.Name)
		ms.V, _, _ = Engagement(acct, m, ms.T)
	}
}

// accountBefore is an account as it was before an event changed it: what
// accountCrossings compares the account after the event with.
type accountBefore struct {
	models []ModelState
	// members, kept only when a model is an MQA (its flag re-arms when the
	// score before the event, decayed to the event's time, is under
	// rearm_below).
	members []AccountEntry
}

func (c *Core) snapshotAccount(acct *State) *accountBefore {
	b := &accountBefore{models: slices.Clone(acct.Models)}
	for _, ms := range acct.Models {
		if ms.MQL {
			b.members = slices.Clone(acct.Members)
			break
		}
	}
	return b
}

// accountCrossings decides, once an event's changes to an account are all
// made, whether it crossed its threshold: at most once per model and event,
// attributed to trigger. The steps of one event (a merge removes a member's
// entry, then gives its survivor the sum) never re-arm the flag on their
// own: only the score before the event, decayed to the event's time, or the
// score after it, under rearm_below, does. Both are taken at the later of
// the account's time before and after, so a member leaving (the account's
// newest member time goes back to an older member's, whose value then reads
// undecayed) never makes a crossing.
func (c *Core) accountCrossings(acct *State, before *accountBefore, trigger string, te int64) []event.MQA {
	var out []event.MQA
	for i := range c.rules.Models {
		m := &c.rules.Models[i]
		a := m.Accounts
		if a == nil {
			continue
		}
		ms := acct.model(m.Name)
		var prev *ModelState
		for j := range before.models {
			if before.models[j].Name == m.Name {
				prev = &before.models[j]
			}
		}
		at := ms.T
		if prev != nil {
			at = max(at, prev.T)
		}
		sum, engaged, members := Engagement(acct, m, at)
		score := sum + ms.Fit
		mql := ms.MQL
		if mql && prev != nil && ms.MQLTrigger != trigger {
			was, _, _ := Engagement(&State{Members: before.members}, m, at)
			if was+prev.Fit < a.RearmBelow {
				mql = false // re-armed by decay before this event
			}
		}
		switch {
		case !mql && score >= a.Threshold && engaged >= a.MinEngaged:
			when := at
			if when == 0 {
				when = te
			}
			ms.MQL, ms.MQLAt, ms.MQLTrigger = true, when, trigger
			reasons := append([]event.Reason{}, ms.FitReasons...)
			if sum != 0 {
				reasons = append(reasons, event.Reason{Rule: "engagement", Points: sum})
			}
			event.SortReasons(reasons)
			top := members[:min(len(members), topMembers)]
			out = append(out, event.MQA{
				MQAID: event.MQAID(acct.ID, m.Name, trigger), AccountID: acct.ID, Model: m.Name,
				Score: score, Threshold: a.Threshold, CrossedAt: time.UnixMilli(when).UTC(),
				TriggerEventID: trigger, EngagedMembers: engaged, Reasons: reasons,
				TopMembers: slices.Clone(top),
			})
		case mql && score < a.RearmBelow, !mql:
			ms.MQL = false
		}
	}
	return out
}

// mergeAccountTraits keeps, of a group call's traits, those the account
// keeps (AccountTraitNames and what account fit rules read), each unless the
// account holds a later value already. It reports whether any changed.
func (c *Core) mergeAccountTraits(acct *State, raw json.RawMessage, te int64, id string) (bool, error) {
	in, err := DecodeTraits(raw)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrBadTraits, err)
	}
	changed := false
	for k := range c.acctTraits {
		v, ok := in[k]
		if !ok {
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return false, fmt.Errorf("%w: trait %q: %w", ErrBadTraits, k, err)
		}
		if len(b) > MaxTraitBytes {
			continue
		}
		t := &Trait{Value: b, Time: te, ID: id}
		if t.newer(acct.Traits[k]) {
			if acct.Traits == nil {
				acct.Traits = map[string]*Trait{}
			}
			acct.Traits[k] = t
			changed = true
		}
	}
	return changed, nil
}

// AccountTraits decodes an account's kept traits (the account API).
func AccountTraits(acct *State) map[string]any {
	out := make(map[string]any, len(acct.Traits))
	for k, t := range acct.Traits {
		var v any
		if json.Unmarshal(t.Value, &v) == nil {
			out[k] = v
		}
	}
	return out
}
