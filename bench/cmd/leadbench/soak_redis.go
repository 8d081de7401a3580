package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/processor"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
)

// soakWindow is the Redis soak's dedup window: short, so that ids and cap
// windows are released within the soak.
const soakWindow = 10 * time.Second

type redisSoakResult struct {
	Seconds       float64 `json:"seconds"`
	WarmupSeconds float64 `json:"warmup_seconds"`
	Events        int64   `json:"events"`
	Subjects      int     `json:"population"`
	MinBytes      int64   `json:"min_used_memory_bytes"`
	MaxBytes      int64   `json:"max_used_memory_bytes"`
	MeanBytes     float64 `json:"mean_used_memory_bytes"`
	Deviation     float64 `json:"max_deviation"` // largest |sample - mean| / mean, after warm-up
	Trend         float64 `json:"trend"`         // mean of the second half over the first half, minus 1
}

// redisSoak scores the mix's fixed population of leads and visitors with
// fresh event ids and current times, over and over, with a 10 s dedup
// window, and samples Redis's used_memory every second: after a warm-up of
// two windows and a bucket (when the first ids expire), memory must stay
// flat. It measures what grows with events and what with the population.
func (h *harness) redisSoak(ctx context.Context, sample []stream.Record) error {
	total := max(35*time.Second, 6*h.measure)
	warm := 2*soakWindow + 5*time.Second
	h.logf("scenario redis soak (dedup window %v, %v)", soakWindow, total)
	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: h.svc.redis.Addr})
	if err != nil {
		return err
	}
	defer rdb.Close()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		return err
	}
	store := leadstate.NewStore(rdb)
	sc := processor.NewScorer(scoring.NewCore(scoring.Default(), soakWindow), store, time.Minute)
	var evs []event.Event
	population := map[string]bool{}
	for _, r := range sample {
		var e event.Event
		if err := event.Unmarshal(r.Value, &e); err != nil {
			return err
		}
		evs = append(evs, e)
		population[e.LeadID+"\x00"+e.AnonymousID] = true
	}
	start := time.Now()
	var samples []int64
	next := start.Add(time.Second)
	var events int64
	batch := make([]*event.Event, 0, 500)
	for pass := 0; time.Since(start) < total && ctx.Err() == nil; pass++ {
		for lo := 0; lo < len(evs) && time.Since(start) < total; lo += 500 {
			now := time.Now().UTC().Truncate(time.Millisecond)
			batch = batch[:0]
			for i := lo; i < min(lo+500, len(evs)); i++ {
				e := evs[i]
				e.ID = "soak" + strconv.Itoa(pass) + "-" + e.ID
				e.EventTime, e.ReceivedAt = now, now
				batch = append(batch, &e)
			}
			if _, err := sc.Score(ctx, batch, map[scoring.Subject]leadstate.Record{}); err != nil {
				return fmt.Errorf("redis soak: %w", err)
			}
			events += int64(len(batch))
			if time.Now().After(next) {
				next = next.Add(time.Second)
				if time.Since(start) < warm {
					continue
				}
				used, err := usedMemory(ctx, rdb)
				if err != nil {
					return err
				}
				samples = append(samples, used)
			}
		}
	}
	if len(samples) == 0 {
		return fmt.Errorf("redis soak: no sample after the warm-up")
	}
	res := redisSoakResult{Seconds: time.Since(start).Seconds(), WarmupSeconds: warm.Seconds(), Events: events, Subjects: len(population),
		MinBytes: slices.Min(samples), MaxBytes: slices.Max(samples)}
	mean := func(xs []int64) float64 {
		var sum float64
		for _, x := range xs {
			sum += float64(x)
		}
		return sum / float64(max(len(xs), 1))
	}
	res.MeanBytes = mean(samples)
	for _, x := range samples {
		res.Deviation = max(res.Deviation, math.Abs(float64(x)-res.MeanBytes)/res.MeanBytes)
	}
	if half := len(samples) / 2; half > 0 {
		res.Trend = mean(samples[half:])/mean(samples[:half]) - 1
	}
	h.logf("  %s events over a population of %d; used_memory after warm-up %.1f–%.1f MB, within ±%.1f%% of its mean, second half %+.1f%% on the first",
		num(float64(events)), len(population), float64(res.MinBytes)/(1<<20), float64(res.MaxBytes)/(1<<20), 100*res.Deviation, 100*res.Trend)
	met := res.Deviation <= 0.10
	h.rep.addStage(&stageResult{ID: "redis_soak", Stage: fmt.Sprintf("Redis used_memory, %v of scoring a fixed population with a %v dedup window, after warm-up", total.Round(time.Second), soakWindow),
		Figure: 100 * res.Deviation, Unit: "%", custom: fmt.Sprintf("±%.1f%% of %.1f MB (trend %+.1f%%)", 100*res.Deviation, res.MeanBytes/(1<<20), 100*res.Trend),
		Target: "flat: ±10%", TargetMet: &met, Detail: res})
	return rdb.FlushAll(ctx).Err()
}

// usedMemory is Redis's INFO memory used_memory.
func usedMemory(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("redis INFO memory: no used_memory")
}
