package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/leadstream/leadstream/stream"
	"github.com/segmentio/kafka-go"
)

// The wrk scenarios drive single-event requests (POST /v1/track and the
// email-open pixel) with Debian's wrk, a load generator nobody here wrote,
// next to the no-op server under the same wrk load. The Kafka broker runs in
// its own child process, so the CPU it spends on the collector's produce
// requests is measured apart from the collector's and wrk's.

const (
	wrkConns   = 64
	wrkThreads = 2
	// wrkRetention bounds each partition of the wrk scenarios' broker (the
	// in-process kfake keeps records in memory); see -wrk-retention.
	wrkRetention = 64 << 20
)

// wrkSummary is what the scripts' done() prints: wrk's own counters and
// latency percentiles of one run.
type wrkSummary struct {
	Requests     int64   `json:"requests"` // completed responses, any status
	Seconds      float64 `json:"seconds"`
	StatusErrors int64   `json:"status_errors"` // responses with a status > 399
	SocketErrors int64   `json:"socket_errors"` // connect, read, write errors and timeouts
	ReqPerSec    float64 `json:"requests_per_second"`
	P50Ms        float64 `json:"p50_ms"`
	P90Ms        float64 `json:"p90_ms"`
	P99Ms        float64 `json:"p99_ms"`
	P999Ms       float64 `json:"p999_ms"`
	MaxMs        float64 `json:"max_ms"`
	MeanMs       float64 `json:"mean_ms"`
}

// OK is the number of responses below 400 (the collector answers these
// endpoints with 200 or an error status).
func (s wrkSummary) OK() int64 { return s.Requests - s.StatusErrors }

// wrkDone is the Lua done() of every script: one line of key=value pairs
// that parseWrk reads (wrk's own text output rounds and has no p99.9).
const wrkDone = `
done = function(s, lat, req)
  io.write(string.format("leadbench: requests=%.0f duration_us=%.0f status_errors=%.0f connect_errors=%.0f read_errors=%.0f write_errors=%.0f timeouts=%.0f p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f mean_us=%.1f\n",
    s.requests, s.duration, s.errors.status, s.errors.connect, s.errors.read, s.errors.write, s.errors.timeout,
    lat:percentile(50), lat:percentile(90), lat:percentile(99), lat:percentile(99.9), lat.max, lat.mean))
end
`

// parseWrk reads the "leadbench:" line of a run's output.
func parseWrk(out []byte) (wrkSummary, error) {
	var line string
	for _, l := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "leadbench:"); ok {
			line = rest
		}
	}
	if line == "" {
		return wrkSummary{}, errors.New("wrk output has no leadbench: summary line (did the script's done() run?)")
	}
	want := []string{"requests", "duration_us", "status_errors", "connect_errors", "read_errors", "write_errors",
		"timeouts", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"}
	v := map[string]float64{}
	for _, f := range strings.Fields(line) {
		k, val, ok := strings.Cut(f, "=")
		if !ok {
			return wrkSummary{}, fmt.Errorf("wrk summary: %q is not key=value", f)
		}
		x, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return wrkSummary{}, fmt.Errorf("wrk summary: %s: %w", k, err)
		}
		v[k] = x
	}
	for _, k := range want {
		if _, ok := v[k]; !ok {
			return wrkSummary{}, fmt.Errorf("wrk summary: %s is missing", k)
		}
	}
	s := wrkSummary{
		Requests: int64(v["requests"]), Seconds: v["duration_us"] / 1e6, StatusErrors: int64(v["status_errors"]),
		SocketErrors: int64(v["connect_errors"] + v["read_errors"] + v["write_errors"] + v["timeouts"]),
		P50Ms:        v["p50_us"] / 1e3, P90Ms: v["p90_us"] / 1e3, P99Ms: v["p99_us"] / 1e3, P999Ms: v["p999_us"] / 1e3,
		MaxMs: v["max_us"] / 1e3, MeanMs: v["mean_us"] / 1e3,
	}
	if s.Seconds <= 0 {
		return wrkSummary{}, errors.New("wrk summary: duration is zero")
	}
	s.ReqPerSec = float64(s.OK()) / s.Seconds
	return s, nil
}

// luaString quotes s as a Lua string literal.
func luaString(s string) string { return strconv.Quote(s) } // Go's escapes are a subset of Lua's

// trackScript is a wrk script of single-event POST /v1/track requests with a
// unique messageId each (run id, wrk thread, counter), so every request is a
// new event; the names and leads vary as in the harness's mix of track calls.
func trackScript(runID string) string {
	return `
local run = ` + luaString(runID) + `
local headers = {["Content-Type"] = "application/json", ["Authorization"] = ` + luaString(basicAuth) + `,
  ["User-Agent"] = ` + luaString(serverUserAgent) + `}
local names = {"Email Opened", "Email Opened", "Email Link Clicked", "Webinar Attended", "Email Link Clicked", "Form Submitted"}
local threads = 0
local counter = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
request = function()
  counter = counter + 1
  local lead = (counter * 7919 + tid * 104729) % ` + strconv.Itoa(mixLeads) + `
  local body = '{"type":"track","messageId":"' .. run .. '-' .. tid .. '-' .. counter ..
    '","userId":"lead-' .. lead .. '","event":"' .. names[counter % #names + 1] ..
    '","properties":{"campaign":"spring-nurture","email_id":"e-' .. (counter % 50) .. '"}}'
  return wrk.format("POST", "/v1/track", headers, body)
end
` + wrkDone
}

// pixelScript is a wrk script of GET /o/{token}.gif over the given signed
// paths (the collector gives every open its own event id).
func pixelScript(paths []string) string {
	var b strings.Builder
	b.WriteString("local paths = {\n")
	for _, p := range paths {
		b.WriteString("  " + luaString(p) + ",\n")
	}
	b.WriteString(`}
local headers = {["User-Agent"] = ` + luaString(mailUA) + `}
local i = 0
init = function(args)
  i = math.random(#paths)
end
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], headers)
end
`)
	b.WriteString(wrkDone)
	return b.String()
}

// wrkRun is one wrk invocation's figures.
type wrkRun struct {
	Summary  wrkSummary `json:"summary"`
	WrkCores float64    `json:"wrk_cores"` // CPU of the wrk process over its run
}

// runWrk runs wrk against addr (127.0.0.1 only) for d with script.
func runWrk(ctx context.Context, dir, addr, path, script string, d time.Duration) (wrkRun, error) {
	if err := checkLoopback(addr); err != nil {
		return wrkRun{}, err
	}
	f := filepath.Join(dir, fmt.Sprintf("wrk-%d.lua", time.Now().UnixNano()))
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		return wrkRun{}, err
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(wrkThreads), "-c", strconv.Itoa(wrkConns),
		"-d", strconv.Itoa(secs)+"s", "--timeout", "10s", "-s", f, "http://"+addr+path)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return wrkRun{}, fmt.Errorf("wrk: %w: %s%s", err, bytes.TrimSpace(errb.Bytes()), bytes.TrimSpace(out.Bytes()))
	}
	s, err := parseWrk(out.Bytes())
	if err != nil {
		return wrkRun{}, fmt.Errorf("%w\n%s", err, out.Bytes())
	}
	r := wrkRun{Summary: s}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		r.WrkCores = cpu.Seconds() / time.Since(start).Seconds()
	}
	return r, nil
}

// procCPU is a process's CPU time (user + system) so far, in seconds.
func procCPU(pid int) float64 { return procTicks(pid, false) / clockTick }

// wrkEndpoint is one endpoint's wrk figures next to the no-op's.
type wrkEndpoint struct {
	Endpoint     string  `json:"endpoint"`
	Noop         wrkRun  `json:"noop"`
	NoopCores    float64 `json:"noop_cores"`
	NoopRunQueue float64 `json:"noop_threads_waiting_for_cpu"`
	NoopPressure float64 `json:"noop_machine_cpu_pressure_some"`
	// NoKafka is this tree's collector with a producer that acknowledges at
	// once and keeps nothing (endpoints that write every request): the
	// handler's whole work without the wait for Kafka.
	NoKafka       *wrkRun    `json:"collector_without_kafka,omitempty"`
	NoKafkaCores  float64    `json:"collector_without_kafka_cores,omitempty"`
	Collector     wrkRun     `json:"collector"`
	CollCores     float64    `json:"collector_cores"`
	BrokerCores   float64    `json:"broker_cores"`
	BrokerUsPerEv float64    `json:"broker_cpu_us_per_event"`
	CollUsPerEv   float64    `json:"collector_cpu_us_per_event"`
	LandedWindow  int64      `json:"landed_in_window"`
	Acked         int64      `json:"acked_total"`  // 200s, warm-up included
	Landed        int64      `json:"landed_total"` // records added to the topic, warm-up included
	Batch         float64    `json:"kafka_records_per_partition_batch"`
	PerRequest    float64    `json:"kafka_records_per_produce_request"`
	WireBytes     float64    `json:"kafka_batch_bytes_per_record"` // as sent (compressed)
	RawBytes      float64    `json:"kafka_uncompressed_bytes_per_record"`
	ProduceMs     float64    `json:"kafka_produce_request_mean_ms"`
	ProduceErrs   float64    `json:"kafka_produce_request_errors"` // failed produce requests (retried), measured window
	Settings      string     `json:"settings,omitempty"`
	Profiles      []string   `json:"profiles,omitempty"`
	Warmup        wrkSummary `json:"warmup"`
	Tail          tailFacts  `json:"tail"`
}

// wrkScenarios measures POST /v1/track and the pixel under wrk, each next to
// the no-op server under the same script.
func (h *harness) wrkScenarios(ctx context.Context) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		h.rep.Skipped = append(h.rep.Skipped, "wrk scenarios: wrk is not installed (apt-get install wrk, or `make deps`)")
		return nil
	}
	pixels, err := pixelPaths(2_000)
	if err != nil {
		return err
	}
	noop, err := startChild(ctx, h.dir, childConfig{role: roleNoop})
	if err != nil {
		return err
	}
	defer noop.stop()
	for _, ep := range []struct {
		id, path, script, what string
		pixel                  bool
	}{
		{"wrk_track", "/v1/track", trackScript(h.runID("w")), "collector `POST /v1/track` under wrk (64 conns, 1 event/request, acks=all)", false},
		{"wrk_pixel", pixels[0], pixelScript(pixels), "collector `GET /o/{token}.gif` under wrk (64 conns, 2,000 links: after the first open of each within the hour, answers without a Kafka write)", true},
	} {
		h.logf("wrk %s: no-op", ep.id)
		if _, err := runWrk(ctx, h.dir, noop.cfg.httpAddr, ep.path, ep.script, h.warmup); err != nil {
			return err
		}
		n0, nw0, psi0, snap := procCPU(noop.cmd.Process.Pid), runQueueWait(noop.cmd.Process.Pid), cpuPressure(), snapshotCPU()
		nr, err := runWrk(ctx, h.dir, noop.cfg.httpAddr, ep.path, ep.script, h.measure)
		if err != nil {
			return err
		}
		u := snap.since()
		h.noteCPU("noop_"+ep.id, u)
		res := wrkEndpoint{Endpoint: ep.path, Noop: nr, NoopCores: (procCPU(noop.cmd.Process.Pid) - n0) / u.Seconds, Settings: strings.Join(flagSets, " "),
			NoopRunQueue: (runQueueWait(noop.cmd.Process.Pid) - nw0) / u.Seconds, NoopPressure: (cpuPressure() - psi0) / u.Seconds}
		if ep.pixel {
			res.Endpoint = "/o/{token}.gif"
		}
		h.logf("  no-op %s req/s, p50 %s ms, p99 %s ms, p99.9 %s ms (no-op %.2f cores, wrk %.2f cores; no-op threads waiting for a CPU %.2f, machine CPU pressure %.0f%%)",
			num(nr.Summary.ReqPerSec), ms(nr.Summary.P50Ms), ms(nr.Summary.P99Ms), ms(nr.Summary.P999Ms), res.NoopCores, nr.WrkCores, res.NoopRunQueue, 100*res.NoopPressure)
		h.rep.addCeiling(&ceiling{ID: "noop_" + ep.id, What: "no-op fasthttp handler under the same wrk script", Figure: nr.Summary.ReqPerSec, Unit: "req/s", Detail: nr})
		if !ep.pixel {
			if err := h.wrkNoKafka(ctx, ep.path, ep.script, &res); err != nil {
				return err
			}
		}
		if err := h.wrkCollector(ctx, ep.id, ep.path, ep.script, ep.pixel, &res); err != nil {
			return err
		}
		stage := &stageResult{ID: ep.id, Stage: ep.what, Figure: res.Collector.Summary.ReqPerSec, Unit: "req/s",
			P50Ms: res.Collector.Summary.P50Ms, P99Ms: res.Collector.Summary.P99Ms, CeilingID: "noop_" + ep.id,
			Target: "≥ 60% of no-op, p99 ≤ 25 ms", Detail: res}
		stage.custom = fmt.Sprintf("%s req/s, p50 %s ms, p99 %s ms, p99.9 %s ms", num(stage.Figure), ms(stage.P50Ms), ms(stage.P99Ms), ms(res.Collector.Summary.P999Ms))
		if share, ok := res.noKafkaShare(); ok {
			stage.Notes = append(stage.Notes, fmt.Sprintf("this tree's collector without Kafka (a producer acknowledging at once) made %s req/s, %.0f%% of the no-op, in the same run",
				num(res.NoKafka.Summary.ReqPerSec), 100*share))
		}
		if s := res.Collector.Summary; s.StatusErrors+s.SocketErrors > 0 {
			stage.Notes = append(stage.Notes, fmt.Sprintf("%d error responses and %d socket errors in the window", s.StatusErrors, s.SocketErrors))
		}
		h.rep.addStage(stage)
		h.rep.Wrk = append(h.rep.Wrk, &res)
	}
	return noop.stop()
}

// noKafkaShare is the collector without Kafka's requests per second as a
// share of the no-op's; false when it was not measured or the no-op made none.
func (w *wrkEndpoint) noKafkaShare() (float64, bool) {
	if w.NoKafka == nil || w.Noop.Summary.ReqPerSec <= 0 {
		return 0, false
	}
	return w.NoKafka.Summary.ReqPerSec / w.Noop.Summary.ReqPerSec, true
}

// wrkNoKafka runs the endpoint against this tree's collector whose producer
// acknowledges every record at once: parsing, validating, mapping and
// encoding each event as the collector does, without Kafka.
func (h *harness) wrkNoKafka(ctx context.Context, path, script string, res *wrkEndpoint) error {
	h.logf("wrk %s: collector without Kafka", path)
	// The configuration needs a broker address; this role never dials it.
	col, err := startChild(ctx, h.dir, childConfig{role: roleNoKafka, brokers: "127.0.0.1:9"})
	if err != nil {
		return err
	}
	defer col.stop()
	if _, err := runWrk(ctx, h.dir, col.cfg.httpAddr, path, script, h.warmup); err != nil {
		return err
	}
	c0, snap := procCPU(col.cmd.Process.Pid), snapshotCPU()
	run, err := runWrk(ctx, h.dir, col.cfg.httpAddr, path, script, h.measure)
	if err != nil {
		return err
	}
	u := snap.since()
	res.NoKafka, res.NoKafkaCores = &run, (procCPU(col.cmd.Process.Pid)-c0)/u.Seconds
	s := run.Summary
	if s.StatusErrors+s.SocketErrors > 0 {
		return fmt.Errorf("collector without Kafka: %d error responses and %d socket errors", s.StatusErrors, s.SocketErrors)
	}
	share, _ := res.noKafkaShare()
	h.logf("  without Kafka %s req/s (%.0f%% of the no-op), p50 %s ms, p99 %s ms; collector %.2f cores (%.1f µs/request), wrk %.2f cores",
		num(s.ReqPerSec), 100*share, ms(s.P50Ms), ms(s.P99Ms), res.NoKafkaCores, res.NoKafkaCores*1e6/s.ReqPerSec, run.WrkCores)
	return col.stop()
}

// wrkCollector runs one endpoint against a fresh broker and collector.
func (h *harness) wrkCollector(ctx context.Context, name, path, script string, pixel bool, res *wrkEndpoint) error {
	h.logf("wrk %s: collector", name)
	bc, err := startChild(ctx, h.dir, childConfig{role: roleBroker, retention: h.wrkRetention})
	if err != nil {
		return err
	}
	defer bc.stop()
	b, err := dialBroker(ctx, bc.cfg.httpAddr)
	if err != nil {
		return err
	}
	if h.wrkPrefill > 0 {
		if err := prefillWrk(ctx, b, h.runID("pf"), h.wrkPrefill); err != nil {
			return err
		}
	}
	col, err := startChild(ctx, h.dir, childConfig{role: roleCollector, brokers: b.brokers(), exe: h.collectorExe})
	if err != nil {
		return err
	}
	defer col.stop()
	topic := b.topic(stream.TopicEvents)
	landed := func() (int64, error) { n, _, err := b.endOffsets(ctx, topic); return n, err }
	before, err := landed()
	if err != nil {
		return err
	}
	m0, err := col.metrics(ctx)
	if err != nil {
		return err
	}
	warm, err := runWrk(ctx, h.dir, col.cfg.httpAddr, path, script, h.warmup)
	if err != nil {
		return err
	}
	res.Warmup = warm.Summary
	mid, err := landed()
	if err != nil {
		return err
	}
	mw, err := col.metrics(ctx)
	if err != nil {
		return err
	}
	var profs []<-chan error
	if h.profileDir != "" {
		for _, c := range []*child{col, bc} {
			if c.cfg.exe == "" {
				profs = append(profs, c.profile(ctx, h.profileDir, "wrk-"+strings.TrimPrefix(name, "wrk_")+"-"+c.role, h.measure, h.trace))
				res.Profiles = append(res.Profiles, "wrk-"+strings.TrimPrefix(name, "wrk_")+"-"+c.role)
			}
		}
	}
	bm0, err := bc.metrics(ctx)
	if err != nil {
		return err
	}
	stopProbe := make(chan struct{})
	probes := probeBroker(ctx, b, stopProbe)
	c0, b0, snap := procCPU(col.cmd.Process.Pid), procCPU(bc.cmd.Process.Pid), snapshotCPU()
	cw0, bw0, psi0 := runQueueWait(col.cmd.Process.Pid), runQueueWait(bc.cmd.Process.Pid), cpuPressure()
	run, err := runWrk(ctx, h.dir, col.cfg.httpAddr, path, script, h.measure)
	close(stopProbe)
	if err != nil {
		return err
	}
	u := snap.since()
	c1, b1 := procCPU(col.cmd.Process.Pid), procCPU(bc.cmd.Process.Pid)
	cw1, bw1, psi1 := runQueueWait(col.cmd.Process.Pid), runQueueWait(bc.cmd.Process.Pid), cpuPressure()
	h.noteCPU(name, u)
	end, err := landed()
	if err != nil {
		return err
	}
	mEnd, err := col.metrics(ctx)
	if err != nil {
		return err
	}
	bm1, err := bc.metrics(ctx)
	if err != nil {
		return err
	}
	endpoint := path
	if pixel {
		endpoint = "/o"
	}
	res.Tail = tailOf(mw, mEnd, bm0, bm1, endpoint)
	res.Tail.addProbes(<-probes)
	res.Tail.ColRunQueue, res.Tail.BrkRunQueue, res.Tail.CPUPressure = (cw1-cw0)/u.Seconds, (bw1-bw0)/u.Seconds, (psi1-psi0)/u.Seconds
	for _, p := range profs {
		if err := <-p; err != nil {
			h.logf("  profile failed: %v", err)
		}
	}
	if err := errors.Join(col.failed(), bc.failed()); err != nil {
		return err
	}
	sleepCtx(ctx, 300*time.Millisecond) // requests wrk abandoned at its end finish producing
	after, err := landed()
	if err != nil {
		return err
	}
	m1, err := col.metrics(ctx)
	if err != nil {
		return err
	}
	res.Collector, res.CollCores, res.BrokerCores = run, (c1-c0)/u.Seconds, (b1-b0)/u.Seconds
	res.LandedWindow, res.Landed = end-mid, after-before
	if res.LandedWindow > 0 {
		res.BrokerUsPerEv = (b1 - b0) * 1e6 / float64(res.LandedWindow)
		res.CollUsPerEv = (c1 - c0) * 1e6 / float64(res.LandedWindow)
	}
	res.Acked = warm.Summary.OK() + run.Summary.OK()
	if pixel {
		rec := func(m promText) float64 {
			return m.sum("leadstream_collector_email_requests_total", `result="recorded"`)
		}
		res.Acked = int64(rec(m1) - rec(m0))
	}
	d := func(name string) float64 { return m1.sum(name) - mw.sum(name) }
	res.ProduceErrs = d("leadstream_kafka_produce_errors_total")
	if n := d("leadstream_kafka_produce_batch_records_count"); n > 0 {
		recs := d("leadstream_kafka_produce_batch_records_sum")
		res.Batch = recs / n
		if reqs := d("leadstream_kafka_produce_duration_seconds_count"); reqs > 0 {
			res.PerRequest = recs / reqs
			res.ProduceMs = 1000 * d("leadstream_kafka_produce_duration_seconds_sum") / reqs
		}
		if wire := d("leadstream_kafka_produced_bytes_total"); wire > 0 {
			res.WireBytes = wire / recs
			res.RawBytes = d("leadstream_kafka_produced_uncompressed_bytes_total") / recs
		}
	}
	h.logf("  collector %s req/s, p50 %s ms, p99 %s ms, p99.9 %s ms, max %s ms; collector %.2f cores, broker %.2f cores (%.1f µs/event), wrk %.2f cores; landed %d ≥ acked %d; %.1f records/batch, %.1f/request (%.0f failed requests), %.0f → %.0f bytes/record",
		num(run.Summary.ReqPerSec), ms(run.Summary.P50Ms), ms(run.Summary.P99Ms), ms(run.Summary.P999Ms), ms(run.Summary.MaxMs),
		res.CollCores, res.BrokerCores, res.BrokerUsPerEv, run.WrkCores, res.Landed, res.Acked, res.Batch, res.PerRequest, res.ProduceErrs, res.RawBytes, res.WireBytes)
	t := res.Tail
	h.logf("  tail: handler p99 ≤ %s ms, p99.9 ≤ %s ms; produce request p99 ≤ %s ms, p99.9 ≤ %s ms; broker probe p50 %s, p99 %s, max %s ms (%d of %d over 25 ms); threads waiting for a CPU: collector %.2f, broker %.2f, machine CPU pressure %.0f%%; Go CPU waits > 1 ms / > 10 ms: collector %.2f%% / %.3f%%, broker %.2f%% / %.3f%%; GC cycles (longest pause ≤ ms): collector %.0f (%s), broker %.0f (%s)",
		ms(t.HandlerP99Ms), ms(t.HandlerP999Ms), ms(t.ProduceP99Ms), ms(t.ProduceP999Ms), ms(t.ProbeP50Ms), ms(t.ProbeP99Ms), ms(t.ProbeMaxMs), t.ProbeOver25, t.Probes, t.ColRunQueue, t.BrkRunQueue, 100*t.CPUPressure,
		100*t.ColSchedOver1ms, 100*t.ColSchedOver10ms, 100*t.BrkSchedOver1ms, 100*t.BrkSchedOver10ms, t.ColGCCycles, ms(t.ColGCPauseMaxMs), t.BrkGCCycles, ms(t.BrkGCPauseMaxMs))
	if t.KafkaMeanMs > 0 {
		h.logf("  a request's time (means): %s ms at wrk, %s ms in the handler, of which queued behind the burst in flight %s, Kafka (request, broker, answer) %s, wake-up after the acknowledgement %s ms (p99 buckets ≤ %s, %s, %s ms)",
			ms(run.Summary.MeanMs), ms(t.HandlerMeanMs), ms(t.QueuedMeanMs), ms(t.KafkaMeanMs), ms(t.WakeupMeanMs), ms(t.QueuedP99Ms), ms(t.KafkaP99Ms), ms(t.WakeupP99Ms))
	}
	if res.Landed < res.Acked {
		return fmt.Errorf("%s: %d events answered 200 but only %d records reached Kafka", name, res.Acked, res.Landed)
	}
	return errors.Join(col.stop(), bc.stop())
}

// prefillWrk writes n records of the mix to the events topic (uncompressed)
// before a wrk run: a broker that already holds data, like a long-lived
// in-process test broker.
func prefillWrk(ctx context.Context, b *broker, runID string, n int) error {
	const chunk = 100_000
	for from := 0; from < n; from += chunk {
		recs, _ := mixRecords(runID, from, min(chunk, n-from))
		msgs := make([]kafka.Message, len(recs))
		for i, r := range recs {
			msgs[i] = kafka.Message{Key: r.Key, Value: r.Value}
		}
		if _, err := rawProduce(ctx, b, b.topic(stream.TopicEvents), msgs, 0, 0); err != nil {
			return fmt.Errorf("pre-filling the broker: %w", err)
		}
	}
	return nil
}

// wrkTable renders the wrk scenarios' CPU and Kafka figures.
func (r *report) wrkTable() string {
	if len(r.Wrk) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n| wrk, 64 conns | req/s (no-op) | ratio | without Kafka: req/s, ratio (µs/request) | p50 / p99 / p99.9 ms | collector cores (µs/event) | broker cores (µs/event) | wrk cores | landed ≥ acked | records per batch / request | bytes/record raw → sent |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, w := range r.Wrk {
		s := w.Collector.Summary
		ratio := 0.0
		if w.Noop.Summary.ReqPerSec > 0 {
			ratio = s.ReqPerSec / w.Noop.Summary.ReqPerSec
		}
		noKafka := "—"
		if share, ok := w.noKafkaShare(); ok && w.NoKafka.Summary.ReqPerSec > 0 {
			noKafka = fmt.Sprintf("%s, %.0f%% (%.1f)", num(w.NoKafka.Summary.ReqPerSec), 100*share, w.NoKafkaCores*1e6/w.NoKafka.Summary.ReqPerSec)
		}
		fmt.Fprintf(&b, "| %s | %s (%s) | %.0f%% | %s | %s / %s / %s | %.2f (%.1f) | %.2f (%.1f) | %.2f | %d ≥ %d | %.1f / %.1f | %.0f → %.0f |\n",
			w.Endpoint, num(s.ReqPerSec), num(w.Noop.Summary.ReqPerSec), 100*ratio, noKafka, ms(s.P50Ms), ms(s.P99Ms), ms(s.P999Ms),
			w.CollCores, w.CollUsPerEv, w.BrokerCores, w.BrokerUsPerEv, w.Collector.WrkCores, w.Landed, w.Acked,
			w.Batch, w.PerRequest, w.RawBytes, w.WireBytes)
	}
	return b.String()
}
