// Command leadstream is the one binary of leadstream: each subcommand runs a
// role (collector, processor, sink), all of them (dev), or a tool (migrate,
// rules check). This file only parses configuration and wires stages together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/leadstream/leadstream/audience"
	"github.com/leadstream/leadstream/erasure"
	"github.com/leadstream/leadstream/ingest"
	"github.com/leadstream/leadstream/leadapi"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/processor"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/sink"
	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const help = `leadstream — real-time tracking and lead scoring for B2B marketing automation

usage: leadstream <command> [flags]

roles:
  collector     HTTP ingest (Segment-compatible API, lead API) -> Kafka
  processor     Kafka -> identity, scoring rules, rolling scores in Redis -> MQL records on Kafka
  sink          Kafka -> batched inserts into ClickHouse
  notifier      Kafka mql (and mqa) -> webhooks, Slack, e-mail (LEADSTREAM_NOTIFY_CONFIG)
  dev           every role in one process, with an embedded Kafka broker and local
                redis-server / clickhouse-server started when no addresses are given

tools:
  migrate       create or upgrade the ClickHouse schema
  rules check FILE   validate a scoring rules file
  costs import FILE.csv   import campaign costs (campaign,day,channel,cost,currency) for ROMI
  report KIND [-html FILE]   analytics from ClickHouse: funnel, romi, campaigns, velocity,
                bands, weekly, accounts, account-romi; -format table|csv|json,
                -from/-to DATE, -campaign NAME
  rescore -rules FILE [-apply]   recompute every lead's scores from the history in ClickHouse
  erase LEAD_ID  erase a person (GDPR art. 17): Redis state, ClickHouse rows, tombstone
                on <prefix>erasures (also DELETE /v1/leads/{id} with the secret key)
  retention -older-than DURATION [-apply]   drop whole monthly ClickHouse partitions
                older than DURATION (dry run unless -apply)
  token open|click|verify   print a signed email-open pixel or click URL, or check
                one (LEADSTREAM_TOKEN_KEYS)
  healthcheck [URL]  exit 0 when URL (default http://127.0.0.1:8080/readyz) answers 2xx:
                the container health check (the image has no shell or curl)
  version       print the version

Run 'leadstream <command> -h' for the flags of a command; every flag can also be
set through an environment variable (kafka.brokers -> LEADSTREAM_KAFKA_BROKERS).
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, help)
		os.Exit(2)
	}
	log := newLogger()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "collector":
		err = runCollector(ctx, args, log)
	case "processor":
		err = runProcessor(ctx, args, log)
	case "sink":
		err = runSink(ctx, args, log)
	case "notifier":
		err = runNotifier(ctx, args, log)
	case "dev":
		err = runDev(ctx, args, log)
	case "migrate":
		err = runMigrate(ctx, args, log)
	case "rules":
		err = runRules(args)
	case "report":
		err = runReport(ctx, args)
	case "costs":
		err = runCosts(ctx, args, log)
	case "rescore":
		err = runRescore(ctx, args)
	case "erase":
		err = runErase(ctx, args, log)
	case "retention":
		err = runRetention(ctx, args, log)
	case "token":
		err = runToken(args)
	case "healthcheck":
		err = runHealthcheck(args)
	case "version", "-version", "--version":
		fmt.Println("leadstream", version)
	case "help", "-h", "--help":
		fmt.Print(help)
	default:
		fmt.Fprintf(os.Stderr, "leadstream: unknown command %q\n\n%s", os.Args[1], help)
		os.Exit(2)
	}
	if err != nil {
		log.Error("leadstream "+os.Args[1]+" failed", "err", err)
		fmt.Fprintln(os.Stderr, "leadstream:", err)
		os.Exit(1)
	}
}

func newLogger() *slog.Logger {
	level := slog.LevelInfo
	if err := level.UnmarshalText([]byte(os.Getenv("LEADSTREAM_LOG_LEVEL"))); err != nil {
		level = slog.LevelInfo
	}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	if os.Getenv("LEADSTREAM_LOG_FORMAT") == "json" {
		h = slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	}
	return slog.New(h)
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "leadstream_build_info",
		Help: "Always 1; the labels say which build runs: version (git describe) and goversion."}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	reg.MustRegister(build)
	return reg
}

// readyTimeout bounds each check of /readyz.
const readyTimeout = 2 * time.Second

// kafkaReady returns a /readyz check of the brokers and a function that
// releases it.
func kafkaReady(cfg stream.Config) (check func(context.Context) error, release func(), err error) {
	p, err := stream.NewProber(cfg)
	if err != nil {
		return nil, nil, err
	}
	return p.Probe, p.Close, nil
}

// rulesFlag registers -rules (LEADSTREAM_RULES); empty = the embedded default rules.
func rulesFlag(fs *flag.FlagSet) *string {
	return fs.String("rules", "", "scoring rules YAML file; empty = the embedded default rules")
}

func loadRules(path string) (*scoring.Rules, error) {
	if path == "" {
		return scoring.Default(), nil
	}
	return scoring.Load(path)
}

// stoppingEraser ends an erasure in flight when the role stops: a DELETE
// may take a minute, the collector's shutdown waits for requests only as
// long as a produce may take. The request is answered 503 (erasing is
// idempotent: it is sent again) and the collector exits cleanly.
type stoppingEraser struct {
	leadapi.Eraser
	stop context.Context
}

func (s stoppingEraser) Erase(ctx context.Context, leadID string, wait time.Duration) (*erasure.Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.stop, cancel)()
	return s.Eraser.Erase(ctx, leadID, wait)
}

// newCollector builds the collector with the lead API mounted on it.
// store may be nil (no Redis): the lead API then answers 503; eraser may be
// nil (no ClickHouse): DELETE /v1/leads/{id} then answers 503.
func newCollector(cfg ingest.Config, producer ingest.Producer, store *leadstate.Store, r *scoring.Rules, log *slog.Logger, reg *prometheus.Registry, eraser leadapi.Eraser) (*ingest.Collector, error) {
	c, err := ingest.New(cfg, producer, log, reg)
	if err != nil {
		return nil, err
	}
	c.SetGatherer(reg)
	api := leadapi.New(store, r.Models, cfg.SecretKey)
	api.SetLogger(log)
	if eraser != nil {
		api.SetEraser(eraser)
	}
	c.Mount(leadapi.Prefix, api.Serve)
	c.Mount(leadapi.AccountPrefix, api.ServeAccount)
	if store != nil {
		c.SetAudiences(audience.New(store, r))
	}
	return c, nil
}

// checkKafka logs what the Kafka settings do unsafely, then checks that the
// brokers answer with them (stream.Check).
func checkKafka(ctx context.Context, c stream.Config, log *slog.Logger) error {
	for _, w := range c.Security.Warnings() {
		log.Warn(w)
	}
	return stream.Check(ctx, c)
}

func runCollector(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("collector", flag.ContinueOnError)
	var cfg ingest.Config
	var rcfg leadstate.Config
	var chcfg warehouse.Config // optional: DELETE /v1/leads/{id} (erasure) needs it
	cfg.Kafka.RegisterFlags(fs)
	rcfg.RegisterFlags(fs)
	chcfg.RegisterFlags(fs)
	cfg.RegisterFlags(fs)
	rules := rulesFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if chcfg.Addr != "" {
		if err := chcfg.Validate(); err != nil {
			return err
		}
	}
	r, err := loadRules(*rules)
	if err != nil {
		return err
	}
	if err := checkKafka(ctx, cfg.Kafka, log); err != nil {
		return err
	}
	reg := newRegistry()
	if err := stream.EnsureTopics(ctx, cfg.Kafka); err != nil {
		log.Warn("could not create topics; expecting them to exist", "err", err)
	}
	producer, err := stream.NewProducer(ctx, cfg.ProducerConfig(), log, prometheus.WrapRegistererWith(prometheus.Labels{"stage": "collector"}, reg))
	if err != nil {
		return fmt.Errorf("connecting to kafka: %w", err)
	}
	defer producer.Close()
	var store *leadstate.Store
	if rcfg.Addr != "" {
		rdb, err := leadstate.Open(ctx, rcfg)
		if err != nil {
			return err
		}
		defer rdb.Close()
		store = leadstate.NewStore(rdb)
	} else {
		log.Warn("no redis.addr: the lead API answers 503")
	}
	var eraser leadapi.Eraser
	if store != nil && chcfg.Addr != "" {
		// Erasure connects when asked; a ClickHouse that refuses the
		// collector (credentials, TLS, cluster settings) is told now, not at
		// the first erasure. One that does not answer may come back: warned.
		if err := checkClickHouse(ctx, chcfg); err != nil {
			if !unreachable(err) {
				return fmt.Errorf("erasure: %w", err)
			}
			log.Warn("clickhouse not reachable at start: DELETE /v1/leads/{id} answers 503 until it is", "err", err)
		}
		e := erasure.New(erasure.Config{Kafka: cfg.Kafka, ClickHouse: chcfg}, store, log, reg)
		defer e.Close()
		eraser = stoppingEraser{e, ctx}
	} else {
		log.Info("no clickhouse.addr (or redis.addr): DELETE /v1/leads/{id} (erasure) answers 503")
	}
	c, err := newCollector(cfg, producer, store, r, log, reg, eraser)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

func runProcessor(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("processor", flag.ContinueOnError)
	var cfg processor.Config
	var rcfg leadstate.Config
	cfg.Kafka.RegisterFlags(fs)
	rcfg.RegisterFlags(fs)
	cfg.RegisterFlags(fs)
	rules := rulesFlag(fs)
	admin := fs.String("http.addr", ":9101", "address of /healthz, /readyz and /metrics")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := errors.Join(cfg.Validate(), rcfg.Validate()); err != nil {
		return err
	}
	r, err := loadRules(*rules)
	if err != nil {
		return err
	}
	if err := checkKafka(ctx, cfg.Kafka, log); err != nil {
		return err
	}
	rdb, err := leadstate.Open(ctx, rcfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	kafkaCheck, release, err := kafkaReady(cfg.Kafka)
	if err != nil {
		return err
	}
	defer release()
	reg := newRegistry()
	if err := stream.EnsureTopics(ctx, cfg.Kafka); err != nil {
		log.Warn("could not create topics; expecting them to exist", "err", err)
	}
	p, err := processor.New(cfg, r, leadstate.NewStore(rdb), log, reg)
	if err != nil {
		return err
	}
	stopAdmin, err := serveAdmin(*admin, reg, func(ctx context.Context) error {
		if !p.Running() {
			return errors.New("starting: kafka clients not up yet")
		}
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		return kafkaCheck(ctx)
	}, log)
	if err != nil {
		return err
	}
	defer stopAdmin()
	return p.Run(ctx)
}

func runSink(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	var cfg sink.Config
	cfg.Kafka.RegisterFlags(fs)
	cfg.ClickHouse.RegisterFlags(fs)
	cfg.RegisterFlags(fs)
	cfg.RegisterAccountFlags(fs)
	admin := fs.String("http.addr", ":9102", "address of /healthz, /readyz and /metrics")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := checkKafka(ctx, cfg.Kafka, log); err != nil {
		return err
	}
	kafkaCheck, release, err := kafkaReady(cfg.Kafka)
	if err != nil {
		return err
	}
	defer release()
	reg := newRegistry()
	if err := stream.EnsureTopics(ctx, cfg.Kafka); err != nil {
		log.Warn("could not create topics; expecting them to exist", "err", err)
	}
	s, err := sink.New(cfg, log, reg)
	if err != nil {
		return err
	}
	stopAdmin, err := serveAdmin(*admin, reg, func(ctx context.Context) error {
		if !s.Ready() {
			return errors.New("clickhouse not reachable")
		}
		if !s.Running() {
			return errors.New("starting: kafka clients not up yet")
		}
		return kafkaCheck(ctx)
	}, log)
	if err != nil {
		return err
	}
	defer stopAdmin()
	return s.Run(ctx)
}

func runMigrate(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	var cfg warehouse.Config
	cfg.RegisterFlags(fs)
	rebuild := fs.Bool("rebuild-events", false, "give an events table created by an older release its current sort key (type, toDate(event_time), event_id) by copying it into a new table while the sink keeps writing; the old table is kept as events_old_sort_key (README \"Rebuilding the events table\")")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *rebuild {
		// A month of a large table takes a while to copy, and clickhouse-go
		// bounds a whole query's wait, not the time between packets.
		cfg.ReadTimeout = 24 * time.Hour
	}
	conn, err := warehouse.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := warehouse.MigrateCluster(ctx, conn, cfg.Database, cfg.Cluster); err != nil {
		return err
	}
	if *rebuild {
		began := time.Now()
		res, err := warehouse.RebuildEvents(ctx, conn, cfg.Database, cfg.Cluster, log)
		if err != nil {
			return fmt.Errorf("rebuilding %s.events: %w (run it again to finish: nothing is lost)", cfg.Database, err)
		}
		if !res.Rebuilt {
			log.Info("events already has its current sort key: nothing to rebuild", "database", cfg.Database)
		} else {
			old := warehouse.TableEventsOldSortKey
			if cfg.Cluster != "" {
				old += warehouse.LocalSuffix + " ON CLUSTER " + cfg.Cluster
			}
			log.Info("events rebuilt with its current sort key", "database", cfg.Database, "months", res.Partitions,
				"rows", res.Rows, "erasures_run_again", res.Mutations, "took", time.Since(began).Round(time.Second),
				"old_table", cfg.Database+"."+old, "next", "check the new table, then DROP TABLE "+cfg.Database+"."+old)
		}
	} else if err := warehouse.WarnOutdatedEventsKey(ctx, conn, cfg.Database, cfg.Cluster, log); err != nil {
		return err
	}
	log.Info("clickhouse schema is up to date", "database", cfg.Database)
	return nil
}

func runRules(args []string) error {
	if helpAsked(args) {
		fmt.Println("usage: leadstream rules check FILE   (checks a rules file; prints FILE:LINE: field: reason for every problem)")
		return nil
	}
	if len(args) < 1 || args[0] != "check" {
		return errors.New("usage: leadstream rules check FILE")
	}
	if len(args) != 2 {
		return errors.New("usage: leadstream rules check FILE")
	}
	r, err := scoring.Load(args[1])
	if err != nil {
		return err
	}
	var names []string
	for _, m := range r.Models {
		desc := fmt.Sprintf("%s (%d rules, %d fit rules, threshold %g", m.Name, len(m.Rules), len(m.Fit), m.Threshold)
		if a := m.Accounts; a != nil {
			desc += fmt.Sprintf("; accounts: threshold %g, %d fit rules", a.Threshold, len(a.Fit))
		}
		names = append(names, desc+")")
	}
	fmt.Printf("%s: ok: %s\n", args[1], strings.Join(names, "; "))
	return nil
}

// checkClickHouse connects to ClickHouse once, as a role that needs it later.
func checkClickHouse(ctx context.Context, cfg warehouse.Config) error {
	conn, err := warehouse.Open(ctx, cfg)
	if err != nil {
		return err
	}
	return conn.Close()
}

// unreachable reports whether err is a server not answering (refused
// connection, unreachable host, timeout) rather than one that answered and
// refused (credentials, TLS, settings).
func unreachable(err error) bool {
	var ne net.Error
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}
