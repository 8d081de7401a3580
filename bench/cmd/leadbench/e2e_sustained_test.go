package main

import (
	"math"
	"testing"
	"time"
)

// A consumer that drains in batches has a sawtooth lag: only a rising floor
// is growth, whatever the phase and period of the teeth, in the full (8 s)
// and the quick (5.3 s) window.
func TestFloorGrowthIgnoresSawtooth(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	const rate = 10_000.0
	for _, window := range []time.Duration{8 * time.Second, 16 * time.Second / 3} {
		for _, period := range []time.Duration{time.Second, 1300 * time.Millisecond} {
			for _, drift := range []float64{0, 2000} {
				for _, phase := range []time.Duration{0, 300 * time.Millisecond, 700 * time.Millisecond} {
					var win []lagSample
					for d := time.Duration(0); d <= window; d += 250 * time.Millisecond {
						tooth := rate * ((d + phase) % period).Seconds() // input piling up until the next insert
						win = append(win, lagSample{at: t0.Add(d), sink: int64(tooth + drift*d.Seconds())})
					}
					got := floorGrowth(win, func(s lagSample) int64 { return s.sink })
					if math.Abs(got-drift) > 0.05*rate {
						t.Errorf("window %v period %v drift %v phase %v: floor growth %.0f/s", window, period, drift, phase, got)
					}
				}
			}
		}
	}
}
