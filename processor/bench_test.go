package processor

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// BenchmarkScore measures the processor's Redis path on a single Redis
// (Scorer.Score: read the states, plan with the default rules, one
// compare-and-set per lead): batches of 1 (a round trip of each per event)
// and of 100 (as the processor per consumed batch). Each lead gets 5 page
// views (25 points) per batch, so no MQL is ever pending.
func BenchmarkScore(b *testing.B) {
	store := leadstatetest.Open(b, testsvc.Redis(b))
	sc := NewScorer(scoring.NewCore(scoring.Default(), testWindow), store, time.Hour)
	ctx := context.Background()
	for _, batch := range []int{1, 100} {
		b.Run("batch-"+strconv.Itoa(batch), func(b *testing.B) {
			prefix := newID("bench")
			evs := make([]*event.Event, batch)
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				for i := range evs {
					evs[i] = &event.Event{ID: prefix + "-e" + strconv.Itoa(n), Type: event.PageView, LeadID: prefix + "-" + strconv.Itoa(n/5),
						URL: "https://acme.example/docs/start", Path: "/docs/start", EventTime: t0.Add(time.Duration(n) * time.Second)}
					evs[i].ReceivedAt = evs[i].EventTime
					n++
				}
				res, err := sc.Score(ctx, evs, map[scoring.Subject]leadstate.Record{})
				if err != nil || res.Outcomes[batch-1] != scoring.Scored {
					b.Fatalf("Score = %+v, %v", res, err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
			b.Cleanup(func() {
				pipe := leadstatetest.Client(b, store).Pipeline()
				for l := 0; l <= n/5; l++ {
					pipe.Del(ctx, leadstatetest.Key(scoring.Lead(prefix+"-"+strconv.Itoa(l)), "s"))
				}
				_, _ = pipe.Exec(ctx)
			})
		})
	}
}
