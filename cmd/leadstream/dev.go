package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/leadstream/leadstream/erasure"
	"github.com/leadstream/leadstream/ingest"
	"github.com/leadstream/leadstream/ingest/demo"
	"github.com/leadstream/leadstream/ingest/token"
	"github.com/leadstream/leadstream/internal/localsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/notify"
	"github.com/leadstream/leadstream/processor"
	"github.com/leadstream/leadstream/sink"
	"github.com/leadstream/leadstream/stream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
)

// devTokenSecret signs email tokens in dev mode when LEADSTREAM_TOKEN_KEYS is
// not set (key id "dev"); it is public, so never use it elsewhere.
const devTokenSecret = "leadstream-dev-token-key"

// runDev runs every role in one process. Services without an address are
// provided locally: an in-process Kafka broker (kfake) with its data on disk,
// and redis-server / clickhouse-server as child processes, all under data-dir.
func runDev(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	var (
		kcfg stream.Config
		rcfg leadstate.Config
		icfg ingest.Config
		pcfg processor.Config
		scfg sink.Config
		ncfg notify.Config
	)
	kcfg.RegisterFlags(fs)
	rcfg.RegisterFlags(fs)
	scfg.ClickHouse.RegisterFlags(fs)
	icfg.RegisterFlags(fs)
	pcfg.RegisterFlags(fs)
	scfg.RegisterFlags(fs)
	ncfg.RegisterFlags(fs)
	rules := rulesFlag(fs)
	dataDir := fs.String("data-dir", ".data", "where the embedded broker, redis-server and clickhouse-server keep their data")
	kafkaPort := fs.Int("dev.kafka-port", 19092, "port of the embedded Kafka broker (when kafka.brokers is empty)")
	redisPort := fs.Int("dev.redis-port", 16379, "port of the local redis-server (when redis.addr is empty)")
	chPort := fs.Int("dev.clickhouse-port", 19000, "native port of the local clickhouse-server (when clickhouse.addr is empty)")
	chHTTPPort := fs.Int("dev.clickhouse-http-port", 18123, "HTTP port of the local clickhouse-server")
	if err := parse(fs, args); err != nil {
		return err
	}
	if len(icfg.WriteKeys) == 0 && len(icfg.ServerWriteKeys) == 0 {
		icfg.ServerWriteKeys = []string{"dev-server-key"}
	}
	if len(icfg.WriteKeys) == 0 {
		icfg.WriteKeys = []string{"dev-write-key"}
	}
	if icfg.SecretKey == "" {
		icfg.SecretKey = devSecretKey
	}
	if len(icfg.TokenKeys) == 0 {
		icfg.TokenKeys = []token.Key{{ID: "dev", Secret: []byte(devTokenSecret)}}
	}
	r, err := loadRules(*rules)
	if err != nil {
		return err
	}
	var dests []notify.Destination
	if ncfg.File != "" {
		if dests, err = notify.LoadFile(ncfg.File); err != nil {
			return err
		}
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}

	// Services, started in dependency order and stopped in reverse.
	if len(kcfg.Brokers) == 0 {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(*kafkaPort), kfake.DataDir(filepath.Join(dir, "kafka")))
		if err != nil {
			return portHint(fmt.Errorf("starting the embedded kafka broker on port %d (or set LEADSTREAM_KAFKA_BROKERS): %w", *kafkaPort, err),
				devPort{*kafkaPort, "dev.kafka-port"})
		}
		defer cluster.Close()
		kcfg.Brokers = cluster.ListenAddrs()
	}
	if rcfg.Addr == "" {
		srv, err := localsvc.StartRedis(ctx, filepath.Join(dir, "redis"), *redisPort, "--appendonly", "yes", "--appendfsync", "everysec")
		if err != nil {
			return startErr(ctx, "redis-server", "LEADSTREAM_REDIS_ADDR", err, devPort{*redisPort, "dev.redis-port"})
		}
		defer srv.Stop()
		rcfg.Addr = srv.Addr
	}
	if scfg.ClickHouse.Addr == "" {
		srv, err := localsvc.StartClickHouse(ctx, filepath.Join(dir, "clickhouse"), *chPort, *chHTTPPort)
		if err != nil {
			return startErr(ctx, "clickhouse-server", "LEADSTREAM_CLICKHOUSE_ADDR", err,
				devPort{*chPort, "dev.clickhouse-port"}, devPort{*chHTTPPort, "dev.clickhouse-http-port"})
		}
		defer srv.Stop()
		scfg.ClickHouse.Addr = srv.Addr
	}
	icfg.Kafka, pcfg.Kafka, scfg.Kafka = kcfg, kcfg, kcfg
	scfg.FromEmailDomain = pcfg.FromEmailDomain // accounts.from-email-domain, registered by the processor's flags
	if err := errors.Join(icfg.Validate(), pcfg.Validate(), scfg.Validate()); err != nil {
		return err
	}
	if err := checkKafka(ctx, kcfg, log); err != nil {
		return err
	}
	if err := stream.EnsureTopics(ctx, kcfg); err != nil {
		return err
	}
	rdb, err := leadstate.Open(ctx, rcfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	store := leadstate.NewStore(rdb)

	reg := newRegistry()
	producer, err := stream.NewProducer(ctx, icfg.ProducerConfig(), log, prometheus.WrapRegistererWith(prometheus.Labels{"stage": "collector"}, reg))
	if err != nil {
		return err
	}
	defer producer.Close()
	eraser := erasure.New(erasure.Config{Kafka: kcfg, ClickHouse: scfg.ClickHouse}, store, log, reg)
	defer eraser.Close()
	col, err := newCollector(icfg, producer, store, r, log, reg, stoppingEraser{eraser, ctx})
	if err != nil {
		return err
	}
	col.Mount(demo.Prefix, demo.Handler(icfg.WriteKeys[0]))
	addr, err := col.Listen()
	if err != nil {
		_, port := splitHostPort(icfg.HTTPAddr)
		p, _ := strconv.Atoi(port)
		return portHint(err, devPort{p, "http.addr"})
	}
	proc, err := processor.New(pcfg, r, store, log, reg)
	if err != nil {
		return err
	}
	snk, err := sink.New(scfg, log, reg)
	if err != nil {
		return err
	}
	roles := map[string]func(context.Context) error{"processor": proc.Run, "sink": snk.Run}
	if len(dests) > 0 {
		ncfg.Kafka, ncfg.ClickHouse, ncfg.Version = kcfg, scfg.ClickHouse, version
		ntf, err := notify.New(ncfg, dests, log, reg)
		if err != nil {
			return err
		}
		roles["notifier"] = ntf.Run
	} else {
		log.Info("notifier off: no notify.config (LEADSTREAM_NOTIFY_CONFIG)")
	}

	// Shutdown order: stop HTTP first, then let processor and sink finish
	// their batches, then close producers and stores (deferred above).
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for name, run := range roles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(workCtx); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	colCtx, stopCol := context.WithCancel(ctx)
	defer stopCol()
	colDone := make(chan error, 1)
	go func() { colDone <- col.Run(colCtx) }()

	printBanner(addr.String(), icfg, kcfg, rcfg, scfg, dir)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-errc:
	case runErr = <-colDone:
	}
	stopCol()
	if err := <-colDone; err != nil && runErr == nil {
		runErr = err
	}
	stopWork()
	wg.Wait()
	return runErr
}

func printBanner(httpAddr string, icfg ingest.Config, kcfg stream.Config, rcfg leadstate.Config, scfg sink.Config, dir string) {
	host, port := splitHostPort(httpAddr)
	base := "http://" + host + ":" + port
	fmt.Printf(`
leadstream dev is running (Ctrl-C stops it; data in %s)

  collector + lead API  %s   (/v1/batch /v1/track /v1/page /v1/identify /v1/alias /v1/t … /v1/b, /v1/leads/{id}, /metrics)
  demo site             %s/demo/   (beacon %s/ls.js, forms, consent mode)
  kafka                 %v   topics %s, %s, %s
  redis                 %s
  clickhouse (native)   %s   database %s
  write key             %s   (browser key: public, in pages)
  server write keys     %s   (may also send Deal Won, email events, alias, old events)
  secret key            %s

Try it:

  curl -u %s: -H 'Content-Type: application/json' \
    -d '{"userId":"lead-42","event":"Form Submitted","properties":{"form":"whitepaper"}}' \
    %s/v1/track

  curl -u %s: %s/v1/leads/lead-42
  clickhouse-client --port %s -q 'SELECT type, lead_id, event_time FROM %s.events'
  kcat -b %s -C -t %s -o beginning

  LEADSTREAM_TOKEN_KEYS=%s %s token click --public-url %s \
    --lead lead-42 --campaign spring --message m-1 --sent-at 2026-01-01T00:00:00Z --url %s/demo/pricing.html

  analytics.js (Segment's, from npm @segment/analytics-next): only its CDN changes
    AnalyticsBrowser.load({ writeKey: '%s', cdnURL: '%s' })

`, dir, base, base, base, kcfg.Brokers, kcfg.Topic(stream.TopicEvents), kcfg.Topic(stream.TopicMQL), kcfg.Topic(stream.TopicDeadLetter),
		rcfg.Addr, scfg.ClickHouse.Addr, scfg.ClickHouse.Database, writeKeyHint(icfg.WriteKeys), serverKeysHint(icfg.ServerWriteKeys), secretKeyHint(icfg.SecretKey),
		writeKeyHint(icfg.WriteKeys), base, secretKeyHint(icfg.SecretKey), base, portOf(scfg.ClickHouse.Addr), scfg.ClickHouse.Database,
		kcfg.Brokers[0], kcfg.Topic(stream.TopicMQL), tokenKeysHint(icfg.TokenKeys), selfCommand(), base, base, writeKeyHint(icfg.WriteKeys), base)
}

// selfCommand is how the banner's commands run this binary: as it was
// started when that was by a path (make run starts ./bin/leadstream, which
// is not on the PATH), else by its name.
func selfCommand() string {
	if strings.ContainsRune(os.Args[0], filepath.Separator) {
		return os.Args[0]
	}
	return "leadstream"
}

// startErr explains a local server that did not start: nothing when the
// start was interrupted (SIGTERM, Ctrl-C: dev stops as after its start);
// the install hint only when the program is missing.
func startErr(ctx context.Context, what, env string, err error, ports ...devPort) error {
	if ctx.Err() != nil {
		return nil
	}
	if errors.Is(err, localsvc.ErrNotInstalled) {
		return fmt.Errorf("starting %s (install it with `make deps`, or set %s): %w", what, env, err)
	}
	return portHint(fmt.Errorf("starting %s (or set %s): %w", what, env, err), ports...)
}

// devPort is a port dev listens on and the flag that moves it.
type devPort struct {
	port int
	flag string
}

// portHint adds to an "address already in use" error which setting moves
// the port: another leadstream dev (or any server) may hold the default
// ports, and dev then stops before it prints its banner. The ports whose
// number the error names are hinted, or all of them when it names none.
func portHint(err error, ports ...devPort) error {
	if err == nil || len(ports) == 0 || !errors.Is(err, localsvc.ErrPortInUse) && !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	msg := err.Error()
	var named []devPort
	for _, p := range ports {
		if regexp.MustCompile(`:` + strconv.Itoa(p.port) + `\b`).MatchString(msg) {
			named = append(named, p)
		}
	}
	if len(named) == 0 {
		named = ports
	}
	var hints []string
	for _, p := range named {
		hints = append(hints, fmt.Sprintf("port %d is taken (by another leadstream dev?): move it with -%s or %s", p.port, p.flag, envName(p.flag)))
	}
	return fmt.Errorf("%w\n%s", err, strings.Join(hints, "\n"))
}

// writeKeyHint shows the dev write key for copy-paste; a key of yours is
// not printed (README: write keys are public in pages, not to be printed).
func writeKeyHint(keys []string) string {
	if len(keys) == 1 && keys[0] == "dev-write-key" {
		return keys[0]
	}
	return "YOUR_WRITE_KEY"
}

// serverKeysHint shows the dev server key for copy-paste; other keys are
// secrets and are not printed.
func serverKeysHint(keys []string) string {
	switch {
	case len(keys) == 1 && keys[0] == "dev-server-key":
		return keys[0]
	case len(keys) == 0:
		return "none (set LEADSTREAM_SERVER_WRITE_KEYS)"
	}
	return fmt.Sprintf("%d configured", len(keys))
}

// devSecretKey is the lead API's key in dev mode when none is set.
const devSecretKey = "dev-secret-key"

// secretKeyHint shows the dev secret key for copy-paste; a key of the
// user's own is not printed.
func secretKeyHint(key string) string {
	if key == devSecretKey {
		return key
	}
	return "<your secret key>"
}

// tokenKeysHint shows the dev token key for copy-paste; other keys are not printed.
func tokenKeysHint(keys []token.Key) string {
	if len(keys) > 0 && keys[0].ID == "dev" && string(keys[0].Secret) == devTokenSecret {
		return "dev:" + devTokenSecret
	}
	return "<your kid:secret>"
}

func splitHostPort(addr string) (string, string) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			host := addr[:i]
			if host == "" || host == "::" || host == "[::]" || host == "0.0.0.0" {
				host = "127.0.0.1"
			}
			return host, addr[i+1:]
		}
	}
	return addr, "80"
}

func portOf(addr string) string {
	_, p := splitHostPort(addr)
	if _, err := strconv.Atoi(p); err != nil {
		return "9000"
	}
	return p
}
