package scoring

import (
	"math"
	"time"
)

// A lead's behaviour score in one model is stored as a pair (v, t): its value
// v as of event time t, in Unix milliseconds. Points p earned at event time te
// are worth p*2^(-(T-te)/halfLife) at a later time T, so a score is the sum of
// its events' decayed points. Keeping the state as of the latest event time
// seen (not wall-clock time) makes the update below commutative: the same set
// of events yields the same state in any arrival order, which is what lets
// the processor replay Kafka partitions and accept late events safely.

// DecayFactor returns 2^(-dt/halfLife): how much of a value survives dt
// milliseconds. It is 1 when halfLife is 0 (no decay) or dt <= 0, so a value
// never grows by moving back in time.
func DecayFactor(dtMillis int64, halfLife time.Duration) float64 {
	if halfLife <= 0 || dtMillis <= 0 {
		return 1
	}
	hlMillis := float64(halfLife) / float64(time.Millisecond)
	return math.Exp2(-float64(dtMillis) / hlMillis)
}

// Add is the commutative, order-independent state update: state (v at time t)
// plus points p at event time te.
// If te >= t: returns (v*DecayFactor(te-t) + p, te); else (v + p*DecayFactor(t-te), t).
//
// Start a new lead from (0, 0); since 0 decays to 0 the initial time does not
// matter.
func Add(v float64, t int64, p float64, te int64, halfLife time.Duration) (float64, int64) {
	if te >= t {
		return v*DecayFactor(te-t, halfLife) + p, te
	}
	return v + p*DecayFactor(t-te, halfLife), t
}

// ValueAt returns v, stored as of time t, decayed to time at. For at < t it
// returns v unchanged: the state already reflects a later event, and
// "un-decaying" it would overstate the score.
func ValueAt(v float64, t int64, at int64, halfLife time.Duration) float64 {
	if at <= t {
		return v
	}
	return v * DecayFactor(at-t, halfLife)
}

// CapWindow returns the start, in Unix milliseconds, of the fixed cap window
// containing event time te: floor(te / window) * window. Windows are aligned
// to the Unix epoch rather than to the first hit, so every processor derives
// the same window (and Redis counter key) for an event without coordination.
// Windows shorter than 1ms are treated as 1ms, the resolution of event time.
func CapWindow(te int64, window time.Duration) int64 {
	w := window.Milliseconds()
	if w <= 1 {
		return te
	}
	start := te / w * w
	if te < 0 && start != te {
		start -= w // Go division truncates toward zero; floor for pre-1970 times
	}
	return start
}
