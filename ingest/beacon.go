package ingest

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	"github.com/leadstream/leadstream/ingest/beacon"
	"github.com/leadstream/leadstream/internal/httpapi"
	"github.com/valyala/fasthttp"
)

// anonCookie is the first-party cookie holding the visitor's anonymous id,
// shared by ls.js (which sets it from script) and the collector (which sets
// it from responses, so it outlives Safari's 7-day cap on script-set cookies
// when the collector is served from the site's own domain).
const anonCookie = "ls_anon"

// anonCookieMaxAge is two years, the usual lifetime of analytics cookies.
const anonCookieMaxAge = 2 * 365 * 24 * time.Hour

// beaconLibrary is the context.library.name ls.js puts on its batches.
const beaconLibrary = "leadstream.js"

// serveBeacon serves GET /ls.js: the minified beacon, gzipped when the
// browser accepts it, with an ETag so that browsers revalidate cheaply.
// An hour of freshness bounds how long a fixed script takes to reach visitors.
func serveBeacon(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		httpapi.Error(ctx, fasthttp.StatusMethodNotAllowed, "use GET")
		return
	}
	h := &ctx.Response.Header
	h.Set("ETag", beacon.ETag)
	h.Set("Cache-Control", "public, max-age=3600")
	h.Set("Vary", "Accept-Encoding")
	// Sites with Cross-Origin-Embedder-Policy may load it from another origin.
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	if inm := ctx.Request.Header.Peek("If-None-Match"); len(inm) > 0 && etagMatches(string(inm), beacon.ETag) {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	ctx.SetContentType("application/javascript; charset=utf-8")
	if ctx.Request.Header.HasAcceptEncoding("gzip") {
		h.Set("Content-Encoding", "gzip")
		ctx.SetBody(beacon.Gzip)
		return
	}
	ctx.SetBody(beacon.Script)
}

func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// validAnonID returns id when it looks like an id ls.js or the collector made
// (8-64 of [A-Za-z0-9_-]), else "": cookie values are input like any other.
func validAnonID(id string) string {
	if len(id) < 8 || len(id) > 64 {
		return ""
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return ""
		}
	}
	return id
}

// isBeaconBatch reports whether a batch's context names ls.js.
func isBeaconBatch(ctxJSON json.RawMessage) bool {
	if len(ctxJSON) == 0 || !bytes.Contains(ctxJSON, []byte(beaconLibrary)) {
		return false
	}
	var c struct {
		Library struct {
			Name string `json:"name"`
		} `json:"library"`
	}
	return json.Unmarshal(ctxJSON, &c) == nil && c.Library.Name == beaconLibrary
}

// setAnonCookie sets the ls_anon cookie on the response when the collector is
// first-party for the page (origin): the page is on the collector's own host,
// or both are inside collector.cookie-domain. A third-party collector sets
// nothing; the script's own cookie is all there is then.
func (c *Collector) setAnonCookie(ctx *fasthttp.RequestCtx, origin, id string) {
	if id == "" || origin == "" {
		return
	}
	page := strings.ToLower(hostOf(origin))
	host := strings.ToLower(hostOf("http://" + string(ctx.Host())))
	domain := strings.ToLower(strings.TrimPrefix(c.cfg.CookieDomain, "."))
	within := func(h string) bool { return h == domain || strings.HasSuffix(h, "."+domain) }
	var ck fasthttp.Cookie
	switch {
	case domain != "" && within(page) && within(host):
		ck.SetDomain(domain)
	case page != "" && page == host:
		// host-only cookie
	default:
		return
	}
	ck.SetKey(anonCookie)
	ck.SetValue(id)
	ck.SetPath("/")
	ck.SetMaxAge(int(anonCookieMaxAge.Seconds()))
	ck.SetSameSite(fasthttp.CookieSameSiteLaxMode)
	ck.SetSecure(strings.HasPrefix(origin, "https://"))
	ctx.Response.Header.SetCookie(&ck)
}
