// Command leadbench is leadstream's benchmark harness (`make bench`). It
// measures every stage of the pipeline and, in the same run on the same
// machine, the ceiling of the component underneath it, and prints one
// markdown table with each stage's figure, its ceiling and the ratio:
//
//	collector POST /v1/track, GET /o/{token}.gif   vs a no-op fasthttp handler under the same load
//	collector POST /v1/batch (50 events)           vs raw franz-go produce (acks=all) of the same records
//	processor alone on a pre-filled topic          vs the processor's Redis work alone (processor.Scorer), Redis CPU vs a floor
//	sink alone on a pre-filled topic               vs clickhouse-client inserting the same rows (Native)
//	end to end (collector + processor + sink)      highest offered rate with bounded lag; accept-to-score
//	                                               and accept-to-MQL latency at 10k events/s
//	collector /v1/track and the pixel under wrk    vs the no-op handler under the same wrk script (wrk.go),
//	                                               with collector, broker and wrk CPU and the tail's facts
//
// It starts its own services: redis-server and clickhouse-server on free
// loopback ports (package localsvc) and an in-process kfake Kafka broker. The
// collector, the no-op server, the processor, the sink and the end-to-end
// pipeline each run in a child process (leadbench re-executes itself with
// "child"), so their CPU profiles, allocations and RSS are theirs alone; the
// load generator (a fasthttp client, loopback only) and the broker run in
// the harness process. Every scenario runs for a fixed time after a warm-up.
//
// Usage (from the repository root):
//
//	go run ./bench/cmd/leadbench              # full run, under 10 minutes on 2 cores
//	go run ./bench/cmd/leadbench -quick       # about 2 minutes, shorter windows
//	go run ./bench/cmd/leadbench -soak 5m     # collector RSS over a 5-minute soak
//	go run ./bench/cmd/leadbench -only collector,wrk,stages,e2e
//	go run ./bench/cmd/leadbench -only e2e-latency   # the end-to-end latency window alone (about 20 s)
//	go run ./bench/cmd/leadbench -only wrk -set kafka.compression=zstd
//	go run ./bench/cmd/leadbench -only wrk -collector-exe /tmp/leadstream-old   # an older build, same scenario
//
// Results: the table on stdout (also bench/results/latest.md), every figure
// and its details in bench/results/latest.json, CPU and allocation profiles
// of the collector and the processor under bench/results/profiles. A service
// that cannot start, a crashed stage or a 200 for an event that is not in
// Kafka makes the run fail with a non-zero exit status.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "child" {
		if err := runChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "leadbench child:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "leadbench:", err)
		os.Exit(1)
	}
}

// harness holds the state of one run.
type harness struct {
	dir        string // temporary directory: service data, child logs, Native file
	profileDir string
	svc        *services
	rep        *report
	start      time.Time

	warmup, measure    time.Duration
	prefill            int // records pre-filled for the processor and sink
	nativeRows         int // rows of the clickhouse-client ceiling
	stepRates          []float64
	stepDur            time.Duration
	refine             int     // bisection steps after the first rate that does not hold
	trace              bool    // also take 3 s execution traces with the profiles
	recordBytes        float64 // average record size of the mix
	peakCollectorRSS   int64
	collectorExe       string // wrk scenarios: a leadstream binary to measure instead of this tree's collector
	wrkRetention       int64  // wrk scenarios: retention bytes per partition of the broker (0 = unbounded)
	wrkPrefill         int    // wrk scenarios: records written to the broker before each collector run
	runSeq             int
	runTag             string
	redisFloorUsec     float64 // Redis CPU per event of a pipelined HSET + SADD (redisFloor)
	warehouseShares    bool    // e2e latency window: clickhouse-server keeps the pipeline's CPU priority (not SCHED_IDLE)
	warehouseStuckIdle error   // clickhouse-server could not be moved back from SCHED_IDLE after the latency window
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(h.start).Seconds(), fmt.Sprintf(format, args...))
}

// runID returns a fresh prefix for message ids, so no two scenarios (and no
// two runs against the same services) share event ids.
func (h *harness) runID(what string) string {
	h.runSeq++
	return what + h.runTag + strconv.Itoa(h.runSeq)
}

func (h *harness) load(addr string, conns int, build requestFn) load {
	return load{addr: addr, conns: conns, warmup: h.warmup, measure: h.measure, build: build}
}

func (h *harness) chPort() string {
	_, p, _ := net.SplitHostPort(h.svc.clickhouse.Addr)
	return p
}

func run() error {
	var (
		quick    = flag.Bool("quick", false, "short windows and fewer steps: about 2 minutes")
		soak     = flag.Duration("soak", 0, "instead of the benchmark, run the collector under load for this long and report its RSS over time (e.g. 5m)")
		out      = flag.String("out", "bench/results/latest.json", "JSON results file (the table also goes next to it as .md)")
		profiles = flag.String("profiles", "bench/results/profiles", "directory for CPU and allocation profiles of the collector and processor; empty = none")
		only     = flag.String("only", "collector,wrk,stages,e2e", "comma-separated scenario groups to run: collector, wrk, stages, e2e (e2e-latency: its latency part alone)")
		keep     = flag.Bool("keep", false, "keep the temporary directory (service data and child logs)")
		warmup   = flag.Duration("warmup", 0, "warm-up before each measured window (default 3s, -quick 1s)")
		measure  = flag.Duration("measure", 0, "measured window of each scenario (default 10s, -quick 4s)")
		selfProf = flag.String("harness-cpuprofile", "", "write a CPU profile of the harness itself (load generator, broker) to this file")
		trace    = flag.Bool("trace", false, "with the profiles, also take a 3 s execution trace of each profiled stage (go tool trace)")
		colExe   = flag.String("collector-exe", "", "wrk scenarios: measure `leadstream collector` of this binary (e.g. built from an older commit) instead of this tree's collector")
		wrkRet   = flag.Int64("wrk-retention", wrkRetention, "wrk scenarios: retention bytes per partition of the broker process (with 1 MiB segments); 0 = kfake's defaults: every record kept, 100 MiB segments")
		prefill  = flag.Int("wrk-prefill", 0, "wrk scenarios: records of the mix written to the broker before each collector run (a broker that already holds data)")
		whShares = flag.Bool("warehouse-shares-cores", false, "end-to-end latency window: leave clickhouse-server at the pipeline's CPU priority (by default its threads run SCHED_IDLE during the window, standing in for the warehouse's own machines)")
	)
	flag.Var(setFlag{}, "set", "name=value: set a stage flag for this run, as an operator would (repeatable; e.g. -set kafka.compression=zstd)")
	flag.Parse()
	if err := checkFlagSets(); err != nil {
		return err
	}
	if *selfProf != "" {
		f, err := os.Create(*selfProf)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	h := &harness{start: time.Now(), profileDir: *profiles, trace: *trace, runTag: strconv.FormatUint(rand.Uint64()%1e6, 36),
		collectorExe: *colExe, wrkRetention: *wrkRet, wrkPrefill: *prefill, warehouseShares: *whShares}
	h.warmup, h.measure, h.stepDur = 3*time.Second, 10*time.Second, 12*time.Second
	h.prefill, h.nativeRows = 1_500_000, 1_000_000
	h.stepRates = []float64{10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 80_000, 100_000, 120_000, 150_000}
	h.refine = 3
	mode := "full"
	if *quick {
		mode = "quick"
		h.warmup, h.measure, h.stepDur = time.Second, 4*time.Second, 8*time.Second
		h.prefill, h.nativeRows = 400_000, 400_000
		h.stepRates = []float64{10_000, 25_000, 40_000, 55_000, 70_000, 100_000}
		h.refine = 1
	}
	if *warmup > 0 {
		h.warmup = *warmup
	}
	if *measure > 0 {
		h.measure = *measure
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var err error
	if h.dir, err = os.MkdirTemp("", "leadbench-"); err != nil {
		return err
	}
	if *keep {
		h.logf("temporary directory (kept): %s", h.dir)
	} else {
		defer os.RemoveAll(h.dir)
	}
	if h.profileDir != "" {
		if err := os.MkdirAll(h.profileDir, 0o755); err != nil {
			return err
		}
	}
	if *soak > 0 {
		return h.soak(ctx, *soak, *out)
	}

	h.logf("starting redis-server and clickhouse-server")
	if h.svc, err = startServices(ctx, h.dir); err != nil {
		return err
	}
	defer h.svc.stop()
	h.rep = &report{Started: h.start.UTC(), Mode: mode, Warmup: h.warmup.String(), Measure: h.measure.String(),
		Machine: machineFacts(ctx, h.chPort()), Workload: workloadDoc, Ceilings: map[string]*ceiling{}, Profiles: h.profileDir}

	groups := map[string]func(context.Context) error{"collector": h.collectorScenarios, "wrk": h.wrkScenarios, "stages": h.stageScenarios, "e2e": func(ctx context.Context) error { return h.e2eScenarios(ctx, true) },
		"e2e-latency": func(ctx context.Context) error { return h.e2eScenarios(ctx, false) }}
	var failed []error
	for _, g := range strings.Split(*only, ",") {
		g = strings.TrimSpace(g)
		f, ok := groups[g]
		if !ok {
			return fmt.Errorf("-only: unknown group %q (want collector, wrk, stages, e2e, e2e-latency)", g)
		}
		if err := f(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			h.logf("FAILED: %s: %v", g, err)
			h.rep.Errors = append(h.rep.Errors, g+": "+err.Error())
			failed = append(failed, fmt.Errorf("%s: %w", g, err))
		}
	}
	h.finish()
	h.rep.Seconds = time.Since(h.start).Seconds()
	table := h.rep.table()
	fmt.Println()
	fmt.Print(table)
	fmt.Println()
	fmt.Printf("Machine: %d × %s, %s, Linux %s, %s; %s; ClickHouse %s. Commit %s. Mode %s (warm-up %s, window %s), %.0f s.\n",
		h.rep.Machine.CPUs, h.rep.Machine.CPUModel, h.rep.Machine.MemTotal, h.rep.Machine.Kernel, h.rep.Machine.GoVersion,
		h.rep.Machine.Redis, h.rep.Machine.ClickHouse, h.rep.Machine.Commit, mode, h.warmup, h.measure, h.rep.Seconds)
	for _, s := range h.rep.Stages {
		for _, n := range s.Notes {
			fmt.Printf("Note (%s): %s\n", s.ID, n)
		}
	}
	for _, s := range h.rep.Skipped {
		fmt.Println("Not measured:", s)
	}
	for _, c := range h.rep.Contended {
		fmt.Println("Contended:", c)
	}
	for _, e := range h.rep.Errors {
		fmt.Println("FAILED:", e)
	}
	if err := h.rep.write(*out); err != nil {
		return err
	}
	md := strings.TrimSuffix(*out, filepath.Ext(*out)) + ".md"
	if err := os.WriteFile(md, []byte(table), 0o644); err != nil {
		return err
	}
	fmt.Printf("Results: %s, %s", *out, md)
	if h.profileDir != "" {
		fmt.Printf(", profiles in %s", h.profileDir)
	}
	fmt.Println()
	return errors.Join(failed...)
}

// finish adds the rows that combine scenarios: the end-to-end bottleneck
// ceiling and the collector's peak memory.
func (h *harness) finish() {
	var low *ceiling
	for _, id := range []string{"kafka_produce", "kafka_consume", "redis_apply", "clickhouse_native"} {
		if c, ok := h.rep.Ceilings[id]; ok && c.Figure > 0 && (low == nil || c.Figure < low.Figure) {
			low = c
		}
	}
	if low != nil {
		h.rep.addCeiling(&ceiling{ID: "e2e_bottleneck", What: "lowest component ceiling: " + low.What, Figure: low.Figure, Unit: low.Unit})
	}
	if h.peakCollectorRSS > 0 {
		mb := float64(h.peakCollectorRSS) / (1 << 20)
		h.rep.addStage(&stageResult{ID: "collector_rss", Stage: "collector peak RSS under the load above (VmRSS, sampled every 250 ms)",
			Figure: mb, Unit: "MB", custom: fmt.Sprintf("%.0f MB", mb), Target: "< 200 MB"})
	}
	h.rep.relink()
}

const workloadDoc = "every scenario uses one event mix (bench/cmd/leadbench/workload.go): 45% anonymous page views, " +
	"20% Email Opened, 15% Email Link Clicked, 2% Form Submitted with both ids (merges), 3% identify with traits, " +
	"15% custom events no rule matches; 20,000 leads, 100,000 anonymous ids; /v1/track sends the track calls only " +
	"(page views and identifies become email clicks); the pixel cycles over 10,000 signed tokens"
