package ingest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/leadstream/leadstream/internal/httpapi"
	"github.com/leadstream/leadstream/leadstate"
)

// AudiencesPath is where the site asks for a visitor's audiences:
// GET /v1/audiences?anonymousId=…, with the write key as HTTP Basic user
// name or as the writeKey query parameter.
const AudiencesPath = "/v1/audiences"

// audienceTimeout bounds one lookup in Redis.
const audienceTimeout = time.Second

// maxAudienceID bounds the anonymous id of a question (audience.MaxIDBytes).
const maxAudienceID = 256

// AudienceLookup answers the audiences of a visitor (package audience):
// those of its own state, and those of lead too when lead (proven by the
// request's userHash, "" for none) is a lead the visitor is linked to.
type AudienceLookup interface {
	Audiences(ctx context.Context, anonymousID, lead string) ([]string, error)
}

// minIdentityKey is the shortest identity key (identity-keys) accepted.
const minIdentityKey = 16

// maxUserID bounds the userId of a question, as its anonymousId.
const maxUserID = 256

// userProven reports whether hash is hex HMAC-SHA256(key, userID) for one of
// the identity keys, in time independent of where a wrong hash differs.
func (c *Collector) userProven(userID, hash []byte) bool {
	want := make([]byte, sha256.Size)
	if len(hash) != hex.EncodedLen(sha256.Size) {
		return false
	}
	if _, err := hex.Decode(want, bytes.ToLower(hash)); err != nil {
		return false
	}
	ok := false
	for _, k := range c.cfg.IdentityKeys {
		m := hmac.New(sha256.New, []byte(k))
		m.Write(userID)
		if hmac.Equal(m.Sum(nil), want) {
			ok = true
		}
	}
	return ok
}

// SetAudiences serves GET and POST /v1/audiences from l; without one it answers 503.
// Call it before Run. When l also lists its audiences (Names, as
// audience.Reader does: the rules file's), each has its series of
// leadstream_collector_audience_members_total from the start, at 0, as every
// label value known in advance.
func (c *Collector) SetAudiences(l AudienceLookup) {
	c.audienceLookup = l
	if n, ok := l.(interface{ Names() []string }); ok {
		for _, name := range n.Names() {
			c.am.members.WithLabelValues(name)
		}
	}
}

// audienceMetrics are the metrics of the audience API:
//
//	leadstream_collector_audience_lookups_total{result}   every answer of /v1/audiences, by audienceResults
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
			Help: "Answers of /v1/audiences by result: ok (200), bad_request (400), unauthorized (401), origin (403: origin not allowed, a preflight's included), identity (403: a userHash refused), method_not_allowed (405), too_large (413: body over 1 MB), rate_limit (429), internal_error (500: a stored state does not decode), unavailable (503: Redis unreachable or not configured), preflight (204 to an OPTIONS), timeout (408: body not received in time)."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "leadstream_collector_audience_lookup_duration_seconds",
			Help: "Time to read a visitor's audiences from Redis.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14)}),
		members: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_collector_audience_members_total",
			Help: "Audience answers that named the audience (one per answer and audience)."}, []string{"audience"}),
	}
	if reg != nil {
		reg.MustRegister(m.lookups, m.duration, m.members)
	}
	for _, r := range audienceResults {
		m.lookups.WithLabelValues(r)
	}
	return m
}

// audienceResults are the result labels of the audience lookups: one for
// every answer of /v1/audiences, created at zero.
var audienceResults = []string{"ok", "bad_request", "unauthorized", "origin", "identity", "rate_limit", "unavailable",
	"internal_error", "method_not_allowed", "preflight", "too_large", "timeout"}

// audienceAnswer is the body of a 200: the names and nothing else.
type audienceAnswer struct {
	Audiences []string `json:"audiences"`
}

// audiences serves GET and POST /v1/audiences. It answers browsers like the ingest
// endpoints (CORS per write key, refusals included), and never caches. Every
// answer is counted under its result.
func (c *Collector) audiences(ctx *fasthttp.RequestCtx) {
	c.am.lookups.WithLabelValues(c.answerAudiences(ctx)).Inc()
}

// answerAudiences answers a request of /v1/audiences and returns the result
// label of its answer (audienceResults).
func (c *Collector) answerAudiences(ctx *fasthttp.RequestCtx) string {
	origin := string(ctx.Request.Header.Peek("Origin"))
	if ctx.IsOptions() {
		// Only a request with an Authorization header needs a preflight;
		// ls.js sends the key as a query parameter and needs none.
		h := &ctx.Response.Header
		h.Set("Vary", "Origin")
		if origin == "" || !c.anyOriginAllowed(origin) {
			ctx.SetStatusCode(fasthttp.StatusForbidden)
			return "origin"
		}
		allowCORS(ctx, origin)
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization")
		h.Set("Access-Control-Max-Age", "86400")
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return "preflight"
	}
	if origin != "" {
		allowCORS(ctx, origin)
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	if !ctx.IsGet() && !ctx.IsHead() && !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "GET, HEAD, POST, OPTIONS")
		httpapi.Error(ctx, fasthttp.StatusMethodNotAllowed, "use GET, or POST with a form-encoded body")
		return "method_not_allowed"
	}
	// The same parameters in the query (GET) or a form-encoded body (POST,
	// which keeps a signed-in user's id and userHash out of URLs and the
	// logs of proxies; a browser sends it without a preflight).
	args := ctx.QueryArgs()
	if ctx.IsPost() {
		args = ctx.PostArgs()
	}
	keyID := c.writeKey(ctx, string(args.Peek("writeKey")))
	if keyID == "" {
		httpapi.Error(ctx, fasthttp.StatusUnauthorized, "unknown or missing write key (HTTP Basic user name or writeKey parameter)")
		return "unauthorized"
	}
	if origin != "" && !c.originAllowed(keyID, origin) {
		httpapi.Error(ctx, fasthttp.StatusForbidden, "origin not allowed for this write key (see collector.cors-origins)")
		return "origin"
	}
	if !c.server[keyID] {
		// A lookup reads Redis up to a chain's length, and may check a
		// userHash: browser keys pay one event of their address's and key's
		// buckets for each, refused ones included.
		if wait, limit, ok := c.limit(c.clientAddr(ctx), keyID, 1, time.Now()); !ok {
			c.tooMany(ctx, wait, limit, 1)
			return "rate_limit"
		}
	}
	anon := string(args.Peek("anonymousId"))
	if anon == "" || len(anon) > maxAudienceID {
		httpapi.Error(ctx, fasthttp.StatusBadRequest, "anonymousId: want the visitor's anonymous id (1 to 256 bytes) as a parameter")
		return "bad_request"
	}
	user, hash := args.Peek("userId"), args.Peek("userHash")
	if (len(user) == 0) != (len(hash) == 0) || len(user) > maxUserID {
		httpapi.Error(ctx, fasthttp.StatusBadRequest, "userId and userHash: give both (the signed-in user's id, 1 to 256 bytes, and hex HMAC-SHA256 of it with an identity key) or neither")
		return "bad_request"
	}
	lead := ""
	if len(user) > 0 {
		if len(c.cfg.IdentityKeys) == 0 {
			httpapi.Error(ctx, fasthttp.StatusForbidden, "userHash cannot be checked: the collector has no identity-keys")
			return "identity"
		}
		if !c.userProven(user, hash) {
			httpapi.Error(ctx, fasthttp.StatusForbidden, "userHash: not the hex HMAC-SHA256 of userId with an identity key")
			return "identity"
		}
		lead = string(user)
	}
	if c.audienceLookup == nil {
		httpapi.Error(ctx, fasthttp.StatusServiceUnavailable, "audiences not configured: no redis address")
		return "unavailable"
	}
	rctx, cancel := context.WithTimeout(context.Background(), audienceTimeout)
	defer cancel()
	start := time.Now()
	names, err := c.audienceLookup.Audiences(rctx, anon, lead)
	if errors.Is(err, leadstate.ErrCorruptState) {
		// Retrying will not help: a state no codec version reads.
		// The error names the subject (a lead id may be an e-mail address).
		c.log.Error("reading audiences: a stored state does not decode")
		c.log.Debug("reading audiences: a stored state does not decode", "err", err)
		httpapi.Error(ctx, fasthttp.StatusInternalServerError, "reading audiences failed: a stored state does not decode")
		return "internal_error"
	}
	if err != nil {
		if !errors.Is(err, context.DeadlineExceeded) {
			c.log.Warn("reading audiences failed", "err", err)
		}
		ctx.Response.Header.Set("Retry-After", "1")
		httpapi.Error(ctx, fasthttp.StatusServiceUnavailable, "reading audiences failed, retry")
		return "unavailable"
	}
	c.am.duration.Observe(time.Since(start).Seconds())
	for _, n := range names {
		c.am.members.WithLabelValues(n).Inc()
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
	return "ok"
}
