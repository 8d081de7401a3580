package scoring

import (
	"encoding/json"
	"slices"
	"sort"
	"time"

	"github.com/leadstream/leadstream/event"
)

// Subject is whose state an event changes: a known lead (Segment userId), an
// anonymous visitor (a first-party cookie id) or a B2B account (Segment
// groupId, see accounts.go). The three are separate namespaces: the same
// string may name a lead, a visitor and an account. Anonymous and Account
// are never both set.
type Subject struct {
	ID        string
	Anonymous bool
	Account   bool
}

// Lead is the subject of a known lead.
func Lead(id string) Subject { return Subject{ID: id} }

// Anon is the subject of an anonymous visitor.
func Anon(id string) Subject { return Subject{ID: id, Anonymous: true} }

// Account is the subject of a B2B account.
func Account(id string) Subject { return Subject{ID: id, Account: true} }

// State is one subject's scoring state: everything scoring knows of a lead
// or visitor, bounded by the rules (models × rules, open cap windows, the
// traits fit rules read), never by the length of its history. Package
// leadstate stores it; Core changes it.
type State struct {
	Subject

	// Into is the lead this subject was merged into: a visitor that became
	// known, or a lead folded into another by alias. Its events score on
	// Into (follow Into until a subject without it: the survivor).
	Into string
	// Pending: the merge into Into is not complete yet, and Models and
	// Traits still hold the history to fold into it. MergeMark is the id
	// that marks the merge done in Into's dedup, at event time MergeTime.
	Pending   bool
	MergeMark string
	MergeTime int64

	// MaxTime is the newest event time (Unix ms) applied: an event id
	// with a later time cannot be in this subject's dedup.
	MaxTime int64

	// Recent is the dedup of the subject: the fingerprints of the ids it
	// applied whose bucket has not expired, up to InlineIDs; Spilled names
	// the buckets whose further ids are kept beside the state (see Write.Seen).
	Recent  []BucketIDs
	Spilled []int64

	Models []ModelState      // sorted by Name; an account's: its account models (V = engagement)
	Traits map[string]*Trait // only the traits a fit rule reads (see Core); an account's: see Core.AccountTraits

	// Accounts (accounts.go). A lead or visitor keeps the membership
	// assertions of its events (the latest of each kind wins); a lead the
	// account it is a member of, and a sequence number of its entry there.
	Group    *Membership    // the latest group call (Segment groupId)
	Domain   *Membership    // the latest e-mail domain (accounts.from-email-domain)
	MemberOf string         // the account whose member it is ("" = none)
	AcctSeq  uint64         // counts the changes of its entry in its account
	Left     []LeftAccount  // accounts it left whose removal is not yet seen stored
	Members  []AccountEntry // an account's: one per member (or recent leaver), sorted by Lead
}

// ModelState is a subject's state in one model.
type ModelState struct {
	Name      string
	RulesHash string // Model.Hash of the rules it was last scored with

	// V is the behaviour value as of event time T (Unix ms): the sum of the
	// scoring hits' points, each decayed from its event time to T (see Add).
	V float64
	T int64

	Fit        float64
	FitReasons []event.Reason

	MQL        bool
	MQLAt      int64  // event time of the last crossing
	MQLTrigger string // event id it is attributed to

	Rules map[string]RuleValue // per rule, its part of V (at its own reference time)
	Caps  map[CapKey][]CapHit  // per capped rule and open window: the hits that score
}

// RuleValue is one rule's decaying contribution: V as of event time T.
type RuleValue struct {
	V float64
	T int64
}

// CapKey is one fixed cap window of one rule: its start (Unix ms, see CapWindow).
type CapKey struct {
	Rule   string
	Window int64
}

// CapHit is one hit that scores in a cap window. A window's hits are the
// earliest Count by (Time, ID) of all that matched, whatever their arrival
// order.
type CapHit struct {
	Time   int64
	ID     string
	Points float64
}

func (h CapHit) before(t int64, id string) bool {
	return h.Time < t || (h.Time == t && h.ID < id)
}

// Trait is one profile trait of a lead: the value of the identify with the
// latest (Time, ID), so merging traits does not depend on arrival order.
type Trait struct {
	Value json.RawMessage // compact JSON
	Time  int64
	ID    string
}

func (t *Trait) newer(than *Trait) bool {
	return than == nil || t.Time > than.Time || (t.Time == than.Time && t.ID > than.ID)
}

// Survivor reports whether the subject scores its own events (it was not
// merged into another).
func (s *State) Survivor() bool { return s.Into == "" }

// Model returns the state of the named model, or nil.
func (s *State) Model(name string) *ModelState {
	i, ok := slices.BinarySearchFunc(s.Models, name, func(m ModelState, n string) int { return cmpString(m.Name, n) })
	if !ok {
		return nil
	}
	return &s.Models[i]
}

// model returns the state of the named model, created empty when missing.
func (s *State) model(name string) *ModelState {
	i, ok := slices.BinarySearchFunc(s.Models, name, func(m ModelState, n string) int { return cmpString(m.Name, n) })
	if !ok {
		s.Models = slices.Insert(s.Models, i, ModelState{Name: name})
	}
	return &s.Models[i]
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	if s == nil {
		return nil
	}
	c := *s
	c.Models = make([]ModelState, len(s.Models))
	for i := range s.Models {
		c.Models[i] = s.Models[i].clone()
	}
	if s.Recent != nil {
		c.Recent = make([]BucketIDs, len(s.Recent))
		for i, b := range s.Recent {
			c.Recent[i] = BucketIDs{Bucket: b.Bucket, IDs: slices.Clone(b.IDs)}
		}
	}
	c.Spilled = slices.Clone(s.Spilled)
	if s.Group != nil {
		g := *s.Group
		c.Group = &g
	}
	if s.Domain != nil {
		d := *s.Domain
		c.Domain = &d
	}
	c.Left = slices.Clone(s.Left)
	if s.Members != nil {
		c.Members = make([]AccountEntry, len(s.Members))
		for i, m := range s.Members {
			m.Values = slices.Clone(m.Values)
			c.Members[i] = m
		}
	}
	if s.Traits != nil {
		c.Traits = make(map[string]*Trait, len(s.Traits))
		for k, t := range s.Traits {
			tc := *t
			c.Traits[k] = &tc
		}
	}
	return &c
}

func (ms *ModelState) clone() ModelState {
	c := *ms
	c.FitReasons = slices.Clone(ms.FitReasons)
	if ms.Rules != nil {
		c.Rules = make(map[string]RuleValue, len(ms.Rules))
		for k, v := range ms.Rules {
			c.Rules[k] = v
		}
	}
	if ms.Caps != nil {
		c.Caps = make(map[CapKey][]CapHit, len(ms.Caps))
		for k, v := range ms.Caps {
			c.Caps[k] = slices.Clone(v)
		}
	}
	return c
}

// ScoreAt is a model's score at time at (Unix ms): behaviour decayed to it
// plus fit.
func (ms *ModelState) ScoreAt(at int64, halfLife time.Duration) float64 {
	return ValueAt(ms.V, ms.T, at, halfLife) + ms.Fit
}

// Reasons is each rule's points as of the model's reference time, largest
// first, then the fit reasons (the lead API's top_rules; an MQL record
// sorts them all together).
func (ms *ModelState) Reasons(halfLife time.Duration) []event.Reason {
	return ms.ReasonsAt(ms.T, halfLife)
}

// ReasonsAt is Reasons with each rule decayed to at (never before T, so the
// rules add up to the behaviour value at that time).
func (ms *ModelState) ReasonsAt(at int64, halfLife time.Duration) []event.Reason {
	at = max(at, ms.T)
	out := make([]event.Reason, 0, len(ms.Rules)+len(ms.FitReasons))
	for rule, rv := range ms.Rules {
		if pts := rv.V * DecayFactor(at-rv.T, halfLife); pts != 0 {
			out = append(out, event.Reason{Rule: rule, Points: pts})
		}
	}
	event.SortReasons(out)
	return append(out, ms.FitReasons...)
}

// capKeys returns the model's cap windows in a fixed order.
func (ms *ModelState) capKeys() []CapKey {
	keys := make([]CapKey, 0, len(ms.Caps))
	for k := range ms.Caps {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool {
		if keys[a].Rule != keys[b].Rule {
			return keys[a].Rule < keys[b].Rule
		}
		return keys[a].Window < keys[b].Window
	})
	return keys
}
