package ingest

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/publicsuffix"
)

// parseCORSOrigins parses "KEY=ORIGIN|ORIGIN,KEY2=*" (collector.cors-origins).
// Write keys and origins contain neither ',' nor '|', and the key ends at the
// first '='.
func parseCORSOrigins(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		key, list, ok := strings.Cut(entry, "=")
		if !ok || key == "" || list == "" {
			return nil, fmt.Errorf("entry %d: want KEY=ORIGIN|ORIGIN", len(out)+1)
		}
		for _, o := range strings.Split(list, "|") {
			o = strings.TrimRight(strings.TrimSpace(o), "/")
			if err := checkOriginPattern(o); err != nil {
				return nil, err
			}
			out[key] = append(out[key], o)
		}
	}
	return out, nil
}

// checkOriginPattern accepts "*", "scheme://host[:port]" and "scheme://*.domain".
func checkOriginPattern(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(strings.Replace(o, "://*.", "://", 1))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
		return fmt.Errorf("origin %q: want *, scheme://host[:port] or scheme://*.domain", o)
	}
	return nil
}

// originAllowed reports whether a browser origin may use the write key
// (by id). Keys without a list accept every origin: the key is public in the
// page anyway, the list only stops other sites from sending with it.
func (c *Collector) originAllowed(keyID, origin string) bool {
	list, ok := c.origins[keyID]
	if !ok {
		return true
	}
	return matchOrigins(list, origin)
}

func matchOrigins(list []string, origin string) bool {
	origin = strings.ToLower(origin)
	for _, p := range list {
		p = strings.ToLower(p)
		switch {
		case p == "*" || p == origin:
			return true
		case strings.Contains(p, "://*."):
			scheme, domain, _ := strings.Cut(p, "://*.")
			if rest, ok := strings.CutPrefix(origin, scheme+"://"); ok && strings.HasSuffix(rest, "."+domain) {
				return true
			}
		}
	}
	return false
}

// anyOriginAllowed is the preflight's answer: the key is not known before
// the real request, so an origin passes if some browser key accepts it.
func (c *Collector) anyOriginAllowed(origin string) bool {
	for _, id := range c.keys {
		if _, listed := c.origins[id]; !listed && !c.server[id] {
			return true // a browser key that accepts every origin
		}
	}
	for _, list := range c.origins {
		if matchOrigins(list, origin) {
			return true
		}
	}
	return false
}

// preflight answers a CORS preflight (OPTIONS). Only analytics.js-style
// JSON posts need one; the beacon's text/plain posts do not.
func (c *Collector) preflight(ctx *fasthttp.RequestCtx) {
	origin := string(ctx.Request.Header.Peek("Origin"))
	h := &ctx.Response.Header
	h.Set("Vary", "Origin")
	if origin == "" || !c.anyOriginAllowed(origin) {
		ctx.SetStatusCode(fasthttp.StatusForbidden)
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	allow := corsHeaders
	// Other headers an SDK is configured to add (analytics.js takes custom
	// ones) are allowed too: the write key, not a header, is what counts.
	if req := ctx.Request.Header.Peek("Access-Control-Request-Headers"); headerList(req) {
		allow += ", " + string(req)
	}
	h.Set("Access-Control-Allow-Headers", allow)
	h.Set("Access-Control-Max-Age", "86400")
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// corsHeaders are the request headers the SDKs send: analytics.js posts
// with Authorization and adds X-Retry-Count to its retries, the mobile SDKs
// gzip (Content-Encoding).
const corsHeaders = "Content-Type, Authorization, Content-Encoding, X-Retry-Count"

// headerList reports whether h is a short list of header names.
func headerList(h []byte) bool {
	if len(h) == 0 || len(h) > 256 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == ',' || c == ' ') {
			return false
		}
	}
	return true
}

// allowCORS sets the CORS answer headers for an allowed origin.
func allowCORS(ctx *fasthttp.RequestCtx, origin string) {
	h := &ctx.Response.Header
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Expose-Headers", corsExposed)
	h.Add("Vary", "Origin")
}

// corsExposed are the answer headers a page's script may read besides the
// CORS-safelisted ones (Content-Type …): Retry-After, which analytics.js
// (analytics-next's parseRetryAfter) and ls.js read on a 429 (and a 503) to
// wait what the collector asks instead of backing off on their own. The
// collector sends no other header a client reads (no X-RateLimit-*).
const corsExposed = "Retry-After"

// earlyCORS sets the CORS answer headers of a request refused before its
// handler ran (httpError: a body over MaxBodyBytes, one too slow), whose
// headers fasthttp did read, so that a browser reads the refusal (a 413 is
// dropped by analytics.js and ls.js) instead of taking it for a network
// error and sending the same body again. The rule is the one of the
// endpoint the request was for, which had no body to read the write key
// from yet:
//   - the Segment endpoints (/v1/{track,t,batch,b …}), the SDK settings and
//     /v1/audiences answer every Origin, refusals included, as their
//     handlers do before they know the key (see ingest): the allow-list is
//     enforced by refusing the events, and this answer stores nothing;
//   - a form (/f/…) only an origin allowed for its key when the key is
//     known before the body (Basic user name or writeKey query parameter),
//     else one some key allows (the preflight's rule): the form handler
//     sets CORS only once the origin passed;
//   - anything else (the lead API and other mounts, email links, /ls.js,
//     /metrics …) gets no CORS header, as from its own handler.
func (c *Collector) earlyCORS(ctx *fasthttp.RequestCtx) {
	origin := string(ctx.Request.Header.Peek("Origin"))
	if origin == "" {
		return
	}
	path := string(ctx.Path())
	for _, m := range c.mounts {
		if strings.HasPrefix(path, m.prefix) || path+"/" == m.prefix {
			return
		}
	}
	switch {
	case path == AudiencesPath || strings.HasPrefix(path, settingsPrefix) || knownIngest(path):
		allowCORS(ctx, origin)
	case strings.HasPrefix(path, "/f/"):
		keyID := c.writeKey(ctx, string(ctx.QueryArgs().Peek(fieldWriteKey)))
		if (keyID != "" && c.originAllowed(keyID, origin)) || (keyID == "" && c.anyOriginAllowed(origin)) {
			allowCORS(ctx, origin)
		}
	}
}

// sameSite reports whether two hosts (no port) belong to one site: equal, or
// the same registrable domain (public suffix list + 1). IP addresses and
// single-label hosts such as localhost must be equal.
func sameSite(a, b string) bool {
	a, b = strings.ToLower(a), strings.ToLower(b)
	if a == "" || b == "" {
		return false
	}
	if a == b {
		return true
	}
	if net.ParseIP(a) != nil || net.ParseIP(b) != nil {
		return false
	}
	ea, err1 := publicsuffix.EffectiveTLDPlusOne(a)
	eb, err2 := publicsuffix.EffectiveTLDPlusOne(b)
	return err1 == nil && err2 == nil && ea == eb
}

// requestOrigin is the page that sent a browser request: the Origin header,
// else the Referer's origin. Empty when neither is usable.
func requestOrigin(ctx *fasthttp.RequestCtx) string {
	if o := string(ctx.Request.Header.Peek("Origin")); o != "" && o != "null" {
		return o
	}
	if ref, err := url.Parse(string(ctx.Request.Header.Referer())); err == nil && ref.Host != "" && (ref.Scheme == "http" || ref.Scheme == "https") {
		return ref.Scheme + "://" + ref.Host
	}
	return ""
}

// hostOf returns the host name (no port) of an origin or URL.
func hostOf(origin string) string {
	u, err := url.Parse(origin)
	if err != nil {
		return ""
	}
	return u.Hostname()
}
