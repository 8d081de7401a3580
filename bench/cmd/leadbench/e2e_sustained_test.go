package main

import (
	"math"
	"testing"
	"time"
)

// A consumer that drains once per second has a sawtooth lag: only a rising
// floor is growth.
func TestTroughSlopeIgnoresSawtooth(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	for _, drift := range []float64{0, 2000} {
		for _, phase := range []time.Duration{0, 300 * time.Millisecond, 700 * time.Millisecond} {
			var win []lagSample
			for i := range 33 { // 8 s of samples every 250 ms
				d := time.Duration(i) * 250 * time.Millisecond
				tooth := float64((d+phase)%time.Second) / float64(time.Second) * 10_000 // 0 → 10k over each second
				win = append(win, lagSample{at: t0.Add(d), sink: int64(tooth + drift*d.Seconds())})
			}
			raw := slopeOfAll(win)
			got := slope(troughs(win, func(s lagSample) int64 { return s.sink }))
			if math.Abs(got-drift) > 0.05*10_000 {
				t.Errorf("drift %v phase %v: trough slope %.0f/s (raw slope %.0f/s)", drift, phase, got, raw)
			}
		}
	}
}

func slopeOfAll(win []lagSample) float64 {
	var pts []lagPoint
	for _, s := range win {
		pts = append(pts, lagPoint{at: s.at, lag: s.sink})
	}
	return slope(pts)
}
