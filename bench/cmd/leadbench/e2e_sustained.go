package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/leadstream/leadstream/stream"
)

// stepResult is one offered rate of the sustained-rate search.
type stepResult struct {
	Offered       float64 `json:"offered_events_per_second"`
	Accepted      float64 `json:"accepted_events_per_second"`
	Errors        int64   `json:"failed_requests"`
	HTTPP99Ms     float64 `json:"http_p99_ms"`
	ProcLagEnd    int64   `json:"processor_lag_end"`
	ProcLagSlope  float64 `json:"processor_lag_growth_per_second"`
	SinkLagEnd    int64   `json:"sink_lag_end"`
	SinkLagSlope  float64 `json:"sink_lag_growth_per_second"`
	ProcessedPerS float64 `json:"processor_events_per_second"`
	SinkRowsPerS  float64 `json:"sink_rows_per_second"`
	Bounded       bool    `json:"bounded"`
	Why           string  `json:"why,omitempty"`
}

// sustained steps the offered rate up (50-event batches, open loop). A step
// holds when at least 97% of the offered events are accepted without errors
// and, for the processor and the sink, consumer lag neither grows by more
// than 5% of the rate per second over the measured part of the step (growth of
// its floor, see floorGrowth) nor ends above two seconds of input plus one
// sink batch.
func (e *e2e) sustained(ctx context.Context) error {
	h := e.h
	var steps []stepResult
	best := 0.0
	var lastFail float64
	try := func(rate float64) (bool, error) {
		if err := e.drain(ctx, rate); err != nil {
			return false, err
		}
		st, err := e.step(ctx, rate)
		if err != nil {
			return false, err
		}
		steps = append(steps, st)
		mark := "bounded"
		if !st.Bounded {
			mark = "NOT bounded: " + st.Why
		}
		h.logf("  offered %s events/s: accepted %s, processor %s/s (lag %d, %+.0f/s), sink %s rows/s (lag %d, %+.0f/s): %s",
			num(rate), num(st.Accepted), num(st.ProcessedPerS), st.ProcLagEnd, st.ProcLagSlope, num(st.SinkRowsPerS), st.SinkLagEnd, st.SinkLagSlope, mark)
		return st.Bounded, nil
	}
	h.logf("scenario end to end sustained rate (steps of %s)", h.stepDur)
	for _, rate := range h.stepRates {
		ok, err := try(rate)
		if err != nil {
			return err
		}
		if !ok {
			lastFail = rate
			break
		}
		best = rate
	}
	// Bisect between the last rate that held and the first that did not,
	// down to 10% of the rate (at most h.refine steps).
	for i := 0; i < h.refine && lastFail > 0 && best > 0 && lastFail-best > max(2000, best/10); i++ {
		mid := float64(int((best+lastFail)/2/1000) * 1000)
		ok, err := try(mid)
		if err != nil {
			return err
		}
		if ok {
			best = mid
		} else {
			lastFail = mid
		}
	}
	var notes []string
	if lastFail == 0 {
		notes = append(notes, fmt.Sprintf("every step up to %s events/s held: the real limit is higher", num(best)))
	}
	h.rep.addStage(&stageResult{ID: "e2e_sustained", Stage: "end to end, one process (collector + processor + sink), highest offered rate with bounded lag",
		Figure: best, Unit: "events/s", CeilingID: "e2e_bottleneck", Target: "≥ 50,000 events/s", Notes: notes, Detail: steps})
	return nil
}

type lagSample struct {
	at         time.Time
	proc, sink int64
}

func (e *e2e) step(ctx context.Context, rate float64) (stepResult, error) {
	st := stepResult{Offered: rate}
	var (
		mu      sync.Mutex
		samples []lagSample
	)
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for sctx.Err() == nil {
			pl, err1 := e.b.lag(sctx, "scoring", e.b.topic(stream.TopicEvents))
			sl, err2 := e.b.lag(sctx, "clickhouse", e.b.topic(stream.TopicEvents), e.b.topic(stream.TopicMQL))
			if err1 == nil && err2 == nil {
				mu.Lock()
				samples = append(samples, lagSample{at: time.Now(), proc: pl, sink: sl})
				mu.Unlock()
			}
			sleepCtx(sctx, 250*time.Millisecond)
		}
	})
	m0, err := e.p.metrics(ctx)
	if err != nil {
		stop()
		return st, err
	}
	warm := e.h.stepDur / 3
	l := load{addr: e.p.cfg.httpAddr, conns: sustainedConns, warmup: warm, measure: e.h.stepDur - warm,
		build: batchRequests(e.h.runID("sus"), sustainedBatch, sustainedConns), rate: rate / sustainedBatch}
	snap := snapshotCPU()
	res, err := l.run(ctx)
	e.h.noteCPU(fmt.Sprintf("e2e_step_%.0f", rate), snap.since())
	stop()
	wg.Wait()
	if err != nil {
		return st, err
	}
	if err := e.p.failed(); err != nil {
		return st, err
	}
	m1, err := e.p.metrics(ctx)
	if err != nil {
		return st, err
	}
	total := e.h.stepDur.Seconds()
	st.ProcessedPerS = (m1.sum("leadstream_processor_events_total") - m0.sum("leadstream_processor_events_total")) / total
	st.SinkRowsPerS = (m1.sum("leadstream_sink_rows_total", `table="events"`) - m0.sum("leadstream_sink_rows_total", `table="events"`)) / total
	st.Accepted, st.Errors, st.HTTPP99Ms = res.EventsPerS, res.Errors, res.P99Ms
	var win []lagSample
	for _, s := range samples {
		if !s.at.Before(res.windowStart) {
			win = append(win, s)
		}
	}
	if len(win) < 3 {
		return st, errors.New("too few lag samples in the step")
	}
	st.ProcLagSlope = floorGrowth(win, func(s lagSample) int64 { return s.proc })
	st.SinkLagSlope = floorGrowth(win, func(s lagSample) int64 { return s.sink })
	st.ProcLagEnd, st.SinkLagEnd = win[len(win)-1].proc, win[len(win)-1].sink
	var why []string
	if st.Accepted < acceptedFraction*rate {
		why = append(why, fmt.Sprintf("collector accepted only %s of %s events/s", num(st.Accepted), num(rate)))
	}
	if st.Errors > 0 {
		why = append(why, fmt.Sprintf("%d failed requests %v", st.Errors, res.Codes))
	}
	endLimit := 2*rate + 10_000
	if st.ProcLagSlope > 0.05*rate || float64(st.ProcLagEnd) > endLimit {
		why = append(why, fmt.Sprintf("processor lag grows %+.0f/s, ends at %d", st.ProcLagSlope, st.ProcLagEnd))
	}
	if st.SinkLagSlope > 0.05*rate || float64(st.SinkLagEnd) > endLimit {
		why = append(why, fmt.Sprintf("sink lag grows %+.0f/s, ends at %d", st.SinkLagSlope, st.SinkLagEnd))
	}
	st.Bounded, st.Why = len(why) == 0, strings.Join(why, "; ")
	return st, nil
}

// floorWindow is at least one drain cycle of a consumer: the sink inserts
// once per sink.flush-interval (1 s) and the insert takes a few hundred ms.
const floorWindow = 1500 * time.Millisecond

// floorGrowth is how fast a consumer's lag floor rises, per second.
// Consumers drain in batches (the sink inserts about once a second), so lag is
// a sawtooth whose raw slope over a few seconds depends on where the teeth
// fall; its floor rises only when the consumer falls behind. The floor at a
// sample is the lowest lag over the floorWindow before it; growth is the
// least-squares slope of the floor from floorWindow into the window on.
func floorGrowth(s []lagSample, v func(lagSample) int64) float64 {
	if len(s) < 2 {
		return 0
	}
	var n, sx, sy, sxx, sxy float64
	t0 := s[0].at
	for i, p := range s {
		if p.at.Sub(t0) < floorWindow {
			continue
		}
		floor := v(p)
		for j := i - 1; j >= 0 && p.at.Sub(s[j].at) <= floorWindow; j-- {
			floor = min(floor, v(s[j]))
		}
		x, y := p.at.Sub(t0).Seconds(), float64(floor)
		n++
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	d := n*sxx - sx*sx
	if n < 2 || d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}
