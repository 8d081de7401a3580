package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/leadstream/leadstream/internal/httpapi"
	"github.com/valyala/fasthttp"
)

// MaxBodyBytes is the largest request body the collector reads (1 MiB):
// above Segment's 500 KB per batch, so a batch over that gets its own JSON
// error naming the limit, and as much as a form post may carry.
const MaxBodyBytes = 1 << 20

// The limits a refusal of this file names in its "limit".
const (
	limitRateIP  = "rate_limit_ip"
	limitRateKey = "rate_limit_key"
	// A batch of more messages than a bucket's burst, which no wait lets
	// through: refused whole (413).
	limitBurstIP  = "batch_over_burst_ip"
	limitBurstKey = "batch_over_burst_key"
	limitBodySize = "body_size_1MB"
)

// limit takes n events (at least one: every request costs one) from the
// buckets of the client address a and of the browser write key keyID ("" for
// none) at now, or returns how long to wait and which limit refused them.
// Server keys are not limited: callers do not call it for them.
func (c *Collector) limit(a netip.Addr, keyID string, n int, now time.Time) (time.Duration, string, bool) {
	t := now.UnixNano()
	ip := c.ipRate != nil && a.IsValid()
	if ip && n > c.ipRate.g.burst {
		c.ipRate.drain(a, t)
		return 0, limitBurstIP, false
	}
	if b := c.keyRate[keyID]; b != nil && n > b.g.burst {
		if ip {
			c.ipRate.drain(a, t)
		}
		return 0, limitBurstKey, false
	}
	if ip {
		if wait, ok := c.ipRate.take(a, n, t); !ok {
			return wait, limitRateIP, false
		}
	}
	if b := c.keyRate[keyID]; b != nil {
		if wait, ok := b.take(n, t); !ok {
			if ip {
				c.ipRate.refund(a, n)
			}
			return wait, limitRateKey, false
		}
	}
	return 0, "", true
}

// overIP reports whether the client address a has no event left in its
// bucket, so that its request can be refused before its body is decoded.
func (c *Collector) overIP(a netip.Addr, now time.Time) (time.Duration, bool) {
	if c.ipRate == nil || !a.IsValid() {
		return 0, false
	}
	return c.ipRate.over(a, now.UnixNano())
}

// tooMany answers 429 with Retry-After for a rate limit, or 413 for a batch
// larger than a limit's burst (n messages), which waiting would not let in.
func (c *Collector) tooMany(ctx *fasthttp.RequestCtx, wait time.Duration, limit string, n int) {
	if limit == limitBurstIP || limit == limitBurstKey {
		c.m.rejected.WithLabelValues("rate_limit").Inc()
		flag, burst := "collector.rate-limit-key", c.cfg.RateLimitKey.Burst
		if limit == limitBurstIP {
			flag, burst = "collector.rate-limit-ip", c.ipRate.g.burst
		}
		httpapi.WriteError(ctx, fasthttp.StatusRequestEntityTooLarge, httpapi.ErrorBody{Limit: limit,
			Error: fmt.Sprintf("a batch of %d messages is more than the %d events a client may send at once (the burst of %s): send smaller batches", n, burst, flag)})
		return
	}
	c.m.rejected.WithLabelValues("rate_limit").Inc()
	after := retryAfter(wait)
	ctx.Response.Header.Set("Retry-After", after)
	msg := "rate limit of this client address reached (collector.rate-limit-ip): retry after " + after + " s"
	if limit == limitRateKey {
		msg = "rate limit of this write key reached (collector.rate-limit-key): retry after " + after + " s"
	}
	httpapi.WriteError(ctx, fasthttp.StatusTooManyRequests, httpapi.ErrorBody{Error: msg, Limit: limit})
}

// httpError answers a request fasthttp could not read: too large (over
// MaxBodyBytes, refused before it is read, or headers over the read
// buffer), too slow, or not HTTP. A browser gets the answer readable when
// the endpoint would have answered its origin (earlyCORS): only a request
// whose headers were read has one — fasthttp empties them when it cannot
// read them whole; for headers too large, the lines that fit are read
// again from the copy of the request's head (restoreHead).
func (c *Collector) httpError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	if errors.As(err, &small) {
		restoreHead(ctx)
	}
	c.earlyCORS(ctx)
	var ne *net.OpError
	var result string // of an audience lookup (audienceResults)
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		c.m.rejected.WithLabelValues("limit").Inc()
		result = "too_large"
		httpapi.WriteError(ctx, fasthttp.StatusRequestEntityTooLarge, httpapi.ErrorBody{Error: "body: over the limit of 1 MB (1048576 bytes) per request", Limit: limitBodySize})
	case small != nil:
		c.m.rejected.WithLabelValues("limit").Inc()
		result = "too_large"
		httpapi.Error(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "request headers too large")
	case errors.As(err, &ne) && ne.Timeout():
		c.m.rejected.WithLabelValues("malformed").Inc()
		result = "timeout"
		httpapi.Error(ctx, fasthttp.StatusRequestTimeout, "request not received in time")
	default:
		c.m.rejected.WithLabelValues("malformed").Inc()
		result = "bad_request"
		httpapi.Error(ctx, fasthttp.StatusBadRequest, "malformed HTTP request")
	}
	// A refusal of /v1/audiences (its headers read: a body over 1 MB or
	// too slow; headers too large whose request line was kept) is one of
	// its answers too.
	if string(ctx.Path()) == AudiencesPath {
		c.am.lookups.WithLabelValues(result).Inc()
	}
}

// gpc reports whether the request carries Global Privacy Control's
// "Sec-GPC: 1": the person asked not to be tracked, so nothing of the
// request is stored.
func gpc(ctx *fasthttp.RequestCtx) bool {
	return bytes.Equal(bytes.TrimSpace(ctx.Request.Header.Peek("Sec-GPC")), []byte("1"))
}
