// Package ingest is the collector: a fasthttp server that accepts tracking
// events (Segment-compatible HTTP API; later the beacon, email pixel and forms),
// validates and enriches them into canonical events and writes them to the
// Kafka events topic. It answers 200 only after Kafka acknowledged every
// accepted event (acks=all); concurrent requests share produce requests
// (group commit, see stream.Producer). It also serves the lead read API from
// Redis, and /healthz, /readyz and /metrics.
//
// Metrics:
//
//	leadstream_collector_requests_total{endpoint,code}
//	leadstream_collector_events_total{type}          events accepted (acknowledged by Kafka)
//	leadstream_collector_rejected_total{reason}      requests refused: auth, limit, malformed, unavailable
//	leadstream_collector_request_duration_seconds{endpoint}
package ingest

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/stream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// Config configures the collector. Kafka and Redis are registered by the caller.
type Config struct {
	Kafka          stream.Config
	HTTPAddr       string
	WriteKeys      []string
	SecretKey      string
	ProduceTimeout time.Duration
	MaxQueueBytes  int64
	TrustForwarded bool
}

// RegisterFlags registers the collector's flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.HTTPAddr, "http.addr", ":8080", "collector listen address")
	fs.Func("write-keys", "comma-separated write keys accepted by the ingest API", func(s string) error {
		c.WriteKeys = stream.SplitList(s)
		return nil
	})
	fs.StringVar(&c.SecretKey, "secret-key", "", "server secret key for the lead API (GET /v1/leads/{id})")
	fs.DurationVar(&c.ProduceTimeout, "collector.produce-timeout", 5*time.Second, "longest wait for Kafka to acknowledge a request's events before answering 503")
	fs.Int64Var(&c.MaxQueueBytes, "collector.max-queue-bytes", 64<<20, "bytes of events that may wait for Kafka; beyond it requests get 503")
	fs.BoolVar(&c.TrustForwarded, "collector.trust-forwarded", false, "take the client IP from X-Forwarded-For (only behind a trusted proxy)")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if c.HTTPAddr == "" {
		return errors.New("http.addr must not be empty")
	}
	if len(c.WriteKeys) == 0 {
		return errors.New("write-keys: at least one write key is required")
	}
	if c.ProduceTimeout <= 0 {
		return errors.New("collector.produce-timeout must be > 0")
	}
	return nil
}

// Producer is what the collector writes events through (stream.Producer).
type Producer interface {
	Produce(ctx context.Context, recs []stream.Record) error
	Healthy() bool
}

// Collector serves the ingest HTTP API.
type Collector struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	producer Producer
	leads    *leadAPI
	keys     map[string]string // write key -> write key id
	server   *fasthttp.Server
	ln       net.Listener
}

// New builds a collector writing through producer. leads may be nil, then the
// lead API answers 503.
func New(cfg Config, producer Producer, leads *leadstate.Store, models []leadstate.ModelInfo, log *slog.Logger, reg prometheus.Registerer) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Collector{cfg: cfg, log: log.With("stage", "collector"), m: newMetrics(reg), producer: producer, keys: map[string]string{}}
	for _, k := range cfg.WriteKeys {
		c.keys[k] = KeyID(k)
	}
	c.leads = &leadAPI{store: leads, models: models, secret: cfg.SecretKey}
	c.server = &fasthttp.Server{
		Handler:            c.route,
		Name:               "leadstream",
		ReadTimeout:        10 * time.Second,
		WriteTimeout:       cfg.ProduceTimeout + 5*time.Second,
		IdleTimeout:        90 * time.Second,
		MaxRequestBodySize: 4 << 20, // above the 500 KB batch limit, so we answer with our own JSON error
		// Keep-alive connections are the norm for SDKs; this bounds the
		// goroutines serving them (explicit backpressure).
		Concurrency:                   20000,
		NoDefaultServerHeader:         false,
		DisablePreParseMultipartForm:  true,
		DisableHeaderNamesNormalizing: false,
	}
	return c, nil
}

// KeyID is the non-secret id of a write key that events carry.
func KeyID(key string) string {
	h := sha256.Sum256([]byte(key))
	return "wk_" + hex.EncodeToString(h[:6])
}

// Listen binds the HTTP address; Run serves on it. Split so callers (tests,
// dev mode) learn the bound address before serving.
func (c *Collector) Listen() (net.Addr, error) {
	ln, err := net.Listen("tcp", c.cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("collector listening on %s: %w", c.cfg.HTTPAddr, err)
	}
	c.ln = ln
	return ln.Addr(), nil
}

// Run serves until ctx is cancelled, then stops accepting and waits for
// requests in flight (their events are acknowledged or answered 503).
func (c *Collector) Run(ctx context.Context) error {
	if c.ln == nil {
		if _, err := c.Listen(); err != nil {
			return err
		}
	}
	c.log.Info("collector listening", "addr", c.ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- c.server.Serve(c.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("collector http server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), c.cfg.ProduceTimeout+5*time.Second)
	defer cancel()
	if err := c.server.ShutdownWithContext(sctx); err != nil {
		return fmt.Errorf("collector shutdown: %w", err)
	}
	return nil
}

func (c *Collector) route(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	path := string(ctx.Path())
	endpoint := path
	switch {
	case path == "/healthz":
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetBodyString("ok\n")
	case path == "/readyz":
		if c.producer.Healthy() {
			ctx.SetBodyString("ready\n")
		} else {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.SetBodyString("kafka unavailable\n")
		}
	case path == "/metrics":
		c.m.serve(ctx)
	case strings.HasPrefix(path, "/v1/leads/"):
		endpoint = "/v1/leads"
		c.leads.serve(ctx, strings.TrimPrefix(path, "/v1/leads/"))
	case strings.HasPrefix(path, "/v1/"):
		c.ingest(ctx, strings.TrimPrefix(path, "/v1/"))
		if !knownIngest(path) {
			endpoint = "other"
		}
	default:
		endpoint = "other"
		jsonError(ctx, fasthttp.StatusNotFound, "no such endpoint: "+path)
	}
	c.m.observe(endpoint, ctx.Response.StatusCode(), time.Since(start))
}

func knownIngest(path string) bool {
	switch path {
	case "/v1/batch", "/v1/import", "/v1/track", "/v1/page", "/v1/screen", "/v1/identify", "/v1/alias", "/v1/group":
		return true
	}
	return false
}

// writeKey authenticates a request by Basic user name or body writeKey,
// returning the key's id, or "" when it is unknown.
func (c *Collector) writeKey(ctx *fasthttp.RequestCtx, bodyKey string) string {
	key := bodyKey
	if user, _, ok := basicAuth(ctx); ok && user != "" {
		key = user
	}
	if key == "" {
		return ""
	}
	for k, id := range c.keys {
		if subtle.ConstantTimeCompare([]byte(k), []byte(key)) == 1 {
			return id
		}
	}
	return ""
}

func (c *Collector) clientIP(ctx *fasthttp.RequestCtx) string {
	if c.cfg.TrustForwarded {
		if xff := ctx.Request.Header.Peek("X-Forwarded-For"); len(xff) > 0 {
			first, _, _ := strings.Cut(string(xff), ",")
			return strings.TrimSpace(first)
		}
	}
	return ctx.RemoteIP().String()
}
