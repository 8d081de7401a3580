package scoring

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/leadstream/leadstream/event"
)

// DefaultDedupWindow is how long an event id is remembered (processor.dedup-window).
const DefaultDedupWindow = 30 * 24 * time.Hour

// DefaultAnonymousTTL is how long a visitor without events is kept (processor.anonymous-ttl).
const DefaultAnonymousTTL = 400 * 24 * time.Hour

// MaxTraitBytes is the largest trait value (compact JSON) kept for fit
// scoring; a larger value is ignored, as if the identify had not sent it.
const MaxTraitBytes = 1024

// ErrBadTraits means an identify's traits are not a JSON object of finite
// values: the event can never be applied (the processor dead-letters it).
var ErrBadTraits = errors.New("traits cannot be scored")

// Core is the one implementation of scoring: what an event does to a
// subject's state (decay, caps, fit, threshold, re-arm, MQL crossing,
// reasons), what merging two subjects does, and which events are too late to
// score. The processor runs it on states read from Redis; `rescore` runs it
// on the history in ClickHouse. It is pure: times are arguments.
//
// The state a set of events leads to does not depend on their order:
// behaviour points decay by event time (Add is commutative), a cap window
// scores the earliest Count hits by (event time, event id) — an earlier hit
// arriving late displaces the latest one that scored, whose decayed points
// are taken back —, traits keep the value of the latest identify, and a merge
// is the union of two histories. Only the MQL flag follows the arrival order
// (a crossing is published when it is seen, and never taken back).
type Core struct {
	rules  *Rules
	window time.Duration // dedup window W
	bucket int64         // dedup bucket length B, ms
	hashes []string      // Model.Hash per model
	traits map[string]bool
	hits   []Hit // scratch
	aud    audienceMatcher
	ahits  []Hit // scratch of aud

	// Accounts (accounts.go).
	fromDomain bool
	maxMembers int
	acctTraits map[string]bool
}

// NewCore returns the core for rules with a dedup window (DefaultDedupWindow
// when 0).
func NewCore(rules *Rules, dedupWindow time.Duration) *Core {
	if dedupWindow <= 0 {
		dedupWindow = DefaultDedupWindow
	}
	c := &Core{rules: rules, window: dedupWindow, traits: map[string]bool{}}
	c.bucket = max(dedupWindow.Milliseconds()/8, 1000)
	c.aud = newAudienceMatcher(rules)
	for i := range rules.Models {
		m := &rules.Models[i]
		c.hashes = append(c.hashes, m.Hash())
		for _, f := range m.Fit {
			top, _, _ := strings.Cut(f.Trait, ".")
			c.traits[top] = true
		}
	}
	c.initAccounts()
	return c
}

// Clone returns a core sharing c's rules with scratch space of its own: a
// Core is not safe for concurrent use, its clones are.
func (c *Core) Clone() *Core {
	d := *c
	d.hits, d.ahits = nil, nil
	return &d
}

// Rules returns the rules the core scores with.
func (c *Core) Rules() *Rules { return c.rules }

// DedupWindow is W: an event id is remembered at least W after its event
// time, and an event more than W older than its receipt does not score.
func (c *Core) DedupWindow() time.Duration { return c.window }

// Late reports whether e is too late to score: its event time is more than
// the dedup window before its received time (to the second, as ClickHouse
// stores it). It depends on the event alone, so live scoring and `rescore`
// agree; such events are stored, never scored.
func (c *Core) Late(e *event.Event) bool {
	received := e.ReceivedAt.Truncate(time.Second)
	return e.EventTime.Before(received.Add(-c.window))
}

// Bucket is the dedup bucket of an event time: ids are remembered in sets
// per bucket of length max(W/8, 1 s) of event time.
func (c *Core) Bucket(te int64) int64 {
	b := te / c.bucket
	if te < 0 && b*c.bucket != te {
		b--
	}
	return b
}

// bucketSlack is how close to an edge of its dedup bucket an event time
// lies for the bucket across that edge to be checked too (Neighbour).
const bucketSlack = 10_000 // ms

const hourMs = 3_600_000

// Neighbour returns the other dedup bucket an event id of time te may have
// been recorded in: the previous or the next one when te lies within
// min(10 s, a quarter bucket) of that edge. A resent event's time moves a
// little between sends — the clock-skew correction (received − sentAt)
// changes with the network latency of each send — and may so cross an edge.
// When buckets are not whole hours (a window that is not a multiple of 8 h),
// within min(1 h, a quarter bucket): the collector gives a form post and an
// email open or click one id per clock hour, and an edge may then fall
// inside that hour.
func (c *Core) Neighbour(te int64) (int64, bool) {
	slack := min(bucketSlack, c.bucket/4)
	if c.bucket%hourMs != 0 {
		slack = max(slack, min(hourMs, c.bucket/4))
	}
	b := c.Bucket(te)
	start := b * c.bucket
	switch {
	case te-start < slack:
		return b - 1, true
	case start+c.bucket-te <= slack:
		return b + 1, true
	}
	return 0, false
}

// BucketExpiry is when (Unix ms) the ids of a bucket may be forgotten: two
// windows after its end. An event that scores is received at most W after
// its event time, and is processed within W of that unless the processor lags
// behind by more than W (see Stale).
func (c *Core) BucketExpiry(bucket int64) int64 {
	return (bucket+1)*c.bucket + 2*c.window.Milliseconds()
}

// Stale reports whether an event of time te processed at now could find its
// dedup bucket already forgotten (the processor lagged more than the dedup
// window behind): such an event is not scored, so nothing is ever counted
// twice. now is the processor's clock, not part of the event, so this is the
// one rule `rescore` does not apply.
//
// The bucket checked is the earlier of te's and its neighbour's (an event
// by the start of its bucket is checked in the previous one too, which is
// forgotten one bucket sooner).
func (c *Core) Stale(te, now int64) bool {
	margin := min(c.window.Milliseconds()/2, time.Minute.Milliseconds())
	b := c.Bucket(te)
	if nb, ok := c.Neighbour(te); ok {
		b = min(b, nb)
	}
	return now >= c.BucketExpiry(b)-margin
}

// Relevant reports whether e can change any state: it matches a rule of some
// model or an audience's condition, carries traits, or links identities
// (both ids, or alias). Other events need no state read at all.
func (c *Core) Relevant(e *event.Event) bool {
	if (e.LeadID != "" && e.AnonymousID != "") || e.Type == event.Alias || e.Type == event.Group || (e.Type == event.Identify && len(e.Traits) > 0) {
		return true
	}
	for i := range c.rules.Models {
		if c.hits = c.rules.Models[i].Match(e, c.hits[:0]); len(c.hits) > 0 {
			return true
		}
	}
	return c.audienceRelevant(e)
}

// Apply applies e to st, the subject e resolved to; e must not be late, nor a
// duplicate of an event st already applied. It reports whether st changed
// (only then must its id be remembered) and the MQL crossings it caused.
func (c *Core) Apply(st *State, e *event.Event) (changed bool, mqls []event.MQL, err error) {
	te := e.EventTime.UnixMilli()
	if changed, err = c.membership(st, e, te); err != nil {
		return false, nil, err
	}
	// A visitor keeps the traits a fit rule reads too: they count for its
	// lead once it is merged (Merge), as they count when the identify
	// arrives after the link, so arrival order does not matter.
	if e.Type == event.Identify && len(e.Traits) > 0 {
		kept, err := c.mergeTraits(st, e.Traits, te, e.ID)
		if err != nil {
			return false, nil, err
		}
		changed = changed || kept
	}
	traitsEvent := e.Type == event.Identify && len(e.Traits) > 0
	fitEvent := traitsEvent && !st.Anonymous
	var traits map[string]any
	for i := range c.rules.Models {
		m := &c.rules.Models[i]
		c.hits = m.Match(e, c.hits[:0])
		if len(c.hits) == 0 && !traitsEvent {
			continue
		}
		ms := st.model(m.Name)
		if traitsEvent && st.Anonymous {
			// Its time is folded in as on a lead (below), so that the
			// lead it merges into ends the same whichever came first.
			ms.V, ms.T = Add(ms.V, ms.T, 0, te, m.HalfLife)
			changed = true
		}
		c.rearmAt(st, m, ms, te, e.ID)
		mchanged := false
		for _, h := range c.hits {
			if c.hit(ms, m, h.Name, h.Cap, CapHit{Time: te, ID: e.ID, Points: h.Points}) {
				mchanged = true
			}
		}
		if fitEvent {
			// The fit counts from its event's time: fold that time in as
			// 0 points (commutative like any hit), so the threshold is
			// checked on the behaviour decayed to it.
			ms.V, ms.T = Add(ms.V, ms.T, 0, te, m.HalfLife)
			if traits == nil {
				traits = c.traitMap(st)
			}
			ms.Fit, ms.FitReasons = m.FitPoints(traits)
			mchanged = true
		}
		if mchanged {
			changed = true
			ms.RulesHash = c.hashes[i]
			if x := c.check(st, m, ms, e.ID); x != nil {
				mqls = append(mqls, *x)
			}
		}
	}
	if c.applyAudiences(st, e, te) {
		changed = true
	}
	if changed {
		st.MaxTime = max(st.MaxTime, te)
	}
	return changed, mqls, nil
}

// hit scores one hit of a rule. Uncapped, it always scores. Capped, it scores
// when it is among the earliest Count of its window by (time, id); the hit it
// pushes out of them, if any, is taken back.
//
// Every matching hit moves the model's reference time to its event time
// (T is the newest matching event time, whether it scored or not), so T does
// not depend on which hits arrived first either.
func (c *Core) hit(ms *ModelState, m *Model, rule string, cp *Cap, h CapHit) bool {
	if cp == nil {
		ms.add(rule, h.Points, h.Time, m.HalfLife)
		return true
	}
	key := CapKey{Rule: rule, Window: CapWindow(h.Time, cp.Window)}
	list := ms.Caps[key]
	pos := sort.Search(len(list), func(i int) bool { return !list[i].before(h.Time, h.ID) })
	if pos < len(list) && list[pos].Time == h.Time && list[pos].ID == h.ID {
		return false // scores already
	}
	if pos >= cp.Count {
		// Later than the Count that score: only the reference time moves.
		if h.Time <= ms.T {
			return false
		}
		ms.V, ms.T = Add(ms.V, ms.T, 0, h.Time, m.HalfLife)
		return true
	}
	list = slices.Insert(list, pos, h)
	ms.add(rule, h.Points, h.Time, m.HalfLife)
	if len(list) > cp.Count {
		// One hit, or more when the rules file lowered the count since
		// this window filled: each takes its points back.
		for _, out := range list[cp.Count:] {
			ms.sub(rule, out.Points, out.Time, m.HalfLife)
		}
		list = list[:cp.Count:cp.Count]
	}
	if ms.Caps == nil {
		ms.Caps = map[CapKey][]CapHit{}
	}
	ms.Caps[key] = list
	return true
}

// add folds points p at event time te into the model and the rule's value.
func (ms *ModelState) add(rule string, p float64, te int64, hl time.Duration) {
	ms.V, ms.T = Add(ms.V, ms.T, p, te, hl)
	if ms.Rules == nil {
		ms.Rules = map[string]RuleValue{}
	}
	rv := ms.Rules[rule]
	rv.V, rv.T = Add(rv.V, rv.T, p, te, hl)
	ms.Rules[rule] = rv
}

// sub takes back points p of event time te, added before (so te <= T).
func (ms *ModelState) sub(rule string, p float64, te int64, hl time.Duration) {
	ms.V -= p * DecayFactor(ms.T-te, hl)
	rv := ms.Rules[rule]
	rv.V -= p * DecayFactor(rv.T-te, hl)
	ms.Rules[rule] = rv
}

// rearmAt drops a lead's MQL flag when its score, decayed to te (an event's
// time, before that event's points), fell below the model's rearm_below: a
// lead that decayed from its crossing to nearly nothing and is lifted over
// the threshold again by one event crosses again (check only sees the score
// after the points). Times at or before the model's reference time change
// nothing: the value is known as of that time only.
//
// A flag this very event set (a merge it completed crossed) stays: one
// event crosses a lead's model at most once, as mql_id (lead, model,
// trigger) requires.
func (c *Core) rearmAt(st *State, m *Model, ms *ModelState, te int64, trigger string) {
	if st.Anonymous || !ms.MQL || te <= ms.T || ms.MQLTrigger == trigger {
		return
	}
	if ValueAt(ms.V, ms.T, te, m.HalfLife)+ms.Fit < m.RearmBelow {
		ms.MQL = false
	}
}

// check finds an MQL crossing (or a re-arm) of a lead's model after a change.
func (c *Core) check(st *State, m *Model, ms *ModelState, trigger string) *event.MQL {
	if st.Anonymous || m.Threshold <= 0 {
		return nil
	}
	score := ms.V + ms.Fit
	switch {
	case !ms.MQL && score >= m.Threshold && ms.MQLTrigger != trigger: // once per event: its mql_id
		ms.MQL, ms.MQLAt, ms.MQLTrigger = true, ms.T, trigger
		reasons := ms.Reasons(m.HalfLife)
		event.SortReasons(reasons) // behaviour and fit together, most points first
		return &event.MQL{
			MQLID: event.MQLID(st.ID, m.Name, trigger), LeadID: st.ID, Model: m.Name,
			Score: score, Threshold: m.Threshold, CrossedAt: time.UnixMilli(ms.T).UTC(),
			TriggerEventID: trigger, Reasons: reasons,
		}
	case ms.MQL && score < m.RearmBelow:
		ms.MQL = false
	}
	return nil
}

// mergeTraits keeps, of an identify's traits, those a fit rule reads, each
// unless the lead holds a later value already.
func (c *Core) mergeTraits(st *State, raw json.RawMessage, te int64, id string) (kept bool, err error) {
	in, err := DecodeTraits(raw)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrBadTraits, err)
	}
	for k := range c.traits {
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
		if t.newer(st.Traits[k]) {
			if st.Traits == nil {
				st.Traits = map[string]*Trait{}
			}
			st.Traits[k] = t
			kept = true
		}
	}
	return kept, nil
}

// traitMap decodes a lead's kept traits for FitPoints.
func (c *Core) traitMap(st *State) map[string]any {
	out := make(map[string]any, len(st.Traits))
	for k, t := range st.Traits {
		var v any
		if json.Unmarshal(t.Value, &v) == nil {
			out[k] = v
		}
	}
	return out
}

// Merge folds src, a subject merged into dst (a visitor that identified, or
// a lead aliased into another), into dst: dst ends as if src's events had
// been its own. trigger and te are the event that caused the merge, to which
// a crossing is attributed. src is left empty (its history now lives in dst).
func (c *Core) Merge(dst, src *State, trigger string, te int64) []event.MQL {
	var mqls []event.MQL
	mergeMembership(dst, src)
	traitsChanged := false
	for k, t := range src.Traits {
		if t.newer(dst.Traits[k]) {
			if dst.Traits == nil {
				dst.Traits = map[string]*Trait{}
			}
			dst.Traits[k] = t
			traitsChanged = true
		}
	}
	var traits map[string]any
	for i := range c.rules.Models {
		m := &c.rules.Models[i]
		sm := src.Model(m.Name)
		if sm == nil && !traitsChanged {
			continue
		}
		dm := dst.model(m.Name)
		if sm != nil {
			// No re-arm by decay here: dst's value alone decayed to src's
			// time says nothing of the combined history (src's earlier
			// points); check below re-arms on the merged score.
			c.mergeModel(dm, sm, m)
		}
		if traitsChanged {
			if traits == nil {
				traits = c.traitMap(dst)
			}
			dm.Fit, dm.FitReasons = m.FitPoints(traits)
		}
		dm.RulesHash = c.hashes[i]
		if x := c.check(dst, m, dm, trigger); x != nil {
			mqls = append(mqls, *x)
		}
	}
	c.mergeAudiences(dst, src)
	dst.MaxTime = max(dst.MaxTime, src.MaxTime)
	src.Models, src.Traits, src.Pending = nil, nil, false
	return mqls
}

// mergeModel adds sm's history to dm: each rule's value, its capped hits
// through the cap (the union of two windows scores its earliest Count).
func (c *Core) mergeModel(dm, sm *ModelState, m *Model) {
	hl := m.HalfLife
	dm.V, dm.T = Add(dm.V, dm.T, 0, sm.T, hl) // the newest time either has seen
	byRule := map[string][]CapHit{}
	for _, k := range sm.capKeys() {
		byRule[k.Rule] = append(byRule[k.Rule], sm.Caps[k]...)
	}
	rules := make([]string, 0, len(sm.Rules))
	for r := range sm.Rules {
		rules = append(rules, r)
	}
	sort.Strings(rules) // a fixed order keeps float sums reproducible
	for _, r := range rules {
		rv := sm.Rules[r]
		cp := c.capOf(m, r)
		residual := rv.V // what no open window accounts for: uncapped hits, closed windows
		if cp != nil {
			for _, h := range byRule[r] {
				residual -= h.Points * DecayFactor(rv.T-h.Time, hl)
			}
		}
		d := dm.Rules[r]
		d.V, d.T = Add(d.V, d.T, 0, rv.T, hl)
		if dm.Rules == nil {
			dm.Rules = map[string]RuleValue{}
		}
		dm.Rules[r] = d
		dm.add(r, residual, rv.T, hl)
		if cp != nil {
			for _, h := range byRule[r] {
				c.hit(dm, m, r, cp, h)
			}
		}
	}
}

// capOf returns the cap of model m's rule named r, or nil.
func (c *Core) capOf(m *Model, r string) *Cap {
	for i := range m.Rules {
		if m.Rules[i].Name == r {
			return m.Rules[i].Cap
		}
	}
	return nil
}

// Prune forgets the cap windows of st that no event can score in any more
// as of now (Unix ms): an event scores only before its dedup bucket expires
// (see Stale), so a window that ended more than two dedup windows and a
// bucket ago is closed. The hits of a closed window stay in the values.
//
// It also forgets the ids of expired dedup buckets, and audience hits that
// can no longer count.
func (c *Core) Prune(st *State, now int64) {
	c.pruneAudiences(st, now)
	st.Recent = slices.DeleteFunc(st.Recent, func(b BucketIDs) bool { return c.BucketExpiry(b.Bucket) <= now })
	st.Spilled = slices.DeleteFunc(st.Spilled, func(b int64) bool { return c.BucketExpiry(b) <= now })
	if len(st.Recent) == 0 {
		st.Recent = nil
	}
	if len(st.Spilled) == 0 {
		st.Spilled = nil
	}
	horizon := now - 2*c.window.Milliseconds() - c.bucket
	for i := range st.Models {
		ms := &st.Models[i]
		m := c.rules.Model(ms.Name)
		for k := range ms.Caps {
			var length int64
			if m != nil {
				if cp := c.capOf(m, k.Rule); cp != nil {
					length = cp.Window.Milliseconds()
				}
			}
			if k.Window+length <= horizon {
				delete(ms.Caps, k)
			}
		}
	}
}
