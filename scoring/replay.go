package scoring

import (
	"encoding/json"
	"sort"
	"strconv"
	"time"

	"github.com/leadstream/leadstream/event"
)

// Replayer recomputes scores from an event history with exactly the semantics
// of live scoring (the processor and its Redis script): dedup by event id,
// anonymous visitors scored on their own and folded into a lead when an event
// first carries both ids, caps in fixed event-time windows, fit from merged
// identify traits, MQL crossings and re-arming. Fed the events in the order the
// processor saw them, it ends in the state live scoring ended in; fed them in
// event-time order, it gives what live scoring would have produced had they
// arrived in that order. It is pure: no I/O, no clock.
type Replayer struct {
	rules  *Rules
	seen   map[string]map[string]bool // subject -> applied event ids
	states map[string]*SubjectState
	links  map[string]string // anonymous id -> lead
	traits map[string]map[string]any
	hits   []Hit
}

// SubjectState is the replayed state of one lead or anonymous visitor.
type SubjectState struct {
	ID        string
	Anonymous bool
	Models    map[string]*ModelState
	EventIDs  []string // applied event ids, in order
}

// ModelState mirrors one model hash of the live state.
type ModelState struct {
	V, Fit     float64
	T          int64 // reference time, Unix ms (newest event time seen)
	FitReasons []event.Reason
	MQL        bool
	MQLAt      int64
	MQLID      string // trigger event of the last crossing
	Rules      map[string]RuleValue
	Caps       map[string]int // "rule:windowStart" -> hits seen
	Crossings  []Crossing
}

// RuleValue is one rule's decaying contribution.
type RuleValue struct {
	V float64
	T int64
}

// Crossing is one threshold crossing found by the replay.
type Crossing struct {
	Trigger string
	At      int64
	Score   float64
}

// NewReplayer starts an empty replay with rules.
func NewReplayer(rules *Rules) *Replayer {
	return &Replayer{rules: rules, seen: map[string]map[string]bool{}, states: map[string]*SubjectState{},
		links: map[string]string{}, traits: map[string]map[string]any{}}
}

// Subjects returns every replayed subject, leads and anonymous visitors not
// (yet) linked, keyed by "lead:<id>" / "anon:<id>".
func (r *Replayer) Subjects() map[string]*SubjectState { return r.states }

// Apply replays one event.
func (r *Replayer) Apply(e *event.Event) {
	if e.Bot {
		return
	}
	anon := e.AnonymousID
	if e.Type == event.Alias && e.PreviousID != "" {
		anon = e.PreviousID
	}
	var subj *SubjectState
	switch {
	case e.LeadID == "" && r.links[anon] != "":
		subj = r.subject(r.links[anon], false)
	case e.LeadID == "":
		subj = r.subject(anon, true)
	default:
		subj = r.subject(e.LeadID, false)
		if anon != "" && anon != e.LeadID && r.links[anon] != e.LeadID {
			r.merge(anon, subj, e.ID)
		}
	}
	var traits map[string]any
	if e.Type == event.Identify && len(e.Traits) > 0 && !subj.Anonymous {
		traits = r.mergeTraits(subj.ID, e.Traits)
	}
	te := e.EventTime.UnixMilli()
	var mods []modelUpdate
	for i := range r.rules.Models {
		m := &r.rules.Models[i]
		r.hits = m.Match(e, r.hits[:0])
		mu := modelUpdate{model: m}
		for _, h := range r.hits {
			mu.hits = append(mu.hits, hitAt{rule: h.Name, points: h.Points, te: te, cap: h.Cap})
		}
		if traits != nil {
			fit, reasons := m.FitPoints(traits)
			mu.fit, mu.fitReasons, mu.fitTime = &fit, reasons, te
		}
		if len(mu.hits) > 0 || mu.fit != nil {
			mods = append(mods, mu)
		}
	}
	if len(mods) > 0 {
		r.apply(subj, e.ID, e.ID, nil, mods)
	}
}

type hitAt struct {
	rule   string
	points float64
	te     int64
	cap    *Cap
}

type modelUpdate struct {
	model      *Model
	hits       []hitAt
	fit        *float64
	fitReasons []event.Reason
	fitTime    int64
}

func (r *Replayer) subject(id string, anonymous bool) *SubjectState {
	key := "lead:" + id
	if anonymous {
		key = "anon:" + id
	}
	s := r.states[key]
	if s == nil {
		s = &SubjectState{ID: id, Anonymous: anonymous, Models: map[string]*ModelState{}}
		r.states[key] = s
		r.seen[key] = map[string]bool{}
	}
	return s
}

func subjectKey(s *SubjectState) string {
	if s.Anonymous {
		return "anon:" + s.ID
	}
	return "lead:" + s.ID
}

// merge folds an anonymous visitor into a lead, as the processor does: its
// per-rule values become hits of the lead (no caps), its event ids join the
// lead's, and the link is set.
func (r *Replayer) merge(anon string, lead *SubjectState, trigger string) {
	a := r.states["anon:"+anon]
	var extra []string
	var mods []modelUpdate
	if a != nil {
		extra = a.EventIDs
		for i := range r.rules.Models {
			m := &r.rules.Models[i]
			ms := a.Models[m.Name]
			if ms == nil || len(ms.Rules) == 0 {
				continue
			}
			names := make([]string, 0, len(ms.Rules))
			for n := range ms.Rules {
				names = append(names, n)
			}
			sort.Strings(names) // the processor folds them in rule-name order too
			mu := modelUpdate{model: m}
			for _, n := range names {
				mu.hits = append(mu.hits, hitAt{rule: n, points: ms.Rules[n].V, te: ms.Rules[n].T})
			}
			mods = append(mods, mu)
		}
	}
	r.apply(lead, "merge:"+anon, trigger, extra, mods)
	r.links[anon] = lead.ID
	delete(r.states, "anon:"+anon)
	delete(r.seen, "anon:"+anon)
}

// apply mirrors the Redis apply script.
func (r *Replayer) apply(s *SubjectState, dedupID, trigger string, extraSeen []string, mods []modelUpdate) {
	seen := r.seen[subjectKey(s)]
	if seen[dedupID] {
		return
	}
	seen[dedupID] = true
	s.EventIDs = append(s.EventIDs, dedupID)
	for _, id := range extraSeen {
		if !seen[id] {
			seen[id] = true
			s.EventIDs = append(s.EventIDs, id)
		}
	}
	for _, mu := range mods {
		m := mu.model
		ms := s.Models[m.Name]
		if ms == nil {
			ms = &ModelState{Rules: map[string]RuleValue{}, Caps: map[string]int{}}
			s.Models[m.Name] = ms
		}
		changed := false
		for _, h := range mu.hits {
			if h.cap != nil {
				key := h.rule + ":" + strconv.FormatInt(CapWindow(h.te, h.cap.Window), 10)
				ms.Caps[key]++
				if ms.Caps[key] > h.cap.Count {
					continue
				}
			}
			ms.V, ms.T = Add(ms.V, ms.T, h.points, h.te, m.HalfLife)
			rv := ms.Rules[h.rule]
			rv.V, rv.T = Add(rv.V, rv.T, h.points, h.te, m.HalfLife)
			ms.Rules[h.rule] = rv
			changed = true
		}
		if mu.fit != nil {
			ms.Fit, ms.FitReasons = *mu.fit, mu.fitReasons
			if mu.fitTime > 0 {
				ms.V, ms.T = Add(ms.V, ms.T, 0, mu.fitTime, m.HalfLife)
			}
			changed = true
		}
		if !changed || s.Anonymous || m.Threshold <= 0 {
			continue
		}
		score := ms.V + ms.Fit
		switch {
		case !ms.MQL && score >= m.Threshold:
			ms.MQL, ms.MQLAt, ms.MQLID = true, ms.T, trigger
			ms.Crossings = append(ms.Crossings, Crossing{Trigger: trigger, At: ms.T, Score: score})
		case ms.MQL && score < m.RearmBelow:
			ms.MQL = false
		}
	}
}

func (r *Replayer) mergeTraits(lead string, raw json.RawMessage) map[string]any {
	incoming, err := DecodeTraits(raw)
	if err != nil {
		return nil
	}
	t := r.traits[lead]
	if t == nil {
		t = make(map[string]any, len(incoming))
		r.traits[lead] = t
	}
	for k, v := range incoming {
		t[k] = v
	}
	return t
}

// ScoreAt is a model's score at time at (Unix ms): behaviour decayed to it plus fit.
func (ms *ModelState) ScoreAt(at int64, halfLife time.Duration) float64 {
	return ValueAt(ms.V, ms.T, at, halfLife) + ms.Fit
}
