package ingest

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/leadstream/leadstream/event"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

type metrics struct {
	requests *prometheus.CounterVec
	events   *prometheus.CounterVec
	rejected *prometheus.CounterVec
	// rejectedEvents counts the calls refused by their content: each
	// message of a batch refused alone or with its batch, and each single
	// call answered 400.
	rejectedEvents *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	email          *prometheus.CounterVec
	bots           *prometheus.CounterVec
	gpc            *prometheus.CounterVec
	handler        fasthttp.RequestHandler
}

// durationBuckets are the request-duration buckets: from 0.2 ms, doubling,
// up to at least twice the produce timeout, so that requests that waited
// for Kafka until the timeout (answered 503) land in a bucket of their own
// instead of +Inf.
func durationBuckets(produceTimeout time.Duration) []float64 {
	const start = 0.0002
	n := 15
	for start*math.Pow(2, float64(n-1)) < 2*produceTimeout.Seconds() {
		n++
	}
	return prometheus.ExponentialBuckets(start, 2, n)
}

// Label values created at zero, so rates and ratios exist before the first
// occurrence (an alert on 503s works from the start).
var (
	metricEndpoints = []string{"/v1/batch", "/v1/import", "/v1/track", "/v1/page", "/v1/screen", "/v1/identify", "/v1/alias", "/v1/group",
		"/o", "/c", "/f", "/ls.js", "/healthz", "/readyz", "/metrics", "other"}
	metricIngestCodes = []string{"200", "400", "401", "403", "503"}
	metricEventTypes  = []event.Type{event.PageView, event.EmailOpen, event.EmailClick, event.FormSubmit, event.Identify, event.Alias, event.Group, event.DealWon, event.Custom}
	metricRejected    = []string{"auth", "limit", "malformed", "origin", "unavailable"}
	metricBotReasons  = []string{"user_agent", "email_delivery_delay", "link_burst"}
)

func newMetrics(reg prometheus.Registerer, produceTimeout time.Duration) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_collector_requests_total", Help: "HTTP requests by endpoint and status code."}, []string{"endpoint", "code"}),
		events:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_collector_events_total", Help: "Events accepted and acknowledged by Kafka, by type."}, []string{"type"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_collector_rejected_total",
			Help: "Requests refused, by reason (auth, limit, malformed, origin, scope, rate_limit, connections, unavailable)."}, []string{"reason"}),
		rejectedEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_collector_rejected_events_total",
			Help: "Segment calls refused for their content, by reason (limit, malformed, scope: only a server write key may send it): each message of a batch refused alone or with its batch, and each single call answered 400 or 403."}, []string{"reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "leadstream_collector_request_duration_seconds", Help: "Request duration, Kafka acknowledgement included.",
			Buckets: durationBuckets(produceTimeout)}, []string{"endpoint"}),
		email: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_collector_email_requests_total",
			Help: "Email open (pixel) and click requests by result: recorded, repeat (same link within the hour: not written again), invalid_token (forged, altered or unknown key), expired, gpc (Sec-GPC: 1), rate_limited (these four: nothing recorded), unavailable (Kafka did not acknowledge)."}, []string{"kind", "result"}),
		bots: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_collector_bot_events_total",
			Help: "Accepted events flagged as bot traffic (stored, never scored), by rule: user_agent, email_delivery_delay, link_burst."}, []string{"reason"}),
		gpc: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_collector_gpc_requests_total",
			Help: "Requests with Sec-GPC: 1 (Global Privacy Control), answered as usual with nothing stored, by endpoint (/v1, /o, /c, /f)."}, []string{"endpoint"}),
		handler: func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(fasthttp.StatusNotFound) },
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.events, m.rejected, m.rejectedEvents, m.duration, m.email, m.bots, m.gpc)
	}
	for _, r := range []string{"limit", "malformed", "scope"} {
		m.rejectedEvents.WithLabelValues(r)
	}
	for _, r := range []string{"rate_limit", "connections", "scope"} {
		m.rejected.WithLabelValues(r)
	}
	for _, k := range []string{"open", "click"} {
		for _, r := range []string{"recorded", "repeat", "invalid_token", "expired", "gpc", "rate_limited", "unavailable"} {
			m.email.WithLabelValues(k, r)
		}
	}
	for _, e := range []string{"/v1", "/o", "/c", "/f"} {
		m.gpc.WithLabelValues(e)
	}
	for _, e := range metricEndpoints {
		m.duration.WithLabelValues(e)
		m.requests.WithLabelValues(e, "200")
		if strings.HasPrefix(e, "/v1/") || e == "/f" {
			for _, c := range metricIngestCodes[1:] {
				m.requests.WithLabelValues(e, c)
			}
		}
	}
	for _, t := range metricEventTypes {
		m.events.WithLabelValues(string(t))
	}
	for _, r := range metricRejected {
		m.rejected.WithLabelValues(r)
	}
	for _, r := range metricBotReasons {
		m.bots.WithLabelValues(r)
	}
	if g, ok := reg.(prometheus.Gatherer); ok {
		m.handler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	return m
}

// SetGatherer serves /metrics from g (the process registry, which holds every stage's metrics).
func (c *Collector) SetGatherer(g prometheus.Gatherer) {
	c.m.handler = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
}

func (m *metrics) serve(ctx *fasthttp.RequestCtx) { m.handler(ctx) }

func (m *metrics) observe(endpoint string, code int, d time.Duration) {
	m.requests.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(endpoint).Observe(d.Seconds())
}
