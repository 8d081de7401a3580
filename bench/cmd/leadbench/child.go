package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/leadstream/leadstream/audience"
	"github.com/leadstream/leadstream/ingest"
	"github.com/leadstream/leadstream/ingest/token"
	"github.com/leadstream/leadstream/leadapi"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/processor"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/sink"
	"github.com/leadstream/leadstream/stream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/valyala/fasthttp"
)

// Child roles: each runs in its own process (leadbench re-executes itself),
// so its CPU, allocations and RSS are its own and not the load generator's
// or the in-process Kafka broker's.
const (
	roleNoop      = "noop"      // fasthttp server whose handler does nothing: the HTTP ceiling
	roleCollector = "collector" // ingest.Collector writing through stream.Producer
	// roleNoKafka is ingest.Collector with a producer that acknowledges
	// every record at once and keeps none: everything the collector does for
	// a request except Kafka (wrk scenarios: how much of the gap to the
	// no-op is the handler's work, how much the wait for acks=all).
	roleNoKafka   = "collector-without-kafka"
	roleProcessor = "processor" // processor.Processor against Redis
	roleSink      = "sink"      // sink.Sink into ClickHouse
	rolePipeline  = "pipeline"  // collector, processor and sink in one process, like startPipeline
	roleBroker    = "broker"    // the kfake Kafka broker alone, so its CPU is measured apart (wrk scenarios)
)

// childConfig is what the harness passes to a child on its command line.
type childConfig struct {
	role       string
	httpAddr   string // collector / noop / pipeline listen address
	adminAddr  string // /metrics and /debug/pprof
	brokers    string
	redisAddr  string
	clickhouse string
	database   string
	// retention bounds each partition of the broker role (bytes; 0 = keep
	// every record in memory).
	retention int64
	// exe, for a collector, runs `exe collector` (a leadstream binary, e.g.
	// one built from an older commit) instead of this harness's own child:
	// the same settings, but no pprof and no READY line (readiness is /readyz).
	exe string
}

func (c *childConfig) args() []string {
	args := []string{"child", "-role", c.role, "-http", c.httpAddr, "-admin", c.adminAddr, "-brokers", c.brokers,
		"-redis", c.redisAddr, "-clickhouse", c.clickhouse, "-database", c.database, "-retention", strconv.FormatInt(c.retention, 10)}
	for _, s := range flagSets {
		args = append(args, "-set", s)
	}
	return args
}

// flagSets are leadbench's -set name=value settings: every stage and the
// harness's own Kafka client apply them to the flags of the same names, so a
// run can measure a non-default setting (kafka.compression=zstd,
// kafka.partitions=1 …) exactly as an operator would set it.
var flagSets []string

// setFlag is a flag.Value collecting repeated -set name=value.
type setFlag struct{}

func (setFlag) String() string { return strings.Join(flagSets, " ") }

func (setFlag) Set(s string) error {
	if name, _, ok := strings.Cut(s, "="); !ok || name == "" {
		return fmt.Errorf("-set %q: want name=value, e.g. kafka.compression=zstd", s)
	}
	flagSets = append(flagSets, s)
	return nil
}

// benchCollectorEnv are the collector's settings beyond the defaults, for
// both the harness's own collector (collectorConfig) and a leadstream binary
// (-collector-exe), which gets them as environment variables so that one
// built from an older commit, without these flags, ignores them. The bench
// write key is a server key: the load sends email events, deals and
// backdated events, as a backend does. The load generators send from
// 127.0.0.1 at high rates over many connections: no rate or connection
// limit, which production keeps for browser traffic. -set overrides them.
var benchCollectorEnv = []string{
	"LEADSTREAM_SERVER_WRITE_KEYS=" + benchWriteKey,
	"LEADSTREAM_COLLECTOR_RATE_LIMIT_IP=0",
	"LEADSTREAM_COLLECTOR_RATE_LIMIT_KEY=0",
	"LEADSTREAM_COLLECTOR_MAX_CONNS_PER_IP=0",
}

// setByUser reports whether -set names the flag.
func setByUser(name string) bool {
	for _, s := range flagSets {
		if strings.HasPrefix(s, name+"=") {
			return true
		}
	}
	return false
}

// externalArgs are the command line of `exe collector` for c: the flags the
// harness's own collector child gets from collectorConfig, plus -set (its
// other settings are benchCollectorEnv).
func (c *childConfig) externalArgs() []string {
	args := []string{"collector", "-http.addr", c.httpAddr, "-kafka.brokers", c.brokers, "-write-keys", benchWriteKey,
		"-secret-key", benchSecretKey, "-token-keys", benchTokenKID + ":" + benchTokenKey}
	for _, s := range flagSets {
		args = append(args, "-"+s)
	}
	return args
}

// runChild is the entry point of a child process: it serves its role until
// SIGTERM and prints "READY" on stdout once it accepts work.
func runChild(args []string) error {
	var c childConfig
	fs := flag.NewFlagSet("child", flag.ContinueOnError)
	fs.StringVar(&c.role, "role", "", "noop | collector | processor | sink | pipeline")
	fs.StringVar(&c.httpAddr, "http", "", "listen address of the HTTP roles")
	fs.StringVar(&c.adminAddr, "admin", "", "listen address of /metrics and /debug/pprof")
	fs.StringVar(&c.brokers, "brokers", "", "Kafka brokers")
	fs.StringVar(&c.redisAddr, "redis", "", "Redis address")
	fs.StringVar(&c.clickhouse, "clickhouse", "", "ClickHouse native address")
	fs.StringVar(&c.database, "database", "", "ClickHouse database")
	fs.Int64Var(&c.retention, "retention", 0, "broker: retention bytes per partition (0 = unbounded)")
	fs.Var(setFlag{}, "set", "name=value applied to the stage's flag of that name (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	reg := prometheus.NewRegistry()
	// Scheduler latencies and GC pauses as histograms: the wrk scenarios
	// read them to tell a stage starved of CPU or stopped by its GC from a
	// slow broker.
	reg.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler, collectors.MetricsGC)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	stopAdmin, err := serveChildAdmin(c.adminAddr, reg)
	if err != nil {
		return err
	}
	defer stopAdmin()

	switch c.role {
	case roleNoop:
		return runNoop(ctx, c.httpAddr)
	case roleBroker:
		return runBroker(ctx, c.httpAddr, c.retention)
	case roleCollector, roleNoKafka:
		return runCollectorChild(ctx, c, log, reg, false)
	case rolePipeline:
		return runCollectorChild(ctx, c, log, reg, true)
	case roleProcessor:
		store, closeStore, err := openStore(ctx, c.redisAddr)
		if err != nil {
			return err
		}
		defer closeStore()
		p, err := processor.New(processorConfig(c), scoring.Default(), store, log, reg)
		if err != nil {
			return err
		}
		fmt.Println("READY")
		return p.Run(ctx)
	case roleSink:
		s, err := sink.New(sinkConfig(c), log, reg)
		if err != nil {
			return err
		}
		fmt.Println("READY")
		return s.Run(ctx)
	}
	return fmt.Errorf("unknown child role %q", c.role)
}

// flagDefaults fills a configuration with the defaults of its flags, so every
// stage runs with exactly the settings an operator gets without flags.
// The -set settings whose names it has are applied on top.
func flagDefaults(register func(fs *flag.FlagSet)) {
	fs := flag.NewFlagSet("defaults", flag.PanicOnError)
	register(fs)
	_ = fs.Parse(nil)
	for _, s := range flagSets {
		name, value, _ := strings.Cut(s, "=")
		if fs.Lookup(name) == nil {
			continue
		}
		if err := fs.Set(name, value); err != nil {
			panic(fmt.Sprintf("-set %s: %v", s, err)) // checked by checkFlagSets before anything starts
		}
	}
}

func kafkaConfig(brokers string) stream.Config {
	var k stream.Config
	flagDefaults(k.RegisterFlags)
	k.Brokers = stream.SplitList(brokers)
	return k
}

func processorConfig(c childConfig) processor.Config {
	var p processor.Config
	flagDefaults(p.RegisterFlags)
	p.Kafka = kafkaConfig(c.brokers)
	return p
}

func sinkConfig(c childConfig) sink.Config {
	var s sink.Config
	flagDefaults(s.RegisterFlags)
	flagDefaults(s.ClickHouse.RegisterFlags)
	s.Kafka = kafkaConfig(c.brokers)
	s.ClickHouse.Addr, s.ClickHouse.Database = c.clickhouse, c.database
	return s
}

func collectorConfig(c childConfig) ingest.Config {
	var i ingest.Config
	flagDefaults(i.RegisterFlags)
	i.Kafka = kafkaConfig(c.brokers)
	i.HTTPAddr = c.httpAddr
	i.WriteKeys = []string{benchWriteKey}
	// The settings of benchCollectorEnv, unless -set gives others.
	i.ServerWriteKeys = []string{benchWriteKey}
	if !setByUser("collector.rate-limit-ip") {
		i.RateLimitIP = ingest.Rate{}
	}
	if !setByUser("collector.rate-limit-key") {
		i.RateLimitKey = ingest.Rate{}
	}
	if !setByUser("collector.max-conns-per-ip") {
		i.MaxConnsPerIP = 0
	}
	i.SecretKey = benchSecretKey
	i.TokenKeys = []token.Key{{ID: benchTokenKID, Secret: []byte(benchTokenKey)}}
	return i
}

func openStore(ctx context.Context, addr string) (*leadstate.Store, func(), error) {
	var rc leadstate.Config
	flagDefaults(rc.RegisterFlags)
	rc.Addr = addr
	rdb, err := leadstate.Open(ctx, rc)
	if err != nil {
		return nil, nil, err
	}
	return leadstate.NewStore(rdb), func() { rdb.Close() }, nil
}

// runCollectorChild runs the collector, and with withWorkers also the
// processor and the sink, wired as cmd/leadstream wires them.
func runCollectorChild(ctx context.Context, c childConfig, log *slog.Logger, reg *prometheus.Registry, withWorkers bool) error {
	icfg := collectorConfig(c)
	rules := scoring.Default()
	var producer ingest.Producer = discardProducer{}
	if c.role != roleNoKafka {
		p, err := stream.NewProducer(ctx, icfg.ProducerConfig(), log, prometheus.WrapRegistererWith(prometheus.Labels{"stage": "collector"}, reg))
		if err != nil {
			return fmt.Errorf("collector producer: %w", err)
		}
		defer p.Close()
		producer = p
	}
	var store *leadstate.Store
	if c.redisAddr != "" {
		s, closeStore, err := openStore(ctx, c.redisAddr)
		if err != nil {
			return err
		}
		defer closeStore()
		store = s
	}
	col, err := ingest.New(icfg, producer, log, reg)
	if err != nil {
		return err
	}
	col.SetGatherer(reg)
	col.Mount(leadapi.Prefix, leadapi.New(store, rules.Models, icfg.SecretKey).Serve)
	if store != nil {
		col.SetAudiences(audience.New(store, rules))
	}
	if _, err := col.Listen(); err != nil {
		return err
	}
	// Shutdown order as in cmd/leadstream: HTTP first, then the workers.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	if withWorkers {
		proc, err := processor.New(processorConfig(c), rules, store, log, reg)
		if err != nil {
			return err
		}
		snk, err := sink.New(sinkConfig(c), log, reg)
		if err != nil {
			return err
		}
		for name, run := range map[string]func(context.Context) error{"processor": proc.Run, "sink": snk.Run} {
			wg.Go(func() {
				if err := run(workCtx); err != nil {
					errc <- fmt.Errorf("%s: %w", name, err)
				}
			})
		}
	}
	colDone := make(chan error, 1)
	go func() { colDone <- col.Run(ctx) }()
	fmt.Println("READY")
	var runErr error
	select {
	case runErr = <-colDone:
	case runErr = <-errc:
		<-colDone
	}
	stopWork()
	wg.Wait()
	return runErr
}

// pixel is the 1×1 GIF the no-op server answers GETs with, like /o/{token}.gif.
var pixel = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

// discardProducer acknowledges records without writing them anywhere (the
// collector-without-kafka role: a measurement, never a way to run).
type discardProducer struct{}

func (discardProducer) Produce(context.Context, []stream.Record) error { return nil }
func (discardProducer) Healthy() bool                                  { return true }

// runNoop serves a handler that does no work, with the collector's server
// settings: the ceiling of any fasthttp handler on this machine.
func runNoop(ctx context.Context, addr string) error {
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if ctx.IsGet() {
				ctx.SetContentType("image/gif")
				ctx.SetBody(pixel)
				return
			}
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"success":true,"accepted":1}`)
		},
		Name:                         "leadstream",
		ReadTimeout:                  10 * time.Second,
		WriteTimeout:                 10 * time.Second,
		IdleTimeout:                  90 * time.Second,
		MaxRequestBodySize:           4 << 20,
		Concurrency:                  20000,
		DisablePreParseMultipartForm: true,
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Println("READY")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	return srv.Shutdown()
}

// runBroker serves a one-broker kfake cluster on addr until ctx ends. With
// retention > 0 it bounds every partition to that many bytes (applied every
// retentionPeriod), so its memory does not grow with the records written.
func runBroker(ctx context.Context, addr string, retention int64) error {
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return err
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port)}
	if retention > 0 {
		// kfake keeps each partition's active segment in one in-memory
		// file that grows by doubling (a copy of the whole file each time)
		// up to 100 MiB before it rolls; retention only drops closed
		// segments. Small segments bound both.
		opts = append(opts, kfake.BrokerConfigs(map[string]string{
			"log.retention.bytes": strconv.FormatInt(retention, 10),
			"log.segment.bytes":   strconv.FormatInt(min(retention/4, 1<<20), 10),
		}))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("starting kfake broker: %w", err)
	}
	defer c.Close()
	fmt.Println("READY")
	t := time.NewTicker(retentionPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if retention > 0 {
				c.ApplyRetention()
			}
		}
	}
}

// checkFlagSets refuses a -set whose name no stage has or whose value its
// flag does not accept, before anything starts.
func checkFlagSets() error {
	fs := flag.NewFlagSet("stages", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		k stream.Config
		i ingest.Config
		p processor.Config
		s sink.Config
		r leadstate.Config
	)
	for _, register := range []func(*flag.FlagSet){k.RegisterFlags, i.RegisterFlags, p.RegisterFlags, s.RegisterFlags, s.ClickHouse.RegisterFlags, r.RegisterFlags} {
		register(fs)
	}
	for _, set := range flagSets {
		name, value, _ := strings.Cut(set, "=")
		if fs.Lookup(name) == nil {
			return fmt.Errorf("-set %s: no stage has a flag %q", set, name)
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("-set %s: %w", set, err)
		}
	}
	return nil
}

// serveChildAdmin serves /metrics and /debug/pprof/ on addr.
func serveChildAdmin(addr string, reg *prometheus.Registry) (func(), error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("child admin listener: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "admin server:", err)
		}
	}()
	return func() { _ = srv.Close() }, nil
}
