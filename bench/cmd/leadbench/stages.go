package main

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/stream"
	"github.com/segmentio/kafka-go"
)

// stageScenarios pre-fills the events topic with the mix through raw
// kafka-go (the produce ceiling), then measures on those same records the
// kafka-go consume ceiling, the processor alone, Redis running the apply
// script alone, the sink alone and clickhouse-client's Native insert.
func (h *harness) stageScenarios(ctx context.Context) error {
	b, err := startBroker(ctx)
	if err != nil {
		return err
	}
	defer b.close()
	n := h.prefill
	run := h.runID("s")
	// The ceilings cycle over the first 100,000 records; the pre-fill is
	// generated and written in chunks, so the harness (which is also the
	// broker) keeps a small heap and its GC does not skew the figures.
	sample, size := mixRecords(run, 0, min(n, 100_000))
	h.recordBytes = float64(size) / float64(len(sample))
	msgs := toMessages(sample)

	h.logf("ceiling kafka_produce")
	pr, err := h.produceCeiling(ctx, b, msgs)
	if err != nil {
		return err
	}
	h.rep.addCeiling(&ceiling{ID: "kafka_produce", What: kafkaProduceCeiling, Figure: pr.RecordsPerS, Unit: "records/s", Detail: pr})
	h.logf("  %s records/s (%.0f bytes/record)", num(pr.RecordsPerS), h.recordBytes)

	h.logf("pre-filling %s with %d records", b.topic(stream.TopicEvents), n)
	const chunk = 100_000
	for from := 0; from < n; from += chunk {
		part := msgs
		if from > 0 {
			recs, _ := mixRecords(run, from, min(chunk, n-from))
			part = toMessages(recs)
		}
		if _, err := rawProduce(ctx, b, b.topic(stream.TopicEvents), part[:min(len(part), n-from)], 0, 0); err != nil {
			return err
		}
	}
	if got, _, err := b.endOffsets(ctx, b.topic(stream.TopicEvents)); err != nil || got != int64(n) {
		return fmt.Errorf("pre-fill: topic holds %d records, want %d (%v)", got, n, err)
	}
	msgs = nil
	debug.FreeOSMemory()

	h.logf("ceiling kafka_consume")
	cr, err := consumeRaw(ctx, b, int64(n))
	if err != nil {
		return err
	}
	h.rep.addCeiling(&ceiling{ID: "kafka_consume", What: "raw kafka-go Reader consume (group, sync commit per 500)", Figure: cr.PerSecond, Unit: "records/s", Detail: cr})
	h.logf("  %s records/s", num(cr.PerSecond))

	// The ceiling first: it measures the floor the processor's Redis cost is
	// compared with.
	if err := h.redisCeiling(ctx, sample); err != nil {
		return err
	}
	if err := h.processorAlone(ctx, b, int64(n)); err != nil {
		return err
	}
	if err := h.redisSoak(ctx, sample); err != nil {
		return err
	}
	if err := h.sinkAlone(ctx, b, int64(n)); err != nil {
		return err
	}
	if err := h.clickhouseCeiling(ctx); err != nil {
		return err
	}
	// Dropping the tables stops their background merges before the next group.
	_, err = h.clickhouse(ctx, "DROP DATABASE IF EXISTS "+sinkDatabase, nil, nil)
	return err
}

func toMessages(recs []stream.Record) []kafka.Message {
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		msgs[i] = kafka.Message{Key: r.Key, Value: r.Value}
	}
	return msgs
}

type rateResult struct {
	Count     float64 `json:"count"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	Drained   bool    `json:"drained_before_window_end,omitempty"`
	PeakRSS   int64   `json:"peak_rss_bytes,omitempty"`
	Profile   string  `json:"profile,omitempty"`
	// CPUUsec is the stage process's CPU time (user + system) per counted
	// unit over the measured window: the per-core cost docs/scaling.md
	// sizes a deployment from.
	CPUUsec float64 `json:"cpu_usec_per_unit,omitempty"`
}

// rateOf measures how fast counter grows: it waits until it moves (the
// consumer joined its group), lets it run for the warm-up, then measures for
// the measured window or until it reaches total (the topic is drained).
// With c set, c's RSS is sampled and, when name is set, c is profiled.
func (h *harness) rateOf(ctx context.Context, c *child, name string, warmup time.Duration, counter func() (float64, error), total float64) (rateResult, error) {
	var res rateResult
	deadline := time.Now().Add(90 * time.Second)
	for {
		v, err := counter()
		if err != nil {
			return res, err
		}
		if v > 0 {
			break
		}
		if c != nil {
			if err := c.failed(); err != nil {
				return res, err
			}
		}
		if time.Now().After(deadline) {
			return res, errors.New("no progress within 90s of starting")
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	if c != nil {
		c.sampleRSS(250 * time.Millisecond)
	}
	sleepCtx(ctx, warmup)
	v0, err := counter()
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	snap := snapshotCPU()
	var cpu0 float64
	if c != nil {
		cpu0 = procCPU(c.cmd.Process.Pid)
	}
	var prof <-chan error
	if c != nil && name != "" {
		prof = h.profileLater(ctx, c, name, 0, h.measure)
	}
	vEnd, tEnd := v0, t0
	for time.Since(t0) < h.measure && ctx.Err() == nil {
		sleepCtx(ctx, 100*time.Millisecond)
		v, err := counter()
		if err != nil {
			return res, err
		}
		vEnd, tEnd = v, time.Now()
		if v >= total {
			res.Drained = true
			break
		}
	}
	if prof != nil {
		if err := <-prof; err != nil {
			h.logf("  profile of %s failed: %v", name, err)
		} else if h.profileDir != "" {
			res.Profile = name
		}
	}
	if c != nil {
		if d := vEnd - v0; d > 0 {
			res.CPUUsec = (procCPU(c.cmd.Process.Pid) - cpu0) * 1e6 / d
		}
		c.stopSampling()
		res.PeakRSS = c.peak()
		if err := c.failed(); err != nil {
			return res, err
		}
	}
	if id := name; id != "" {
		h.noteCPU(id, snap.since())
	}
	res.Count, res.Seconds = vEnd-v0, tEnd.Sub(t0).Seconds()
	if res.Seconds > 0 {
		res.PerSecond = res.Count / res.Seconds
	}
	if res.Drained {
		h.logf("  note: the topic was drained %.1fs into the %.0fs window; the rate is over that part", res.Seconds, h.measure.Seconds())
	}
	return res, ctx.Err()
}

// processorAlone runs a processor (production defaults) on the pre-filled topic.
func (h *harness) processorAlone(ctx context.Context, b *broker, total int64) error {
	h.logf("scenario processor alone")
	if err := h.flushRedis(ctx); err != nil {
		return err
	}
	stats0, err := h.redisStats(ctx)
	if err != nil {
		return err
	}
	cpu0, err := h.redisCPUNow(ctx)
	if err != nil {
		return err
	}
	p, err := startChild(ctx, h.dir, childConfig{role: roleProcessor, brokers: b.brokers(), redisAddr: h.svc.redis.Addr})
	if err != nil {
		return err
	}
	defer p.stop()
	counter := func() (float64, error) {
		m, err := p.metrics(ctx)
		if err != nil {
			return 0, err
		}
		return m.sum("leadstream_processor_events_total"), nil
	}
	res, err := h.rateOf(ctx, p, "processor", h.warmup, counter, float64(total))
	if err != nil {
		return fmt.Errorf("processor alone: %w", err)
	}
	m, err := p.metrics(ctx)
	if err != nil {
		return err
	}
	stats1, err := h.redisStats(ctx)
	if err != nil {
		return err
	}
	cpu1, err := h.redisCPUNow(ctx)
	if err != nil {
		return err
	}
	handled := m.sum("leadstream_processor_events_total")
	cpuPerEvent := (cpu1 - cpu0) * 1e6 / handled
	perEvent := map[string]map[string]float64{}
	var usec float64
	for cmd, v := range stats1 {
		calls, us := v[0]-stats0[cmd][0], v[1]-stats0[cmd][1]
		if calls > 0 && cmd != "info" {
			perEvent[cmd] = map[string]float64{"calls_per_event": calls / handled, "redis_usec_per_event": us / handled}
			usec += us
		}
	}
	h.logf("  Redis commands per event: %s; Redis command time %.1f µs/event; Redis process CPU %.1f µs/event = %.1fx the floor (%.1f µs: pipelined HSET + SADD)",
		formatPerEvent(perEvent), usec/handled, cpuPerEvent, cpuPerEvent/h.redisFloorUsec, h.redisFloorUsec)
	detail := map[string]any{"rate": res, "redis_per_event": perEvent, "redis_usec_per_event": usec / handled,
		"redis_cpu_usec_per_event": cpuPerEvent, "redis_floor_usec_per_event": h.redisFloorUsec, "redis_cost_vs_floor": cpuPerEvent / h.redisFloorUsec,
		"results": map[string]float64{
			"scored": m.sum("leadstream_processor_events_total", `result="scored"`), "no_match": m.sum("leadstream_processor_events_total", `result="no_match"`),
			"duplicate": m.sum("leadstream_processor_events_total", `result="duplicate"`), "bot": m.sum("leadstream_processor_events_total", `result="bot"`),
			"dead_letter": m.sum("leadstream_processor_events_total", `result="dead_letter"`), "merges": m.sum("leadstream_processor_merges_total"),
			"mql_published": m.sum("leadstream_processor_mql_published_total")}}
	h.rep.addStage(&stageResult{ID: "processor", Stage: "processor alone on a pre-filled topic (batch 500, real Redis)", Figure: res.PerSecond, Unit: "events/s",
		CeilingID: "redis_apply", Target: "≥ 60% of Redis; Redis CPU ≤ 3× floor", Detail: detail})
	h.logf("  %s events/s, peak RSS %d MB, processor CPU %.1f µs/event", num(res.PerSecond), res.PeakRSS>>20, res.CPUUsec)
	return p.stop()
}

// redisCPUNow is the Redis server's CPU time so far (seconds).
func (h *harness) redisCPUNow(ctx context.Context) (float64, error) {
	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: h.svc.redis.Addr})
	if err != nil {
		return 0, err
	}
	defer rdb.Close()
	return redisCPU(ctx, rdb)
}

// redisStats returns INFO commandstats: command -> {calls, usec}.
func (h *harness) redisStats(ctx context.Context) (map[string][2]float64, error) {
	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: h.svc.redis.Addr})
	if err != nil {
		return nil, err
	}
	defer rdb.Close()
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	out := map[string][2]float64{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, found := strings.CutPrefix(name, "cmdstat_")
		if !ok || !found {
			continue
		}
		var v [2]float64
		for _, kv := range strings.Split(rest, ",") {
			k, val, _ := strings.Cut(kv, "=")
			f, _ := strconv.ParseFloat(val, 64)
			switch k {
			case "calls":
				v[0] = f
			case "usec":
				v[1] = f
			}
		}
		out[name] = v
	}
	return out, nil
}

func formatPerEvent(m map[string]map[string]float64) string {
	var parts []string
	for cmd, v := range m {
		parts = append(parts, fmt.Sprintf("%s %.3f", cmd, v["calls_per_event"]))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func (h *harness) flushRedis(ctx context.Context) error {
	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: h.svc.redis.Addr})
	if err != nil {
		return err
	}
	defer rdb.Close()
	return rdb.FlushAll(ctx).Err()
}

const sinkDatabase = "bench_sink"

// sinkAlone runs a sink (production defaults) on the pre-filled topic.
func (h *harness) sinkAlone(ctx context.Context, b *broker, total int64) error {
	h.logf("scenario sink alone")
	chPid := h.svc.clickhouse.Pid()
	ch0 := procCPU(chPid)
	s, err := startChild(ctx, h.dir, childConfig{role: roleSink, brokers: b.brokers(), clickhouse: h.svc.clickhouse.Addr, database: sinkDatabase})
	if err != nil {
		return err
	}
	defer s.stop()
	counter := func() (float64, error) {
		m, err := s.metrics(ctx)
		if err != nil {
			return 0, err
		}
		return m.sum("leadstream_sink_rows_total", `table="events"`), nil
	}
	res, err := h.rateOf(ctx, s, "sink", h.warmup, counter, float64(total))
	if err != nil {
		return fmt.Errorf("sink alone: %w", err)
	}
	// ClickHouse's CPU per row stored (parsing the INSERT blocks, writing
	// parts, the merges they cause meanwhile), from the sink's start.
	var chUsec float64
	if rows, err := counter(); err == nil && rows > 0 {
		chUsec = (procCPU(chPid) - ch0) * 1e6 / rows
	}
	h.rep.addStage(&stageResult{ID: "sink", Stage: "sink alone on a pre-filled topic (batch 50,000 / 1 s, real ClickHouse)", Figure: res.PerSecond, Unit: "rows/s",
		CeilingID: "clickhouse_native", Target: "≥ 50% of clickhouse-client", Detail: map[string]any{"rate": res, "clickhouse_cpu_usec_per_row": chUsec}})
	h.logf("  %s rows/s, peak RSS %d MB, sink CPU %.1f µs/row, clickhouse-server CPU %.1f µs/row", num(res.PerSecond), res.PeakRSS>>20, res.CPUUsec, chUsec)
	return s.stop()
}
