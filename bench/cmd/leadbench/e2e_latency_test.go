package main

import (
	"testing"
	"time"
)

// A slow probe lists when it was sent, its latency and the part of it
// until its request's 200; a probe whose answer was not seen says -1.
func TestSlowProbesSplitAtTheAnswer(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	s := newProbeSet()
	for i := range 20 {
		sent := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		key := string(rune('a' + i))
		s.add(key, uint64(i), sent)
		if i != 19 {
			s.answered(uint64(i), sent.Add(time.Duration(i)*time.Millisecond))
		}
		s.seen(key, sent.Add(time.Duration(10+i*10)*time.Millisecond))
	}
	s.answered(42, t0) // a request without a probe: ignored
	st := s.stats(t0, t0.Add(2*time.Second))
	if st.Probes != 20 || st.Missing != 0 {
		t.Fatalf("probes %d missing %d, want 20 and 0", st.Probes, st.Missing)
	}
	if len(st.Slow) != 1 {
		t.Fatalf("slow probes %v, want the one above p90", st.Slow)
	}
	if got := st.Slow[0]; got != [3]float64{1.9, 200, -1} {
		t.Errorf("slowest %v, want [1.9 200 -1] (no answer recorded)", got)
	}
	s2 := newProbeSet()
	s2.add("x", 7, t0)
	s2.answered(7, t0.Add(12300*time.Microsecond))
	s2.seen("x", t0.Add(50*time.Millisecond))
	for i := range 10 {
		k := string(rune('a' + i))
		s2.add(k, uint64(100+i), t0)
		s2.seen(k, t0.Add(10*time.Millisecond))
	}
	if got := s2.stats(t0, t0.Add(time.Second)).Slow; len(got) != 1 || got[0] != [3]float64{0, 50, 12.3} {
		t.Errorf("slow %v, want [[0 50 12.3]]", got)
	}
}
