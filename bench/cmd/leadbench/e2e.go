package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/valyala/fasthttp"
)

const (
	e2eDatabase = "bench_e2e"
	// latencyRate is the fixed offered load of the latency measurement.
	latencyRate        = 10_000 // events/s
	latencyBatch       = 10     // events per request: 1,000 requests/s
	latencyConns       = 32
	scoreProbeEvery    = 10 // one score probe per 10 requests: 100 probes/s
	mqlProbeEvery      = 50 // one MQL probe per 50 requests: 20 probes/s
	audienceProbeEvery = 25 // one audience probe per 25 requests: 40 probes/s
	sustainedBatch     = 50
	sustainedConns     = 32
	retentionBytes     = 128 << 20 // per partition: bounds the in-process broker's memory
	retentionPeriod    = 5 * time.Second
	acceptedFraction   = 0.97 // a step must get at least this share of the offered events accepted
)

// e2eScenarios runs the three roles in one process against the in-process
// broker, real Redis and real ClickHouse, measures accept-to-score and
// accept-to-MQL latency at 10k events/s, then steps the offered rate up
// until consumer lag no longer stays bounded.
func (h *harness) e2eScenarios(ctx context.Context, sustained bool) error {
	b, err := startBroker(ctx, kfake.BrokerConfigs(map[string]string{"log.retention.bytes": strconv.Itoa(retentionBytes)}))
	if err != nil {
		return err
	}
	defer b.close()
	retCtx, stopRet := context.WithCancel(ctx)
	defer stopRet()
	go func() {
		for retCtx.Err() == nil {
			sleepCtx(retCtx, retentionPeriod)
			b.cluster.ApplyRetention()
		}
	}()
	if err := h.flushRedis(ctx); err != nil {
		return err
	}
	h.waitMerges(ctx)
	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: h.svc.redis.Addr})
	if err != nil {
		return err
	}
	defer rdb.Close()
	p, err := startChild(ctx, h.dir, childConfig{role: rolePipeline, brokers: b.brokers(), redisAddr: h.svc.redis.Addr,
		clickhouse: h.svc.clickhouse.Addr, database: e2eDatabase})
	if err != nil {
		return err
	}
	defer p.stop()
	p.sampleRSS(500 * time.Millisecond)
	e := &e2e{h: h, b: b, p: p, rdb: rdb, store: leadstate.NewStore(rdb), model: scoring.Default().Models[0].Name}
	if err := e.waitReady(ctx); err != nil {
		return err
	}
	if err := e.latency(ctx); err != nil {
		return err
	}
	if sustained {
		if err := e.sustained(ctx); err != nil {
			return err
		}
	}
	p.stopSampling()
	h.logf("  pipeline process peak RSS %d MB", p.peak()>>20)
	for _, s := range h.rep.Stages {
		if s.ID == "e2e_sustained" {
			s.Notes = append(s.Notes, fmt.Sprintf("peak RSS of the one-process pipeline: %d MB", p.peak()>>20))
			if h.warehouseStuckIdle != nil {
				s.Notes = append(s.Notes, fmt.Sprintf("clickhouse-server stayed SCHED_IDLE after the latency window (%v): the sink's inserts had only the cores the rest left idle", h.warehouseStuckIdle))
			}
		}
	}
	return p.stop()
}

type e2e struct {
	h     *harness
	b     *broker
	p     *child
	rdb   redis.UniversalClient
	store *leadstate.Store
	model string
}

// scores returns, per lead, its behaviour value in the model (read through
// package leadstate: the key layout is its own); a lead without a state in
// the model is left out.
func (e *e2e) scores(ctx context.Context, leads []string) (map[string]float64, error) {
	subjects := make([]scoring.Subject, len(leads))
	for i, l := range leads {
		subjects[i] = scoring.Lead(l)
	}
	recs, err := e.store.Read(ctx, subjects)
	if err != nil {
		return nil, err
	}
	out := make(map[string]float64, len(leads))
	for subj, rec := range recs {
		if rec.State == nil {
			continue
		}
		for _, ms := range rec.State.Models {
			if ms.Name == e.model {
				out[subj.ID] = ms.V
			}
		}
	}
	return out, nil
}

func (e *e2e) post(ctx context.Context, body []byte) error {
	req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(res)
	req.SetRequestURI("http://" + e.p.cfg.httpAddr + "/v1/batch")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set("Authorization", basicAuth)
	req.SetBody(body)
	if err := fasthttp.DoTimeout(req, res, 30*time.Second); err != nil {
		return err
	}
	if res.StatusCode() != 200 {
		return fmt.Errorf("POST /v1/batch: %d %s", res.StatusCode(), res.Body())
	}
	return nil
}

// waitReady posts one event and waits until it is scored and the sink's
// group is caught up: both consumer groups have joined.
func (e *e2e) waitReady(ctx context.Context) error {
	h := e.h
	h.logf("scenario end to end: waiting for the pipeline's consumer groups")
	m := msg{typ: "track", name: "Email Link Clicked", id: h.runID("ready"), lead: h.runID("ready-lead"), ts: time.Now(), props: `{}`}
	body := append(appendSegment([]byte(`{"batch":[`), &m), "]}"...)
	if err := e.post(ctx, body); err != nil {
		return err
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		got, err := e.scores(ctx, []string{m.lead})
		if err != nil {
			return err
		}
		_, scored := got[m.lead]
		lag, lerr := e.b.lag(ctx, "clickhouse", e.b.topic(stream.TopicEvents))
		if scored && lerr == nil && lag == 0 {
			return nil
		}
		if err := e.p.failed(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pipeline not ready within 90s (scored: %v, sink lag %d, %v)%s", scored, lag, lerr, tail(e.p.logPath))
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// drain waits (up to 60 s) until both consumer groups are nearly caught up.
func (e *e2e) drain(ctx context.Context, rate float64) error {
	limit := int64(max(5000, rate/5))
	deadline := time.Now().Add(60 * time.Second)
	for {
		pl, err := e.b.lag(ctx, "scoring", e.b.topic(stream.TopicEvents))
		if err != nil {
			return err
		}
		sl, err := e.b.lag(ctx, "clickhouse", e.b.topic(stream.TopicEvents), e.b.topic(stream.TopicMQL))
		if err != nil {
			return err
		}
		if pl <= limit && sl <= limit+10_000 {
			return nil
		}
		if err := e.p.failed(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			e.h.logf("  consumers still behind after 60 s (processor %d, sink %d); stepping on", pl, sl)
			return nil
		}
		sleepCtx(ctx, 250*time.Millisecond)
	}
}
