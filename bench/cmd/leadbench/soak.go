package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// soakPoint is the collector's state at one moment of a soak.
type soakPoint struct {
	AtSeconds  float64 `json:"at_seconds"`
	RSSBytes   int64   `json:"rss_bytes"`
	HeapInuse  float64 `json:"go_heap_inuse_bytes"`
	Goroutines float64 `json:"goroutines"`
	EventsPerS float64 `json:"events_per_second"` // accepted since the previous point
}

type soakReport struct {
	Started     time.Time             `json:"started"`
	Duration    string                `json:"duration"`
	Machine     machine               `json:"machine"`
	Load        map[string]loadResult `json:"load"`
	Points      []soakPoint           `json:"points"`
	BaselineRSS int64                 `json:"baseline_rss_bytes"` // median over 20–40% of the run
	FinalRSS    int64                 `json:"final_rss_bytes"`    // median over the last 20%
	PeakRSS     int64                 `json:"peak_rss_bytes"`
	Growth      int64                 `json:"growth_bytes"`
	Verdict     string                `json:"verdict"`
}

// soak runs one collector for d under a steady mix of batch, single-event
// and pixel requests (closed loop, at the collector's full speed) and
// samples its RSS, Go heap and goroutines every 5 s. The broker drops old
// records (retention) so the run is bounded in memory.
func (h *harness) soak(ctx context.Context, d time.Duration, out string) error {
	h.logf("soak: collector under load for %s", d)
	b, err := startBroker(ctx, kfake.BrokerConfigs(map[string]string{"log.retention.bytes": strconv.Itoa(64 << 20)}))
	if err != nil {
		return err
	}
	defer b.close()
	rctx, stopRet := context.WithCancel(ctx)
	defer stopRet()
	go func() {
		for rctx.Err() == nil {
			sleepCtx(rctx, retentionPeriod)
			b.cluster.ApplyRetention()
		}
	}()
	col, err := startChild(ctx, h.dir, childConfig{role: roleCollector, brokers: b.brokers()})
	if err != nil {
		return err
	}
	defer col.stop()
	kr, err := pixelKeyring()
	if err != nil {
		return err
	}
	rep := soakReport{Started: time.Now().UTC(), Duration: d.String(), Machine: machineFacts(ctx, ""), Load: map[string]loadResult{}}
	loads := map[string]load{
		"batch": {addr: col.cfg.httpAddr, conns: 8, measure: d, build: batchRequests(h.runID("soakb"), batchSize, 8)},
		"track": {addr: col.cfg.httpAddr, conns: 32, measure: d, build: trackRequests(h.runID("soakt"), 32)},
		"pixel": {addr: col.cfg.httpAddr, conns: 16, measure: d, build: pixelRequests(kr)},
	}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	for name, l := range loads {
		wg.Go(func() {
			res, err := l.run(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			rep.Load[name] = res
		})
	}
	start := time.Now()
	var lastEvents float64
	lastAt := start
	every := 5 * time.Second
	printEvery := max(30*time.Second, d/10)
	lastPrint := start
	for time.Since(start) < d && ctx.Err() == nil {
		sleepCtx(ctx, every)
		rss, err := col.rss()
		if err != nil {
			return fmt.Errorf("reading collector RSS: %w", err)
		}
		m, err := col.metrics(ctx)
		if err != nil {
			return err
		}
		ev := m.sum("leadstream_collector_events_total")
		p := soakPoint{AtSeconds: time.Since(start).Seconds(), RSSBytes: rss, HeapInuse: m.sum("go_memstats_heap_inuse_bytes"),
			Goroutines: m.sum("go_goroutines"), EventsPerS: (ev - lastEvents) / time.Since(lastAt).Seconds()}
		lastEvents, lastAt = ev, time.Now()
		rep.Points = append(rep.Points, p)
		rep.PeakRSS = max(rep.PeakRSS, rss)
		if time.Since(lastPrint) >= printEvery {
			lastPrint = time.Now()
			h.logf("  %4.0fs: RSS %d MB, Go heap %.0f MB, %0.f goroutines, %s events/s", p.AtSeconds, rss>>20, p.HeapInuse/(1<<20), p.Goroutines, num(p.EventsPerS))
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		return errs[0]
	}
	if err := col.failed(); err != nil {
		return err
	}
	median := func(from, to float64) int64 {
		var v []int64
		for _, p := range rep.Points {
			f := p.AtSeconds / d.Seconds()
			if f >= from && f <= to {
				v = append(v, p.RSSBytes)
			}
		}
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	rep.BaselineRSS, rep.FinalRSS = median(0.2, 0.4), median(0.8, 1.0)
	rep.Growth = rep.FinalRSS - rep.BaselineRSS
	limit := max(int64(16<<20), rep.BaselineRSS/10)
	if rep.Growth <= limit {
		rep.Verdict = fmt.Sprintf("no growth: RSS %d MB at 20–40%% of the run, %d MB over the last 20%% (%+d MB, limit %d MB)",
			rep.BaselineRSS>>20, rep.FinalRSS>>20, rep.Growth>>20, limit>>20)
	} else {
		rep.Verdict = fmt.Sprintf("GROWTH: RSS %d MB at 20–40%% of the run, %d MB over the last 20%% (%+d MB, limit %d MB)",
			rep.BaselineRSS>>20, rep.FinalRSS>>20, rep.Growth>>20, limit>>20)
	}

	var t strings.Builder
	t.WriteString("| time | collector RSS | Go heap in use | goroutines | events/s accepted |\n|---|---|---|---|---|\n")
	step := max(1, len(rep.Points)/10)
	for i, p := range rep.Points {
		if i%step == 0 || i == len(rep.Points)-1 {
			fmt.Fprintf(&t, "| %s | %d MB | %.0f MB | %.0f | %s |\n", (time.Duration(p.AtSeconds) * time.Second).String(), p.RSSBytes>>20, p.HeapInuse/(1<<20), p.Goroutines, num(p.EventsPerS))
		}
	}
	fmt.Println()
	fmt.Print(t.String())
	fmt.Println()
	for _, name := range []string{"batch", "track", "pixel"} {
		r := rep.Load[name]
		fmt.Printf("%s: %s req/s, %s events/s, p99 %s ms, %d failed\n", name, num(r.ReqPerSec), num(r.EventsPerS), ms(r.P99Ms), r.Errors)
	}
	fmt.Printf("peak RSS %d MB; %s\n", rep.PeakRSS>>20, rep.Verdict)
	path := filepath.Join(filepath.Dir(out), "soak.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	bs, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(bs, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(strings.TrimSuffix(path, ".json")+".md", []byte(t.String()), 0o644); err != nil {
		return err
	}
	fmt.Println("Results:", path)
	if strings.HasPrefix(rep.Verdict, "GROWTH") {
		return fmt.Errorf("collector memory grew during the soak: %s", rep.Verdict)
	}
	return col.stop()
}
