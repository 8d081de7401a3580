package scoring

import (
	"time"

	"github.com/leadstream/leadstream/event"
)

// Replayer recomputes scores from an event history with the processor's own
// code (Core.Plan, Apply, Merge), its facts held in memory: dedup exact,
// every state at hand. Fed a history in any order, it ends in the state live
// scoring ends in (up to the MQL flags, which follow the order events were
// seen in). It is pure: no I/O, no clock.
type Replayer struct {
	core      *Core
	facts     memFacts
	crossings map[Subject]map[string]int // lead or account -> model -> crossings found
	outcomes  [Skipped + 1]int
	one       [1]*event.Event
}

// memFacts are facts held in memory: complete, so every answer is known.
type memFacts struct {
	states map[Subject]*State
	seen   map[Subject]map[Seen]bool // ids spilled beside states, by dedup bucket
}

func (m memFacts) State(s Subject) (*State, bool) { return m.states[s], true }

func (m memFacts) Applied(s Subject, fp uint64, b int64) (bool, bool) {
	return m.seen[s][Seen{FP: fp, Bucket: b}], true
}

// NewReplayer starts an empty replay with rules and a dedup window (0 = the default).
func NewReplayer(rules *Rules, dedupWindow time.Duration) *Replayer {
	return &Replayer{core: NewCore(rules, dedupWindow),
		facts:     memFacts{states: map[Subject]*State{}, seen: map[Subject]map[Seen]bool{}},
		crossings: map[Subject]map[string]int{}}
}

// Apply replays one event and returns what happened to it (Dead when it can
// never be applied: its error is dropped, as the processor dead-letters it).
func (r *Replayer) Apply(e *event.Event) Outcome {
	r.one[0] = e
	p := r.core.Plan(r.one[:], nil, r.facts, 0)
	if !p.Complete() {
		panic("BUG: a replay's facts are complete, yet the plan misses some")
	}
	r.Commit(p)
	o := p.Outcomes[0]
	r.outcomes[o]++
	return o
}

// Commit stores a complete plan's writes in memory, in phase order.
func (r *Replayer) Commit(p *Plan) {
	last := 0
	for _, w := range p.Writes {
		last = max(last, w.Phase)
	}
	for phase := 0; phase <= last; phase++ {
		for _, w := range p.Writes {
			if w.Phase != phase {
				continue
			}
			r.facts.states[w.Subject] = w.State
			if len(w.Seen) > 0 {
				ids := r.facts.seen[w.Subject]
				if ids == nil {
					ids = map[Seen]bool{}
					r.facts.seen[w.Subject] = ids
				}
				for _, s := range w.Seen {
					ids[s] = true // an id may be applied in several buckets
				}
			}
			for _, m := range w.MQAs {
				per := r.crossings[w.Subject]
				if per == nil {
					per = map[string]int{}
					r.crossings[w.Subject] = per
				}
				per[m.Model]++
			}
			for _, m := range w.MQLs {
				per := r.crossings[w.Subject]
				if per == nil {
					per = map[string]int{}
					r.crossings[w.Subject] = per
				}
				per[m.Model]++
			}
		}
	}
}

// States returns every replayed subject's state.
func (r *Replayer) States() map[Subject]*State { return r.facts.states }

// Spilled returns the ids a subject applied beyond those its state keeps,
// each with its dedup bucket.
func (r *Replayer) Spilled(s Subject) []Seen {
	out := make([]Seen, 0, len(r.facts.seen[s]))
	for id := range r.facts.seen[s] {
		out = append(out, id)
	}
	return out
}

// Crossings is how many MQL crossings the replay found for a lead in a model.
func (r *Replayer) Crossings(lead, model string) int { return r.crossings[Lead(lead)][model] }

// AccountCrossings is how many MQA crossings the replay found for an
// account in a model.
func (r *Replayer) AccountCrossings(account, model string) int {
	return r.crossings[Account(account)][model]
}

// Outcomes counts the replayed events by outcome.
func (r *Replayer) Outcomes(o Outcome) int { return r.outcomes[o] }

// Core is the core the replay scores with.
func (r *Replayer) Core() *Core { return r.core }
