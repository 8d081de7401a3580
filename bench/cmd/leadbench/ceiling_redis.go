package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/processor"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
)

type redisResult struct {
	Pipelines int     `json:"concurrent_pipelines"`
	Events    int64   `json:"events"`
	Updates   int64   `json:"script_calls"`
	Seconds   float64 `json:"seconds"`
	EventsPS  float64 `json:"events_per_second"`
}

// redisCeiling runs the processor's apply script through
// leadstate.Store.ApplyMany on the updates the same events make, 500 events
// per pipeline as the processor's batches, with one and with four
// pipelines in flight; the better is the ceiling. Events no rule matches
// count as handled, as in the processor. Identity merges and trait reads
// are not part of it: they are the processor's own extra round trips.
func (h *harness) redisCeiling(ctx context.Context, sample []stream.Record) error {
	h.logf("ceiling redis_apply")
	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: h.svc.redis.Addr})
	if err != nil {
		return err
	}
	defer rdb.Close()
	store := leadstate.NewStore(rdb)
	rules := scoring.Default()
	type batch struct {
		events  int
		updates []leadstate.Update
	}
	var batches []batch
	cur := batch{}
	var hits []scoring.Hit
	for _, r := range sample {
		var e event.Event
		if err := event.Unmarshal(r.Value, &e); err != nil {
			return err
		}
		cur.events++
		if u, ok := updateFor(&e, rules, &hits); ok {
			cur.updates = append(cur.updates, u)
		}
		if cur.events == 500 {
			batches = append(batches, cur)
			cur = batch{}
		}
	}
	var results []redisResult
	best := 0.0
	for _, pipes := range []int{1, 4} {
		var (
			next            atomic.Int64
			measuring, stop atomic.Bool
			events, calls   atomic.Int64
			wg              sync.WaitGroup
			errs            = make([]error, pipes)
		)
		for g := range pipes {
			wg.Go(func() {
				us := make([]leadstate.Update, 0, 500)
				for !stop.Load() && ctx.Err() == nil {
					k := next.Add(1) - 1
					bt := batches[k%int64(len(batches))]
					// A fresh dedup id per pass, so every script call applies.
					prefix := "c" + strconv.Itoa(pipes) + "." + strconv.FormatInt(k/int64(len(batches)), 10) + "-"
					us = us[:0]
					for _, u := range bt.updates {
						u.DedupID, u.TriggerEventID = prefix+u.DedupID, prefix+u.TriggerEventID
						us = append(us, u)
					}
					in := measuring.Load()
					if _, err := store.ApplyMany(ctx, us); err != nil {
						errs[g] = err
						return
					}
					if in && measuring.Load() {
						events.Add(int64(bt.events))
						calls.Add(int64(len(us)))
					}
				}
			})
		}
		sleepCtx(ctx, h.warmup)
		measuring.Store(true)
		t0 := time.Now()
		snap := snapshotCPU()
		sleepCtx(ctx, h.measure/2)
		measuring.Store(false)
		el := time.Since(t0)
		h.noteCPU(fmt.Sprintf("redis_apply_%d", pipes), snap.since())
		stop.Store(true)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("redis ceiling: %w", err)
		}
		r := redisResult{Pipelines: pipes, Events: events.Load(), Updates: calls.Load(), Seconds: el.Seconds(), EventsPS: float64(events.Load()) / el.Seconds()}
		results = append(results, r)
		best = max(best, r.EventsPS)
		h.logf("  %d pipeline(s) in flight: %s events/s (%s script calls/s)", pipes, num(r.EventsPS), num(float64(r.Updates)/r.Seconds))
	}
	h.rep.addCeiling(&ceiling{ID: "redis_apply", What: "Redis: same apply script via leadstate ApplyMany, 500/pipeline (best of 1 or 4 in flight)", Figure: best, Unit: "events/s", Detail: results})
	return nil
}

// updateFor is the update the processor makes of e, with the event's own
// traits as the lead's (the processor reads and merges the stored ones first).
func updateFor(e *event.Event, rules *scoring.Rules, hits *[]scoring.Hit) (leadstate.Update, bool) {
	if e.Bot {
		return leadstate.Update{}, false
	}
	subject := leadstate.Anon(e.AnonymousID)
	if e.LeadID != "" {
		subject = leadstate.Lead(e.LeadID)
	}
	var traits map[string]any
	if e.Type == event.Identify && len(e.Traits) > 0 && !subject.Anonymous {
		traits, _ = scoring.DecodeTraits(e.Traits)
	}
	u := processor.BuildUpdate(rules, e, subject, traits, hits)
	return u, len(u.Models) > 0
}
