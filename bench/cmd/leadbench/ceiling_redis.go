package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/processor"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
)

type redisResult struct {
	Pipelines   int     `json:"concurrent_batches"`
	Events      int64   `json:"events"`
	Seconds     float64 `json:"seconds"`
	EventsPS    float64 `json:"events_per_second"`
	RedisUsecPE float64 `json:"redis_cpu_usec_per_event"`
}

// benchWindow is the dedup window of the Redis ceiling: the sample's event
// times are days old, which the default window would call stale.
const benchWindow = 365 * 24 * time.Hour

// redisCeiling runs the processor's Redis work alone (processor.Scorer: read
// the states, plan, one compare-and-set per subject) on the sample's events,
// 500 per batch as the processor's batches, with one and with four batches
// in flight; the better is the ceiling. Each pass gives the events fresh ids,
// so every pass scores (on the same leads, as the processor would). It also
// measures the floor: the same events as one pipelined HSET plus one SADD
// each on the same server, the least a store of scores with dedup costs.
func (h *harness) redisCeiling(ctx context.Context, sample []stream.Record) error {
	h.logf("ceiling redis_apply")
	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: h.svc.redis.Addr})
	if err != nil {
		return err
	}
	defer rdb.Close()
	store := leadstate.NewStore(rdb)
	var batches [][]event.Event
	var cur []event.Event
	for _, r := range sample {
		var e event.Event
		if err := event.Unmarshal(r.Value, &e); err != nil {
			return err
		}
		if cur = append(cur, e); len(cur) == 500 {
			batches, cur = append(batches, cur), nil
		}
	}
	floor, err := h.redisFloor(ctx, rdb, batches)
	if err != nil {
		return err
	}
	sc := processor.NewScorer(scoring.NewCore(scoring.Default(), benchWindow), store, time.Hour)
	var results []redisResult
	best := redisResult{}
	for _, pipes := range []int{1, 4} {
		var (
			next            atomic.Int64
			measuring, stop atomic.Bool
			events          atomic.Int64
			wg              sync.WaitGroup
			errs            = make([]error, pipes)
		)
		for g := range pipes {
			wg.Go(func() {
				evs := make([]*event.Event, 0, 500)
				for !stop.Load() && ctx.Err() == nil {
					k := next.Add(1) - 1
					bt := batches[k%int64(len(batches))]
					prefix := "c" + strconv.Itoa(pipes) + "." + strconv.FormatInt(k/int64(len(batches)), 10) + "-"
					evs = evs[:0]
					for i := range bt {
						e := bt[i]
						e.ID = prefix + e.ID
						evs = append(evs, &e)
					}
					in := measuring.Load()
					if _, err := sc.Score(ctx, evs, map[scoring.Subject]leadstate.Record{}); err != nil {
						errs[g] = err
						return
					}
					if in && measuring.Load() {
						events.Add(int64(len(bt)))
					}
				}
			})
		}
		sleepCtx(ctx, h.warmup)
		measuring.Store(true)
		t0 := time.Now()
		snap := snapshotCPU()
		cpu0, err := redisCPU(ctx, rdb)
		if err != nil {
			return err
		}
		sleepCtx(ctx, h.measure/2)
		measuring.Store(false)
		el := time.Since(t0)
		cpu1, err := redisCPU(ctx, rdb)
		if err != nil {
			return err
		}
		h.noteCPU(fmt.Sprintf("redis_apply_%d", pipes), snap.since())
		stop.Store(true)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("redis ceiling: %w", err)
		}
		r := redisResult{Pipelines: pipes, Events: events.Load(), Seconds: el.Seconds(), EventsPS: float64(events.Load()) / el.Seconds()}
		if r.Events > 0 {
			r.RedisUsecPE = (cpu1 - cpu0) * 1e6 / float64(r.Events)
		}
		results = append(results, r)
		if r.EventsPS > best.EventsPS {
			best = r
		}
		h.logf("  %d batch(es) in flight: %s events/s, Redis CPU %.1f µs/event (floor %.1f: %.1fx)", pipes, num(r.EventsPS), r.RedisUsecPE, floor, r.RedisUsecPE/floor)
	}
	h.redisFloorUsec = floor
	h.rep.addCeiling(&ceiling{ID: "redis_apply", What: "Redis: the processor's Redis work alone (processor.Scorer: read, plan, compare-and-set), 500/batch (best of 1 or 4 in flight)",
		Figure: best.EventsPS, Unit: "events/s", Detail: map[string]any{"runs": results, "redis_floor_usec_per_event": floor,
			"redis_usec_per_event": best.RedisUsecPE, "redis_cost_vs_floor": best.RedisUsecPE / floor}})
	return nil
}

// redisFloor measures Redis CPU per event of one pipelined HSET (a score)
// plus one SADD (its dedup) per event, 500 per pipeline, on hash-tagged
// keys like the processor's.
func (h *harness) redisFloor(ctx context.Context, rdb redis.UniversalClient, batches [][]event.Event) (float64, error) {
	cpu0, err := redisCPU(ctx, rdb)
	if err != nil {
		return 0, err
	}
	n := 0
	deadline := time.Now().Add(h.measure / 2)
	for pass := 0; time.Now().Before(deadline) && ctx.Err() == nil; pass++ {
		bt := batches[pass%len(batches)]
		pipe := rdb.Pipeline()
		for i := range bt {
			e := &bt[i]
			id := e.LeadID
			if id == "" {
				id = e.AnonymousID
			}
			tag := "floor:{" + id + "}:"
			pipe.HSet(ctx, tag+"s", "default", e.EventTime.UnixMilli())
			pipe.SAdd(ctx, tag+"d", strconv.Itoa(pass)+"-"+e.ID)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, fmt.Errorf("redis floor: %w", err)
		}
		n += len(bt)
	}
	cpu1, err := redisCPU(ctx, rdb)
	if err != nil {
		return 0, err
	}
	if err := deleteKeys(ctx, rdb, "floor:*"); err != nil {
		return 0, err
	}
	usec := (cpu1 - cpu0) * 1e6 / float64(max(n, 1))
	h.logf("  floor (pipelined HSET + SADD per event): %.1f µs of Redis CPU per event", usec)
	return usec, nil
}

// redisCPU is the CPU time (user + system seconds) the Redis server has used.
func redisCPU(ctx context.Context, rdb redis.UniversalClient) (float64, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("redis INFO cpu %s: %w", k, err)
			}
			total += f
		}
	}
	return total, nil
}

func deleteKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) error {
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		if keys = append(keys, iter.Val()); len(keys) == 1000 {
			if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
				return err
			}
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
			return err
		}
	}
	return iter.Err()
}
