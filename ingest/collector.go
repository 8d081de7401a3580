// Package ingest is the collector: a fasthttp server that accepts tracking
// events and writes them to the Kafka events topic. Its sources:
//
//   - the Segment-compatible HTTP API (/v1/batch, /v1/track, the short
//     /v1/b, /v1/t … of analytics.js and the mobile SDKs; handlers.go over
//     package segment, which decodes and maps the calls), also used by the
//     browser beacon, which posts text/plain JSON with the write key in the
//     body so that browsers send it without a CORS preflight; and the SDK
//     settings, GET /v1/projects/{writeKey}/settings (settings.go);
//   - the beacon script itself (GET /ls.js, beacon.go and package beacon);
//   - email opens and clicks with signed tokens (GET /o/{token}.gif,
//     GET /c/{token}, email.go and package token);
//   - plain HTML form posts (POST /f/{form_id}, forms.go).
//
// It validates and enriches events into canonical events, flags bots, headless
// browsers and email link scanners (bots.go: stored, never scored) and answers
// 200 only after Kafka acknowledged every accepted event (acks=all);
// concurrent requests share produce requests (group commit, see
// stream.Producer). It also serves /healthz, /readyz and /metrics, the
// audiences of a visitor for the site (GET /v1/audiences, audiences.go, read
// through package audience), and what is mounted on it (Mount): the lead
// read API (package leadapi).
//
// Metrics:
//
//	leadstream_collector_requests_total{endpoint,code}
//	leadstream_collector_events_total{type}          events accepted (acknowledged by Kafka)
//	leadstream_collector_rejected_total{reason}      requests refused: auth, limit, malformed, origin, unavailable
//	leadstream_collector_rejected_events_total{reason}  Segment calls refused for their content: limit, malformed
//	leadstream_collector_request_duration_seconds{endpoint}
//	leadstream_collector_email_requests_total{kind,result}  opens/clicks: recorded, invalid_token, unavailable
//	leadstream_collector_bot_events_total{reason}    events flagged: user_agent, email_delivery_delay, link_burst
//	leadstream_collector_audience_lookups_total{result}      GET /v1/audiences: ok, bad_request, unauthorized, origin, unavailable
//	leadstream_collector_audience_lookup_duration_seconds   Redis time of a lookup
//	leadstream_collector_audience_members_total{audience}   answers naming the audience
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
	"net/netip"
	"net/url"
	"os"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"slices"
	"strings"
	"time"

	"github.com/leadstream/leadstream/ingest/segment"
	"github.com/leadstream/leadstream/ingest/token"
	"github.com/leadstream/leadstream/internal/httpapi"
	"github.com/leadstream/leadstream/internal/secretflag"
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
	// ServerWriteKeys are write keys that may also send what a browser key
	// (WriteKeys, public in every page) may not: "Deal Won", email opens and
	// clicks, alias, events older than MaxEventAge. Keep them on servers. A
	// key in both lists is a server key. (/v1/import is /v1/batch for every
	// key: analytics-android 4.x posts its batches there with a browser key.)
	ServerWriteKeys []string
	// MaxEventAge is how far back a browser key may date an event (its
	// event time after the clock-skew correction); 0 = no bound.
	MaxEventAge time.Duration
	// RateLimitKey and RateLimitIP are token buckets of events per browser
	// write key and per client address (browser keys, forms, email pixel
	// and clicks; server keys are not limited); zero = no limit. Over them
	// the answer is 429 with Retry-After.
	RateLimitKey, RateLimitIP Rate
	// MaxConnsPerIP bounds the open connections of one client address
	// (trusted proxies excepted); 0 = no bound.
	MaxConnsPerIP int
	// IdleTimeout closes a keep-alive connection idle this long (0 = 30 s).
	IdleTimeout time.Duration
	// TrustedProxies are the networks of the proxies in front of the
	// collector: from them, the client address is read from
	// X-Forwarded-For (see clientAddr).
	TrustedProxies []netip.Prefix
	// TrustForwarded is the deprecated collector.trust-forwarded: every
	// address is a trusted proxy (the first X-Forwarded-For hop is the client).
	TrustForwarded bool
	// AnonymizeIP cuts every client address to its network before it is
	// written to Kafka (segment.AnonymizeIP): IPv4 /24, IPv6 /48.
	AnonymizeIP bool
	// PublicURL is the collector's base URL as browsers and SDKs reach it
	// (the one email links use): the settings endpoint points SDKs at it.
	// Empty: the Host each settings request came to.
	PublicURL string

	// TokenKeys sign and verify email open/click tokens; the first signs.
	TokenKeys []token.Key
	// IdentityKeys verify the userHash of GET /v1/audiences (any of them):
	// hex HMAC-SHA256(key, userId), computed by the site's backend for its
	// signed-in user, proves the lead whose audiences an identified visitor
	// may be told. None: identified visitors get their own state's audiences.
	IdentityKeys []string
	// CORSOrigins restricts, per write key, the browser origins that may
	// send events with it; a key without an entry accepts any origin.
	CORSOrigins map[string][]string
	// CookieDomain is the parent domain the collector shares with the
	// sites (e.g. acme.example for t.acme.example); it sets the ls_anon
	// cookie for that domain. Empty: only for pages on the collector's host.
	CookieDomain string
	// ScannerMinDelay: an open or click sooner than this after the message
	// was sent is a scanner's. ScannerBurst: clicks on different links of one
	// message closer together than this are a scanner's.
	ScannerMinDelay time.Duration
	ScannerBurst    time.Duration
	// GCPercent is the highest GOGC Run gives the process the collector
	// runs in while its heap stays small (see tuneGC), unless the GOGC
	// environment variable is set; 100 or less leaves the runtime's setting.
	GCPercent int
}

// RegisterFlags registers the collector's flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.HTTPAddr, "http.addr", ":8080", "collector listen address")
	secretflag.Func(fs, "write-keys", "comma-separated write keys accepted by the ingest API", func(s string) error {
		c.WriteKeys = stream.SplitList(s)
		return nil
	})
	secretflag.String(fs, &c.SecretKey, "secret-key", "server secret key for the lead API (GET /v1/leads/{id})")
	fs.DurationVar(&c.ProduceTimeout, "collector.produce-timeout", 5*time.Second, "longest wait for Kafka to acknowledge a request's events before answering 503")
	fs.Int64Var(&c.MaxQueueBytes, "collector.max-queue-bytes", 64<<20, "bytes of events that may wait for Kafka; beyond it requests get 503")
	secretflag.Func(fs, "server-write-keys", "comma-separated server write keys: they may also send Deal Won, email opens and clicks, alias and events older than collector.max-event-age; keep them secret (/v1/import is /v1/batch for every key)", func(s string) error {
		c.ServerWriteKeys = stream.SplitList(s)
		return nil
	})
	fs.DurationVar(&c.MaxEventAge, "collector.max-event-age", 24*time.Hour, "how far back (event time after the clock-skew correction) a browser write key may date an event; older ones need a server key; 0 = no bound")
	c.RateLimitKey = Rate{PerSecond: 10000, Burst: 100000}
	fs.Var(&c.RateLimitKey, "collector.rate-limit-key", "events per second per browser write key, RATE[:BURST] (BURST default 10 s of RATE); 0 = no limit")
	c.RateLimitIP = Rate{PerSecond: 100, Burst: 1000}
	fs.Var(&c.RateLimitIP, "collector.rate-limit-ip", "events per second per client address (IPv6: per /64) for browser keys, forms, email pixel and clicks, RATE[:BURST]; 0 = no limit")
	fs.IntVar(&c.MaxConnsPerIP, "collector.max-conns-per-ip", 256, "open connections per client address (trusted proxies excepted); 0 = no limit")
	fs.DurationVar(&c.IdleTimeout, "collector.idle-timeout", 30*time.Second, "close keep-alive connections idle this long (keep it above the idle timeout of a load balancer in front)")
	fs.Func("collector.trusted-proxies", "comma-separated networks (CIDR) or addresses of the proxies in front of the collector; from them the client address is the rightmost X-Forwarded-For hop that is not one of them", func(s string) error {
		p, err := parseTrustedProxies(s)
		c.TrustedProxies = p
		return err
	})
	fs.BoolVar(&c.TrustForwarded, "collector.trust-forwarded", false, "deprecated: use collector.trusted-proxies; true trusts every address as a proxy (the client is the first X-Forwarded-For hop)")
	fs.BoolVar(&c.AnonymizeIP, "collector.ip-anonymize", true, "cut client addresses to their network (IPv4 /24, IPv6 /48) before they are stored; context.ip too")
	fs.StringVar(&c.PublicURL, "public-url", "", "the collector's public base URL (e.g. https://t.acme.example), where SDKs loaded from GET /v1/projects/{writeKey}/settings send; empty = the Host of the settings request")
	secretflag.Func(fs, "token-keys", "email token keys, comma-separated kid:secret (secret >= 16 bytes); the first one signs", func(s string) error {
		keys, err := token.ParseKeys(s)
		c.TokenKeys = keys
		return err
	})
	secretflag.Func(fs, "identity-keys", "comma-separated keys (each >= 16 bytes) of the sites' user hashes: GET /v1/audiences answers an identified visitor's lead audiences only with userId and userHash = hex HMAC-SHA256(key, userId); any key verifies", func(s string) error {
		c.IdentityKeys = stream.SplitList(s)
		return nil
	})
	fs.Func("collector.cors-origins", "browser origins allowed per write key: KEY=ORIGIN|ORIGIN,KEY2=*; ORIGIN is scheme://host[:port], https://*.domain or *", func(s string) error {
		m, err := parseCORSOrigins(s)
		c.CORSOrigins = m
		return err
	})
	fs.StringVar(&c.CookieDomain, "collector.cookie-domain", "", "domain of the ls_anon cookie the collector sets on beacon responses (e.g. acme.example); empty = the collector's host only")
	fs.DurationVar(&c.ScannerMinDelay, "collector.scanner-min-delay", 5*time.Second, "email opens/clicks sooner than this after sending are flagged as scanner traffic")
	fs.DurationVar(&c.ScannerBurst, "collector.scanner-burst", time.Second, "clicks on different links of one message within this window are flagged as scanner traffic")
	fs.IntVar(&c.GCPercent, "collector.gogc", 400, "highest GOGC of the collector process: while the heap stays under 128 MiB, GOGC is raised up to this (less CPU on garbage collection), and back to 100 as the live heap grows; ignored when the GOGC env var is set; <= 100 = Go's default")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if c.HTTPAddr == "" {
		return errors.New("http.addr must not be empty")
	}
	if len(c.WriteKeys) == 0 && len(c.ServerWriteKeys) == 0 {
		return errors.New("write-keys: at least one write key (or server-write-keys) is required")
	}
	if c.MaxEventAge < 0 || c.IdleTimeout < 0 || c.MaxConnsPerIP < 0 {
		return errors.New("collector.max-event-age, collector.idle-timeout and collector.max-conns-per-ip must be >= 0")
	}
	for _, r := range []Rate{c.RateLimitKey, c.RateLimitIP} {
		if r.PerSecond < 0 || (r.PerSecond > 0 && r.Burst < 1) {
			return errors.New("collector.rate-limit-key and collector.rate-limit-ip: want RATE[:BURST] with BURST >= 1, or 0")
		}
	}
	if c.ProduceTimeout <= 0 {
		return errors.New("collector.produce-timeout must be > 0")
	}
	if len(c.TokenKeys) > 0 {
		if _, err := token.NewKeyring(c.TokenKeys...); err != nil {
			return fmt.Errorf("token-keys: %w", err)
		}
	}
	for i, k := range c.IdentityKeys {
		if len(k) < minIdentityKey {
			return fmt.Errorf("identity-keys: key %d is %d bytes, want at least %d", i+1, len(k), minIdentityKey)
		}
	}
	for key, origins := range c.CORSOrigins {
		if !slices.Contains(c.WriteKeys, key) && !slices.Contains(c.ServerWriteKeys, key) {
			return errors.New("collector.cors-origins: an entry names a key that is not one of write-keys or server-write-keys")
		}
		for _, o := range origins {
			if err := checkOriginPattern(o); err != nil {
				return fmt.Errorf("collector.cors-origins: %w", err)
			}
		}
	}
	if c.PublicURL != "" {
		if _, err := parsePublicURL(c.PublicURL); err != nil {
			return err
		}
	}
	if c.GCPercent < 0 {
		return errors.New("collector.gogc must be >= 0 (<= 100 = Go's default)")
	}
	if c.ScannerMinDelay < 0 || c.ScannerBurst < 0 {
		return errors.New("collector.scanner-min-delay and collector.scanner-burst must be >= 0")
	}
	return nil
}

// ProducerConfig is the configuration of the events producer the collector
// writes through: acks=all within ProduceTimeout, queue bounded by MaxQueueBytes.
func (c *Config) ProducerConfig() stream.ProducerConfig {
	pc := c.Kafka.Producer(stream.TopicEvents)
	pc.Timeout, pc.MaxQueueBytes = c.ProduceTimeout, c.MaxQueueBytes
	return pc
}

// Producer is what the collector writes events through (stream.Producer).
type Producer interface {
	Produce(ctx context.Context, recs []stream.Record) error
	Healthy() bool
}

// Collector serves the ingest HTTP API.
type Collector struct {
	cfg       Config
	log       *slog.Logger
	m         *metrics
	producer  Producer
	keys      map[string]string     // write key -> write key id
	server    map[string]bool       // write key id -> a server key
	origins   map[string][]string   // write key id -> allowed browser origins (absent: any)
	proxies   []netip.Prefix        // trusted proxies
	keyRate   map[string]*keyBucket // browser write key id -> its bucket (nil map: no limit)
	ipRate    *ipBuckets            // nil: no limit
	emailSeen *hourSet              // opens and clicks recorded this hour, by event id
	tokens    *token.Keyring        // nil: no token keys, every token is invalid
	publicURL *url.URL              // nil: none configured
	bots      *botFilter
	mounts    []mount
	http      *fasthttp.Server
	// audienceLookup answers GET /v1/audiences (audiences.go); nil: 503.
	audienceLookup AudienceLookup
	am             *audienceMetrics
	ln             net.Listener
}

type mount struct {
	prefix, label string
	handler       fasthttp.RequestHandler
}

// New builds a collector writing through producer.
func New(cfg Config, producer Producer, log *slog.Logger, reg prometheus.Registerer) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Collector{cfg: cfg, log: log.With("stage", "collector"), m: newMetrics(reg, cfg.ProduceTimeout), producer: producer, keys: map[string]string{}, server: map[string]bool{}}
	c.am = newAudienceMetrics(reg)
	for _, k := range cfg.WriteKeys {
		c.keys[k] = KeyID(k)
	}
	for _, k := range cfg.ServerWriteKeys {
		c.keys[k] = KeyID(k)
		c.server[KeyID(k)] = true
	}
	if cfg.RateLimitKey.PerSecond > 0 {
		c.keyRate = map[string]*keyBucket{}
		for _, id := range c.keys {
			if !c.server[id] {
				c.keyRate[id] = &keyBucket{g: newGCRA(cfg.RateLimitKey)}
			}
		}
	}
	if cfg.RateLimitIP.PerSecond > 0 {
		c.ipRate = newIPBuckets(cfg.RateLimitIP)
	}
	c.proxies = cfg.TrustedProxies
	if cfg.TrustForwarded {
		c.log.Warn("collector.trust-forwarded is deprecated: set collector.trusted-proxies to your proxies' networks; every address is trusted as a proxy now")
		c.proxies = allAddresses
	}
	c.emailSeen = newHourSet(maxEmailSeen)
	c.origins = map[string][]string{}
	for k, o := range cfg.CORSOrigins {
		c.origins[KeyID(k)] = o
	}
	if len(cfg.TokenKeys) > 0 {
		var err error
		if c.tokens, err = token.NewKeyring(cfg.TokenKeys...); err != nil {
			return nil, err
		}
	} else {
		c.log.Warn("no token-keys: email open and click links cannot be verified")
	}
	c.bots = newBotFilter(cfg.ScannerMinDelay, cfg.ScannerBurst)
	if cfg.PublicURL != "" {
		c.publicURL, _ = parsePublicURL(cfg.PublicURL) // checked by Validate
	}
	idle := cfg.IdleTimeout
	if idle == 0 {
		idle = 30 * time.Second
	}
	c.http = &fasthttp.Server{
		Handler:      c.route,
		ErrorHandler: c.httpError,
		Logger:       httpLogger{c.log},
		Name:         "leadstream",
		// Slow clients (a body trickled in, an answer not read) are cut
		// off: a connection is never held open by a client alone.
		ReadTimeout:  10 * time.Second,
		WriteTimeout: cfg.ProduceTimeout + 5*time.Second,
		IdleTimeout:  idle,
		// Above the 500 KB batch limit, so that a batch over it gets our
		// own JSON error naming the limit; what is larger is refused
		// before it is read (413, httpError).
		MaxRequestBodySize: MaxBodyBytes,
		// A request's head (request line and headers) up to 16 KiB: a
		// site's cookies come with ls.js' posts (connReadBuffer).
		ReadBufferSize: connReadBuffer,
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

// Mount serves every path under prefix (e.g. "/demo/") with h, before any
// route of the collector's own. Call it before Run: the lead API
// (package leadapi) and dev mode's demo site are mounted this way. The
// endpoint label of its requests is prefix without its trailing slash.
func (c *Collector) Mount(prefix string, h fasthttp.RequestHandler) {
	c.mounts = append(c.mounts, mount{prefix: prefix, label: strings.TrimSuffix(prefix, "/"), handler: h})
	c.m.duration.WithLabelValues(strings.TrimSuffix(prefix, "/"))
}

// Listen binds the HTTP address; Run serves on it. Split so callers (tests,
// dev mode) learn the bound address before serving.
func (c *Collector) Listen() (net.Addr, error) {
	ln, err := net.Listen("tcp", c.cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("collector listening on %s: %w", c.cfg.HTTPAddr, err)
	}
	c.ln = ln
	if c.cfg.MaxConnsPerIP > 0 {
		cl := newConnLimitListener(ln, c.cfg.MaxConnsPerIP, c.trusted, func() { c.m.rejected.WithLabelValues("connections").Inc() })
		cl.head = func(ctx *fasthttp.RequestCtx) {
			c.earlyCORS(ctx)
			if string(ctx.Path()) == AudiencesPath {
				// Every answer of the lookup is counted, this one too.
				c.am.lookups.WithLabelValues("rate_limit").Inc()
			}
		}
		c.ln = cl
	}
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
	gcCtx, stopGC := context.WithCancel(ctx)
	defer stopGC()
	go c.tuneGC(gcCtx)
	errc := make(chan error, 1)
	go func() { errc <- c.http.Serve(captureListener{c.ln}) }()
	select {
	case err := <-errc:
		return fmt.Errorf("collector http server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), c.cfg.ProduceTimeout+5*time.Second)
	defer cancel()
	if err := c.http.ShutdownWithContext(sctx); err != nil {
		return fmt.Errorf("collector shutdown: %w", err)
	}
	return nil
}

// gcHeapGoal is the heap size up to which tuneGC raises GOGC.
const gcHeapGoal = 128 << 20

// tuneGC applies Config.GCPercent until ctx ends. The collector's live heap
// is small (a few MB plus what waits for Kafka) and every request allocates,
// so at Go's default GOGC=100 it collects very often. tuneGC raises GOGC up
// to GCPercent while the heap goal — live heap × (1 + GOGC/100) — stays
// within gcHeapGoal, and back down to 100 as the live heap grows (a full
// produce queue, or other roles in the same process): the heap never grows
// past max(gcHeapGoal, 2 × live heap), which is where GOGC=100 puts it anyway
// for live heaps above half of gcHeapGoal. No memory limit is set, so a large
// live heap cannot make the collector spin in garbage collection.
func (c *Collector) tuneGC(ctx context.Context) {
	if c.cfg.GCPercent <= 100 || os.Getenv("GOGC") != "" {
		return
	}
	c.log.Info("garbage collector tuned for the collector", "max_gogc", c.cfg.GCPercent, "heap_goal_mib", gcHeapGoal>>20)
	sample := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	current := c.cfg.GCPercent
	orig := debug.SetGCPercent(current)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		rtmetrics.Read(sample)
		live := uint64(0)
		if sample[0].Value.Kind() == rtmetrics.KindUint64 {
			live = sample[0].Value.Uint64()
		}
		if g := gcPercentFor(live, c.cfg.GCPercent); g != current {
			debug.SetGCPercent(g)
			current = g
		}
		select {
		case <-ctx.Done():
			debug.SetGCPercent(orig)
			return
		case <-tick.C:
		}
	}
}

// gcPercentFor is the GOGC that puts the heap goal of a live heap at
// gcHeapGoal, between 100 and maxPercent.
func gcPercentFor(live uint64, maxPercent int) int {
	if live == 0 {
		return maxPercent
	}
	g := int(min(uint64(gcHeapGoal)*100/live, 1<<20)) - 100
	return max(100, min(g, maxPercent))
}

func (c *Collector) route(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	nextRequest(ctx)
	path := string(ctx.Path())
	for _, m := range c.mounts {
		if strings.HasPrefix(path, m.prefix) || path+"/" == m.prefix {
			m.handler(ctx)
			c.m.observe(m.label, ctx.Response.StatusCode(), time.Since(start))
			return
		}
	}
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
	case strings.HasPrefix(path, settingsPrefix):
		endpoint = strings.TrimSuffix(settingsPrefix, "/")
		c.settings(ctx, strings.TrimPrefix(path, settingsPrefix))
	case path == AudiencesPath:
		c.audiences(ctx)
	case strings.HasPrefix(path, "/v1/"):
		c.ingest(ctx, strings.TrimPrefix(path, "/v1/"))
		if !knownIngest(path) {
			endpoint = "other"
		}
	case path == "/ls.js":
		serveBeacon(ctx)
	case strings.HasPrefix(path, "/o/"):
		endpoint = "/o"
		c.emailOpen(ctx, strings.TrimPrefix(path, "/o/"))
	case strings.HasPrefix(path, "/c/"):
		endpoint = "/c"
		c.emailClick(ctx, strings.TrimPrefix(path, "/c/"))
	case strings.HasPrefix(path, "/f/"):
		endpoint = "/f"
		c.form(ctx, strings.TrimPrefix(path, "/f/"))
	default:
		endpoint = "other"
		httpapi.Error(ctx, fasthttp.StatusNotFound, "no such endpoint: "+path)
	}
	c.m.observe(endpoint, ctx.Response.StatusCode(), time.Since(start))
}

// knownIngest reports whether path is one of the Segment endpoints
// (/v1/track, /v1/t …), each its own metrics label.
func knownIngest(path string) bool {
	name, ok := strings.CutPrefix(path, "/v1/")
	if !ok {
		return false
	}
	_, ok = segment.Call(name)
	return ok
}

// writeKey authenticates a request by Basic user name or body writeKey,
// returning the key's id, or "" when it is unknown (c.server says whether
// it is a server key).
func (c *Collector) writeKey(ctx *fasthttp.RequestCtx, bodyKey string) string {
	key := bodyKey
	if user, _, ok := httpapi.BasicAuth(ctx); ok && user != "" {
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

// clientIP is the client's address as events keep it: clientAddr, cut to
// its network when collector.ip-anonymize is on.
func (c *Collector) clientIP(ctx *fasthttp.RequestCtx) string {
	return c.storedIP(c.clientAddr(ctx))
}

// storedIP is a as events keep it.
func (c *Collector) storedIP(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	if c.cfg.AnonymizeIP {
		return segment.AnonymizeIP(a.String())
	}
	return a.String()
}
