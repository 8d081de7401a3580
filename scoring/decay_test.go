package scoring

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

const day = 24 * time.Hour

func TestDecayFactor(t *testing.T) {
	f := func(dt int64, hl time.Duration, want float64) {
		t.Helper()
		if got := DecayFactor(dt, hl); got != want {
			t.Errorf("DecayFactor(%d, %v) = %v, want %v", dt, hl, got, want)
		}
	}
	hl := 720 * time.Hour
	ms := hl.Milliseconds()
	f(ms, hl, 0.5)
	f(2*ms, hl, 0.25)
	f(10*ms, hl, 1.0/1024)
	f(ms/2, hl, math.Exp2(-0.5))
	f(0, hl, 1)
	f(-ms, hl, 1)
	f(ms, 0, 1)
	f(1000, time.Second, 0.5)
	f(math.MaxInt64, time.Millisecond, 0)
}

func TestAddAndValueAt(t *testing.T) {
	f := func(v float64, tt int64, p float64, te int64, hl time.Duration, wantV float64, wantT int64) {
		t.Helper()
		if gv, gt := Add(v, tt, p, te, hl); math.Abs(gv-wantV) > 1e-12 || gt != wantT {
			t.Errorf("Add(%v, %d, %v, %d, %v) = (%v, %d), want (%v, %d)", v, tt, p, te, hl, gv, gt, wantV, wantT)
		}
	}
	dms := day.Milliseconds()
	f(0, 0, 5, 1000, day, 5, 1000)          // new lead
	f(10, 0, 5, dms, day, 10, dms)          // one half-life later
	f(10, dms, 4, 0, day, 12, dms)          // late event: decayed to the state's time
	f(10, dms, 4, dms, day, 14, dms)        // same time
	f(10, 0, -20, 2*dms, day, -17.5, 2*dms) // negative points
	f(10, 5*dms, 4, 0, 0, 14, 5*dms)        // no decay

	g := func(v float64, tt, at int64, hl time.Duration, want float64) {
		t.Helper()
		if got := ValueAt(v, tt, at, hl); got != want {
			t.Errorf("ValueAt(%v, %d, %d, %v) = %v, want %v", v, tt, at, hl, got, want)
		}
	}
	g(100, 0, dms, day, 50)
	g(100, dms, 3*dms, day, 25)
	g(100, dms, 0, day, 100) // never decays backwards
	g(100, 0, 99*dms, 0, 100)
	g(-8, 0, 3*dms, day, -1)
}

// TestAddCommutes is the property the processor relies on: the final state
// depends only on the set of (points, time) events, not on their order.
func TestAddCommutes(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		hl := time.Duration(rng.IntN(60)) * day // 0 (no decay) included
		n := 1 + rng.IntN(40)
		ps, ts := make([]float64, n), make([]int64, n)
		base := int64(1.7e12) + rng.Int64N(1e11)
		for i := range n {
			ps[i] = rng.Float64()*100 - 40 // mostly positive, some negative
			ts[i] = base + rng.Int64N(180*day.Milliseconds())
			if i > 0 && rng.IntN(5) == 0 {
				ts[i] = ts[i-1] // equal times happen: batch imports
			}
		}
		// Closed form: every event decayed to the latest time.
		var tmax int64
		for _, te := range ts {
			tmax = max(tmax, te)
		}
		var want, scale float64
		for i := range n {
			c := ps[i] * DecayFactor(tmax-ts[i], hl)
			want += c
			scale += math.Abs(c)
		}
		for perm := range 5 {
			order := rng.Perm(n)
			var v float64
			var st int64
			for _, i := range order {
				v, st = Add(v, st, ps[i], ts[i], hl)
			}
			// Relative to the sum of magnitudes: with negative points the
			// total itself may cancel to near zero.
			if st != tmax || math.Abs(v-want) > 1e-9*scale {
				t.Fatalf("seed %d perm %d (hl %v, n %d): got (%v, %d), want (%v, %d)", seed, perm, hl, n, v, st, want, tmax)
			}
		}
	}
}

func TestCapWindow(t *testing.T) {
	f := func(te int64, w time.Duration, want int64) {
		t.Helper()
		if got := CapWindow(te, w); got != want {
			t.Errorf("CapWindow(%d, %v) = %d, want %d", te, w, got, want)
		}
	}
	dms := day.Milliseconds()
	f(0, day, 0)
	f(dms-1, day, 0)
	f(dms, day, dms)
	f(5*dms+123, day, 5*dms)
	f(1_700_000_123_456, time.Hour, 1_699_999_200_000)
	f(1_700_000_123_456, 90*time.Minute, 1_699_995_600_000)
	f(-1, day, -dms) // floor, not truncation
	f(-dms, day, -dms)
	f(12345, time.Millisecond, 12345)
	f(12345, time.Microsecond, 12345)
}

func BenchmarkAdd(b *testing.B) {
	v, t := 0.0, int64(0)
	te := int64(1_700_000_000_000)
	b.ReportAllocs()
	for b.Loop() {
		te += 60_000
		v, t = Add(v, t, 5, te, 720*time.Hour)
	}
	if v <= 0 || t != te {
		b.Fatal(v, t)
	}
}
