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

// BenchmarkProcessorApply measures the processor's per-event Redis path on a
// single Redis: match a page view against the default rules, build the update
// and run the apply script (dedup, points, threshold check). "Apply" is one
// round trip per event; "ApplyMany-100" pipelines batches of 100 as the
// processor does per consumed batch. Each lead gets 5 views (25 points), so no
// MQL is ever pending.
func BenchmarkProcessorApply(b *testing.B) {
	store := leadstatetest.Open(b, testsvc.Redis(b))
	rules := scoring.Default()
	m := &rules.Models[0]
	ctx := context.Background()
	build := func(n int, prefix string, hits []scoring.Hit) (leadstate.Update, []scoring.Hit) {
		e := event.Event{ID: prefix + "-e" + strconv.Itoa(n), Type: event.PageView, LeadID: prefix + "-" + strconv.Itoa(n/5),
			URL: "https://acme.example/docs/start", Path: "/docs/start", EventTime: t0.Add(time.Duration(n) * time.Second)}
		hits = m.Match(&e, hits[:0])
		mu := leadstate.ModelUpdate{Name: m.Name, HalfLife: m.HalfLife, Threshold: m.Threshold, RearmBelow: m.RearmBelow}
		for _, h := range hits {
			mu.Hits = append(mu.Hits, leadstate.Hit{Rule: h.Name, Points: h.Points, TimeMs: e.EventTime.UnixMilli()})
		}
		return leadstate.Update{Subject: leadstate.Lead(e.LeadID), DedupID: e.ID, TriggerEventID: e.ID, Models: []leadstate.ModelUpdate{mu}}, hits
	}
	// cleanup deletes the benchmark's leads from the shared server.
	cleanup := func(b *testing.B, prefix string, events int) {
		b.Cleanup(func() {
			pipe := leadstatetest.Client(b, store).Pipeline()
			for l := 0; l <= events/5; l++ {
				id := "{" + prefix + "-" + strconv.Itoa(l) + "}"
				pipe.Del(ctx, "ls:"+id+":seen", "ls:"+id+":m:"+m.Name, "ls:"+id+":outbox")
			}
			_, _ = pipe.Exec(ctx)
		})
	}

	b.Run("Apply", func(b *testing.B) {
		prefix := newID("bench")
		var hits []scoring.Hit
		n := 0
		b.ReportAllocs()
		for b.Loop() {
			var u leadstate.Update
			u, hits = build(n, prefix, hits)
			res, err := leadstatetest.Apply(ctx, store, &u)
			if err != nil || !res.Applied || len(res.Outbox) != 0 {
				b.Fatalf("Apply = %+v, %v", res, err)
			}
			n++
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
		cleanup(b, prefix, n)
	})

	b.Run("ApplyMany-100", func(b *testing.B) {
		const batch = 100
		prefix := newID("bench")
		var hits []scoring.Hit
		us := make([]leadstate.Update, batch)
		n := 0
		b.ReportAllocs()
		for b.Loop() {
			for i := range us {
				us[i], hits = build(n, prefix, hits)
				n++
			}
			res, err := store.ApplyMany(ctx, us)
			if err != nil || len(res) != batch || !res[batch-1].Applied {
				b.Fatalf("ApplyMany = %+v, %v", res, err)
			}
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
		cleanup(b, prefix, n)
	})
}
