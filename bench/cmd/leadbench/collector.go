package main

import (
	"context"
	"fmt"
	"time"

	"github.com/leadstream/leadstream/stream"
	"github.com/valyala/fasthttp"
)

// Connections of the collector scenarios: many clients with one event each
// (browsers, pixels, server SDKs sending one call at a time), fewer clients
// with 50-event batches (SDKs flushing their queue).
const (
	singleConns = 64
	batchConns  = 16
	batchSize   = 50
)

// collectorRun is the figures of one collector scenario, for the JSON file.
type collectorRun struct {
	Load         loadResult `json:"load"`
	PeakRSSBytes int64      `json:"peak_rss_bytes"`
	HWMBytes     int64      `json:"vm_hwm_bytes"`
	KafkaRecords int64      `json:"kafka_records_written"`
	AckedEvents  int64      `json:"acked_events"`
	// Group commit: records per Kafka produce request and its mean duration.
	ProduceBatch  float64 `json:"kafka_records_per_produce_request"`
	ProduceMs     float64 `json:"kafka_produce_request_mean_ms"`
	EmailRecorded float64 `json:"email_opens_recorded,omitempty"`
	EmailFailed   float64 `json:"email_opens_unavailable,omitempty"`
	Profile       string  `json:"profile,omitempty"`
}

// collectorScenarios measures the no-op fasthttp ceilings and the collector
// for single events, pixels and batches, each collector in a fresh process
// against one in-process broker.
func (h *harness) collectorScenarios(ctx context.Context) error {
	b, err := startBroker(ctx)
	if err != nil {
		return err
	}
	defer b.close()
	pixels, err := pixelPaths(1)
	if err != nil {
		return err
	}
	kr, err := pixelKeyring()
	if err != nil {
		return err
	}

	// Ceilings: the same load generator against a handler that does
	// nothing, each measured right before its collector scenario so that
	// both see the same machine (the cores are shared).
	noop, err := startChild(ctx, h.dir, childConfig{role: roleNoop})
	if err != nil {
		return err
	}
	defer noop.stop()
	noopCeiling := func(id, what string, build requestFn) error {
		h.logf("ceiling %s", id)
		snap := snapshotCPU()
		res, err := h.load(noop.cfg.httpAddr, singleConns, build).run(ctx)
		if err != nil {
			return err
		}
		h.noteCPU(id, snap.since())
		if err := noop.failed(); err != nil {
			return err
		}
		h.rep.addCeiling(&ceiling{ID: id, What: what, Figure: res.ReqPerSec, Unit: "req/s", Detail: res})
		h.logf("  %s req/s, p50 %s ms, p99 %s ms", num(res.ReqPerSec), ms(res.P50Ms), ms(res.P99Ms))
		return nil
	}

	// POST /v1/track, single events.
	if err := noopCeiling("noop_post", "no-op fasthttp handler, same POST /v1/track load", trackRequests("noop", singleConns)); err != nil {
		return err
	}
	run, err := h.collectorRun(ctx, b, "collector-track", singleConns, trackRequests(h.runID("t"), singleConns), false)
	if err != nil {
		return err
	}
	h.rep.addStage(&stageResult{ID: "collector_track", Stage: "collector `POST /v1/track`, 1 event/request, 64 conns, acks=all",
		Figure: run.Load.ReqPerSec, Unit: "req/s", P50Ms: run.Load.P50Ms, P99Ms: run.Load.P99Ms,
		CeilingID: "noop_post", Target: "≥ 60% of no-op", Notes: collectorNotes(run), Detail: run})

	// GET /o/{token}.gif, when the collector serves it.
	if ok, why := h.pixelAvailable(ctx, b, pixels[0]); ok {
		if err := noopCeiling("noop_get", "no-op fasthttp handler, same GET pixel load", pixelRequests(kr)); err != nil {
			return err
		}
		run, err = h.collectorRun(ctx, b, "collector-pixel", singleConns, pixelRequests(kr), true)
		if err != nil {
			return err
		}
		notes := collectorNotes(run)
		if run.EmailFailed > 0 {
			notes = append(notes, fmt.Sprintf("%.0f opens answered with the GIF but not recorded (Kafka did not acknowledge them)", run.EmailFailed))
		}
		if missing := float64(run.Load.SentAll) - run.EmailRecorded - run.EmailFailed; missing > 0 {
			notes = append(notes, fmt.Sprintf("%.0f pixel requests neither recorded nor counted as unavailable", missing))
		}
		h.rep.addStage(&stageResult{ID: "collector_pixel", Stage: "collector `GET /o/{token}.gif` (email-open pixel), 64 conns, acks=all",
			Figure: run.Load.ReqPerSec, Unit: "req/s", P50Ms: run.Load.P50Ms, P99Ms: run.Load.P99Ms,
			CeilingID: "noop_get", Target: "≥ 60% of no-op", Notes: notes, Detail: run})
	} else {
		h.rep.Skipped = append(h.rep.Skipped, "collector pixel GET: "+why)
		h.logf("skipping the pixel scenario: %s", why)
	}
	if err := noop.stop(); err != nil {
		return err
	}

	// /v1/batch, 50 events per request.
	run, err = h.collectorRun(ctx, b, "collector-batch", batchConns, batchRequests(h.runID("b"), batchSize, batchConns), false)
	if err != nil {
		return err
	}
	h.rep.addStage(&stageResult{ID: "collector_batch", Stage: "collector `POST /v1/batch`, 50 events/request, 16 conns, acks=all",
		Figure: run.Load.EventsPerS, Unit: "events/s", P50Ms: run.Load.P50Ms, P99Ms: run.Load.P99Ms,
		CeilingID: "kafka_produce", Target: "≥ 50% of the Kafka produce ceiling (franz-go)", Notes: collectorNotes(run), Detail: run})
	return nil
}

func collectorNotes(run collectorRun) []string {
	var notes []string
	if run.Load.Errors > 0 {
		notes = append(notes, fmt.Sprintf("%d failed requests in the window: %v", run.Load.Errors, run.Load.Codes))
	}
	return notes
}

// collectorRun starts a collector, drives it and checks that Kafka holds at
// least every event that was answered 200.
func (h *harness) collectorRun(ctx context.Context, b *broker, name string, conns int, build requestFn, pixel bool) (collectorRun, error) {
	h.logf("scenario %s", name)
	var out collectorRun
	col, err := startChild(ctx, h.dir, childConfig{role: roleCollector, brokers: b.brokers()})
	if err != nil {
		return out, err
	}
	defer col.stop()
	topic := b.topic(stream.TopicEvents)
	before, _, err := b.endOffsets(ctx, topic)
	if err != nil {
		return out, err
	}
	m0, err := col.metrics(ctx)
	if err != nil {
		return out, err
	}
	col.sampleRSS(250 * time.Millisecond)
	l := h.load(col.cfg.httpAddr, conns, build)
	prof := h.profileLater(ctx, col, name, l.warmup, l.measure)
	snap := snapshotCPU()
	res, err := l.run(ctx)
	if err != nil {
		return out, err
	}
	h.noteCPU(name, snap.since())
	if err := <-prof; err != nil {
		h.logf("  profile of %s failed: %v", name, err)
	} else if h.profileDir != "" {
		out.Profile = name
	}
	col.stopSampling()
	if err := col.failed(); err != nil {
		return out, err
	}
	after, _, err := b.endOffsets(ctx, topic)
	if err != nil {
		return out, err
	}
	m1, err := col.metrics(ctx)
	if err != nil {
		return out, err
	}
	out.Load, out.PeakRSSBytes, out.KafkaRecords, out.AckedEvents = res, col.peak(), after-before, res.OKEventsAll
	out.HWMBytes, _ = col.hwm()
	delta := func(name string) float64 { return m1.sum(name) - m0.sum(name) }
	if n := delta("leadstream_kafka_produce_batch_records_count"); n > 0 {
		out.ProduceBatch = delta("leadstream_kafka_produce_batch_records_sum") / n
		out.ProduceMs = 1000 * delta("leadstream_kafka_produce_duration_seconds_sum") / delta("leadstream_kafka_produce_duration_seconds_count")
	}
	if pixel {
		out.EmailRecorded = m1.sum("leadstream_collector_email_requests_total", `result="recorded"`) - m0.sum("leadstream_collector_email_requests_total", `result="recorded"`)
		out.EmailFailed = m1.sum("leadstream_collector_email_requests_total", `result="unavailable"`) - m0.sum("leadstream_collector_email_requests_total", `result="unavailable"`)
		out.AckedEvents = int64(out.EmailRecorded)
	}
	// Exactness: a 200 must mean the event is in Kafka.
	if out.KafkaRecords < out.AckedEvents {
		return out, fmt.Errorf("%s: %d events answered 200 but only %d records reached Kafka", name, out.AckedEvents, out.KafkaRecords)
	}
	h.logf("  %s req/s (%s events/s), p50 %s ms, p99 %s ms, errors %d, peak RSS %d MB, kafka records %d ≥ acked %d, %.1f records per produce request (%.2f ms)",
		num(res.ReqPerSec), num(res.EventsPerS), ms(res.P50Ms), ms(res.P99Ms), res.Errors, out.PeakRSSBytes>>20, out.KafkaRecords, out.AckedEvents, out.ProduceBatch, out.ProduceMs)
	h.peakCollectorRSS = max(h.peakCollectorRSS, out.PeakRSSBytes)
	return out, col.stop()
}

// pixelAvailable sends one open through a collector and reports whether it
// was answered with the GIF and recorded (the endpoint is new; an older
// collector answers 404).
func (h *harness) pixelAvailable(ctx context.Context, b *broker, path string) (bool, string) {
	col, err := startChild(ctx, h.dir, childConfig{role: roleCollector, brokers: b.brokers()})
	if err != nil {
		return false, err.Error()
	}
	defer col.stop()
	req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(res)
	req.SetRequestURI("http://" + col.cfg.httpAddr + path)
	req.Header.SetUserAgent(mailUA)
	if err := fasthttp.DoTimeout(req, res, 10*time.Second); err != nil {
		return false, err.Error()
	}
	if res.StatusCode() != 200 || string(res.Header.ContentType()) != "image/gif" {
		return false, fmt.Sprintf("GET /o/{token}.gif answered %d %s: not served by this collector", res.StatusCode(), res.Header.ContentType())
	}
	m, err := col.metrics(ctx)
	if err != nil {
		return false, err.Error()
	}
	if m.sum("leadstream_collector_email_requests_total", `result="recorded"`) != 1 {
		return false, "the pixel answered but recorded no open"
	}
	return true, ""
}

// profileLater takes CPU and allocation profiles of c over the measured
// window (after warmup) when profiling is on.
func (h *harness) profileLater(ctx context.Context, c *child, name string, warmup, measure time.Duration) <-chan error {
	out := make(chan error, 1)
	if h.profileDir == "" {
		out <- nil
		return out
	}
	go func() {
		sleepCtx(ctx, warmup)
		out <- <-c.profile(ctx, h.profileDir, name, measure, h.trace)
	}()
	return out
}
