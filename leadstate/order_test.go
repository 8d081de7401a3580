package leadstate_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// A lead's state depends only on the set of events it received: random event
// lists applied in random orders, with random redeliveries, to fresh leads end
// in the same (v, t), which is also what scoring.Add computes in Go. With
// positive points and no decay the score only grows, so the lead crosses its
// threshold the same number of times in every order. Half of the orders are
// applied through ApplyMany, which must not change any of this.
func TestApplyOrderIndependence(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		type ev struct {
			id   string
			hits []leadstate.Hit
		}
		const perms = 4
		f := func(seed uint64, positive bool, halfLife time.Duration) {
			t.Helper()
			r := rand.New(rand.NewPCG(seed, 0x1ead5))
			events := make([]ev, 20+r.IntN(41))
			var wantV, total float64
			var wantT int64
			for i := range events {
				te := ms(t0) + r.Int64N((90 * day).Milliseconds())
				events[i].id = fmt.Sprintf("e%d", i)
				for range 1 + r.IntN(2) {
					p := float64(1+r.IntN(40)) + float64(r.IntN(4))/4
					if !positive && r.IntN(3) == 0 {
						p = -p
					}
					events[i].hits = append(events[i].hits, leadstate.Hit{Rule: fmt.Sprintf("r%d", r.IntN(5)), Points: p, TimeMs: te})
					wantV, wantT = scoring.Add(wantV, wantT, p, te, halfLife)
					total += p
				}
			}
			// Rounding errors scale with the points involved, not with the
			// (possibly cancelling) result.
			mass := 0.0
			for _, e := range events {
				for _, h := range e.hits {
					mass += math.Abs(h.Points) * scoring.DecayFactor(wantT-h.TimeMs, halfLife)
				}
			}
			threshold := 100.0
			if positive {
				threshold = math.Round(total * (0.4 + 0.8*r.Float64()))
			}
			wantMQLs := int64(0)
			if positive && total >= threshold {
				wantMQLs = 1
			}
			var firstV float64
			for perm := range perms {
				lead := leadstate.Lead(newID("lead"))
				type op struct {
					e       ev
					applied bool
				}
				var ops []op
				var done []int
				for _, i := range r.Perm(len(events)) {
					ops = append(ops, op{events[i], true})
					done = append(done, i)
					if r.IntN(4) == 0 { // redelivery of an event already applied
						ops = append(ops, op{events[done[r.IntN(len(done))]], false})
					}
				}
				// Even permutations go through Apply, odd ones through ApplyMany
				// in random chunks (as the processor pipelines a batch).
				for len(ops) > 0 {
					n := 1
					if perm%2 == 1 {
						n = min(len(ops), 1+r.IntN(16))
					}
					us := make([]leadstate.Update, n)
					for k, o := range ops[:n] {
						us[k] = leadstate.Update{Subject: lead, DedupID: o.e.id, TriggerEventID: o.e.id,
							Models: []leadstate.ModelUpdate{model(halfLife, threshold, threshold/2, o.e.hits...)}}
					}
					var res []leadstate.Result
					if perm%2 == 0 {
						r0, err := leadstatetest.Apply(ctx, s, &us[0])
						if err != nil {
							t.Fatal(err)
						}
						res = []leadstate.Result{r0}
					} else {
						var err error
						if res, err = s.ApplyMany(ctx, us); err != nil {
							t.Fatal(err)
						}
					}
					for k, o := range ops[:n] {
						if res[k].Applied != o.applied {
							t.Fatalf("seed %d perm %d: %s applied = %v, want %v", seed, perm, o.e.id, res[k].Applied, o.applied)
						}
					}
					ops = ops[n:]
				}
				v, tm := vt(t, s, lead)
				if tm != wantT || !near(v, wantV, 1e-9, mass) {
					t.Fatalf("seed %d perm %d (%d events): (v, t) = (%v, %d), want (%v, %d) as computed by scoring.Add",
						seed, perm, len(events), v, tm, wantV, wantT)
				}
				if perm == 0 {
					firstV = v
				} else if !near(v, firstV, 1e-9, mass) {
					t.Fatalf("seed %d perm %d: v = %v, perm 0 gave %v", seed, perm, v, firstV)
				}
				if positive {
					if n := hlen(t, s, key(lead, "outbox")); n != wantMQLs {
						t.Fatalf("seed %d perm %d: %d MQL crossings, want %d (total %v, threshold %v)", seed, perm, n, wantMQLs, total, threshold)
					}
				}
			}
		}
		for seed := range uint64(30) {
			f(seed, false, hl)
		}
		for seed := range uint64(30) {
			f(1000+seed, true, 0)
		}
	})
}
