package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

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
	"github.com/valyala/fasthttp"
)

// Child roles: each runs in its own process (leadbench re-executes itself),
// so its CPU, allocations and RSS are its own and not the load generator's
// or the in-process Kafka broker's.
const (
	roleNoop      = "noop"      // fasthttp server whose handler does nothing: the HTTP ceiling
	roleCollector = "collector" // ingest.Collector writing through stream.Producer
	roleProcessor = "processor" // processor.Processor against Redis
	roleSink      = "sink"      // sink.Sink into ClickHouse
	rolePipeline  = "pipeline"  // collector, processor and sink in one process, like startPipeline
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
}

func (c *childConfig) args() []string {
	return []string{"child", "-role", c.role, "-http", c.httpAddr, "-admin", c.adminAddr, "-brokers", c.brokers,
		"-redis", c.redisAddr, "-clickhouse", c.clickhouse, "-database", c.database}
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	stopAdmin, err := serveChildAdmin(c.adminAddr, reg)
	if err != nil {
		return err
	}
	defer stopAdmin()

	switch c.role {
	case roleNoop:
		return runNoop(ctx, c.httpAddr)
	case roleCollector:
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
func flagDefaults(register func(fs *flag.FlagSet)) {
	fs := flag.NewFlagSet("defaults", flag.PanicOnError)
	register(fs)
	_ = fs.Parse(nil)
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
	producer, err := stream.NewProducer(ctx, icfg.ProducerConfig(), log, prometheus.WrapRegistererWith(prometheus.Labels{"stage": "collector"}, reg))
	if err != nil {
		return fmt.Errorf("collector producer: %w", err)
	}
	defer producer.Close()
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
