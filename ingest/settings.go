package ingest

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/leadstream/leadstream/internal/httpapi"
	"github.com/valyala/fasthttp"
)

// settingsPrefix is where analytics.js (Analytics Next) and the mobile SDKs
// fetch a source's settings: {cdnURL}/v1/projects/{writeKey}/settings.
const settingsPrefix = "/v1/projects/"

// sdkSettings is the answer of the settings endpoint: what analytics.js
// needs to send to this collector. Only its Segment.io destination is
// listed (no device-mode destinations to download), and remote metrics are
// off: analytics.js would otherwise post its own telemetry to Segment.
type sdkSettings struct {
	Integrations struct {
		SegmentIO struct {
			APIKey   string `json:"apiKey"`
			APIHost  string `json:"apiHost"`  // host[:port][/path]/v1: the SDKs post to https?://{apiHost}/{t,p,i,g,a,s,b}
			Protocol string `json:"protocol"` // http or https (the mobile SDKs always use https)
		} `json:"Segment.io"`
	} `json:"integrations"`
	Plan    struct{} `json:"plan"`
	Metrics struct {
		SampleRate int `json:"sampleRate"`
	} `json:"metrics"`
	EdgeFunction         struct{} `json:"edgeFunction"`
	AnalyticsNextEnabled bool     `json:"analyticsNextEnabled"`
	MiddlewareSettings   struct{} `json:"middlewareSettings"`
	EnabledMiddleware    struct{} `json:"enabledMiddleware"`
	RemotePlugins        []any    `json:"remotePlugins"`
}

// settings serves GET /v1/projects/{writeKey}/settings, so that an SDK
// loaded with this collector as its CDN (analytics.js:
// AnalyticsBrowser.load({writeKey, cdnURL: "<collector's public URL>"}))
// sends its events here. The API host is the collector's public URL
// (public-url) or, without one, the Host the request came to.
func (c *Collector) settings(ctx *fasthttp.RequestCtx, rest string) {
	key, tail, _ := strings.Cut(rest, "/")
	if tail != "settings" || key == "" {
		httpapi.Error(ctx, fasthttp.StatusNotFound, "no such endpoint: "+settingsPrefix+rest+" (want "+settingsPrefix+"{writeKey}/settings)")
		return
	}
	origin := string(ctx.Request.Header.Peek("Origin"))
	if origin != "" {
		allowCORS(ctx, origin)
	}
	if ctx.IsOptions() {
		ctx.Response.Header.Set("Access-Control-Allow-Methods", "GET, OPTIONS")
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		httpapi.Error(ctx, fasthttp.StatusMethodNotAllowed, "use GET")
		return
	}
	keyID := ""
	for k, id := range c.keys {
		if subtle.ConstantTimeCompare([]byte(k), []byte(key)) == 1 {
			keyID = id
		}
	}
	if keyID == "" {
		httpapi.Error(ctx, fasthttp.StatusNotFound, "unknown write key: no source with this key sends here")
		return
	}
	if origin != "" && !c.originAllowed(keyID, origin) {
		c.m.rejected.WithLabelValues("origin").Inc()
		httpapi.Error(ctx, fasthttp.StatusForbidden, "origin not allowed for this write key (see collector.cors-origins)")
		return
	}
	host, protocol, err := c.apiHost(ctx)
	if err != nil {
		httpapi.Error(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	var s sdkSettings
	s.Integrations.SegmentIO.APIKey, s.Integrations.SegmentIO.APIHost, s.Integrations.SegmentIO.Protocol = key, host, protocol
	s.AnalyticsNextEnabled, s.RemotePlugins = true, []any{}
	out, err := json.Marshal(&s)
	if err != nil {
		panic("BUG: encoding sdk settings: " + err.Error())
	}
	// Browsers load it on every page: a few minutes of caching spare the
	// collector, and a changed public URL reaches them as soon.
	ctx.Response.Header.Set("Cache-Control", "public, max-age=300")
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
}

// apiHost is the apiHost and protocol of the settings: from the public URL,
// else from the request.
func (c *Collector) apiHost(ctx *fasthttp.RequestCtx) (host, protocol string, err error) {
	if u := c.publicURL; u != nil {
		return u.Host + strings.TrimSuffix(u.Path, "/") + "/v1", u.Scheme, nil
	}
	h := string(ctx.Host())
	if !validHost(h) {
		return "", "", fmt.Errorf("Host %q is not a host[:port]; set public-url (LEADSTREAM_PUBLIC_URL)", h)
	}
	protocol = "http"
	if ctx.IsTLS() || c.forwardedHTTPS(ctx) {
		protocol = "https"
	}
	return h + "/v1", protocol, nil
}

// validHost accepts a host name, IPv4 or bracketed IPv6 address, with an
// optional port.
func validHost(h string) bool {
	if h == "" || len(h) > 261 {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-:[]", r)) {
			return false
		}
	}
	_, err := url.Parse("http://" + h + "/")
	return err == nil
}

// parsePublicURL checks public-url: an absolute http(s) URL with
// no query or fragment; a path is kept (a collector behind a path prefix).
func parsePublicURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("public-url %q: want http(s)://host[:port][/path]", s)
	}
	return u, nil
}
