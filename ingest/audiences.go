package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/leadstream/leadstream/internal/httpapi"
)

// AudiencesPath is where the site asks for a visitor's audiences:
// GET /v1/audiences?anonymousId=…, with the write key as HTTP Basic user
// name or as the writeKey query parameter.
const AudiencesPath = "/v1/audiences"

// audienceTimeout bounds one lookup in Redis.
const audienceTimeout = time.Second

// maxAudienceID bounds the anonymous id of a question (audience.MaxIDBytes).
const maxAudienceID = 256

// AudienceLookup answers the audiences of a visitor (package audience).
type AudienceLookup interface {
	Audiences(ctx context.Context, anonymousID string) ([]string, error)
}

// SetAudiences serves GET /v1/audiences from l; without one it answers 503.
// Call it before Run.
func (c *Collector) SetAudiences(l AudienceLookup) { c.audienceLookup = l }

// audienceMetrics are the metrics of the audience API:
//
//	leadstream_collector_audience_lookups_total{result}   ok, bad_request, unauthorized, origin, unavailable
//	leadstream_collector_audience_lookup_duration_seconds  Redis time of an answered lookup
//	leadstream_collector_audience_members_total{audience}  answers that named the audience
type audienceMetrics struct {
	lookups  *prometheus.CounterVec
	duration prometheus.Histogram
	members  *prometheus.CounterVec
}

func newAudienceMetrics(reg prometheus.Registerer) *audienceMetrics {
	m := &audienceMetrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_collector_audience_lookups_total",
			Help: "GET /v1/audiences requests by result: ok, bad_request, unauthorized, origin, unavailable."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "leadstream_collector_audience_lookup_duration_seconds",
			Help: "Time to read a visitor's audiences from Redis.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14)}),
		members: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_collector_audience_members_total",
			Help: "Audience answers that named the audience (one per answer and audience)."}, []string{"audience"}),
	}
	if reg != nil {
		reg.MustRegister(m.lookups, m.duration, m.members)
	}
	for _, r := range []string{"ok", "bad_request", "unauthorized", "origin", "unavailable"} {
		m.lookups.WithLabelValues(r)
	}
	return m
}

// audienceAnswer is the body of a 200: the names and nothing else.
type audienceAnswer struct {
	Audiences []string `json:"audiences"`
}

// audiences serves GET /v1/audiences. It answers browsers like the ingest
// endpoints (CORS per write key, refusals included), and never caches.
func (c *Collector) audiences(ctx *fasthttp.RequestCtx) {
	origin := string(ctx.Request.Header.Peek("Origin"))
	if ctx.IsOptions() {
		// Only a request with an Authorization header needs a preflight;
		// ls.js sends the key as a query parameter and needs none.
		h := &ctx.Response.Header
		h.Set("Vary", "Origin")
		if origin == "" || !c.anyOriginAllowed(origin) {
			ctx.SetStatusCode(fasthttp.StatusForbidden)
			return
		}
		allowCORS(ctx, origin)
		h.Set("Access-Control-Allow-Methods", "GET, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization")
		h.Set("Access-Control-Max-Age", "86400")
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	if origin != "" {
		allowCORS(ctx, origin)
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	am := c.am
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD, OPTIONS")
		httpapi.Error(ctx, fasthttp.StatusMethodNotAllowed, "use GET")
		return
	}
	args := ctx.QueryArgs()
	keyID := c.writeKey(ctx, string(args.Peek("writeKey")))
	if keyID == "" {
		am.lookups.WithLabelValues("unauthorized").Inc()
		httpapi.Error(ctx, fasthttp.StatusUnauthorized, "unknown or missing write key (HTTP Basic user name or writeKey parameter)")
		return
	}
	if origin != "" && !c.originAllowed(keyID, origin) {
		am.lookups.WithLabelValues("origin").Inc()
		httpapi.Error(ctx, fasthttp.StatusForbidden, "origin not allowed for this write key (see collector.cors-origins)")
		return
	}
	anon := string(args.Peek("anonymousId"))
	if anon == "" || len(anon) > maxAudienceID {
		am.lookups.WithLabelValues("bad_request").Inc()
		httpapi.Error(ctx, fasthttp.StatusBadRequest, "anonymousId: want the visitor's anonymous id (1 to 256 bytes) as a query parameter")
		return
	}
	if c.audienceLookup == nil {
		am.lookups.WithLabelValues("unavailable").Inc()
		httpapi.Error(ctx, fasthttp.StatusServiceUnavailable, "audiences not configured: no redis address")
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), audienceTimeout)
	defer cancel()
	start := time.Now()
	names, err := c.audienceLookup.Audiences(rctx, anon)
	if err != nil {
		am.lookups.WithLabelValues("unavailable").Inc()
		if !errors.Is(err, context.DeadlineExceeded) {
			c.log.Warn("reading audiences failed", "err", err)
		}
		ctx.Response.Header.Set("Retry-After", "1")
		httpapi.Error(ctx, fasthttp.StatusServiceUnavailable, "reading audiences failed, retry")
		return
	}
	am.duration.Observe(time.Since(start).Seconds())
	am.lookups.WithLabelValues("ok").Inc()
	for _, n := range names {
		am.members.WithLabelValues(n).Inc()
	}
	if names == nil {
		names = []string{}
	}
	out, err := json.Marshal(audienceAnswer{Audiences: names})
	if err != nil {
		panic("BUG: encoding audiences: " + err.Error())
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
}
