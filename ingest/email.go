package ingest

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/ingest/segment"
	"github.com/leadstream/leadstream/ingest/token"
	"github.com/valyala/fasthttp"
)

// gif is a transparent 1×1 GIF, the smallest image every mail client shows.
var pixelGIF = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

// emailOpen serves GET /o/{token}.gif. It always answers the GIF, whatever
// happens to the token or to Kafka: a broken image in a customer's email is
// worse than a lost open. What was not recorded is counted in
// leadstream_collector_email_requests_total{kind="open"}.
func (c *Collector) emailOpen(ctx *fasthttp.RequestCtx, raw string) {
	ctx.SetContentType("image/gif")
	// Every open must reach us: no caching by mail clients or proxies.
	ctx.Response.Header.Set("Cache-Control", "no-store, no-cache, must-revalidate, private")
	ctx.Response.Header.Set("Pragma", "no-cache")
	ctx.Response.Header.Set("Expires", "0")
	ctx.SetBody(pixelGIF)
	if !ctx.IsGet() && !ctx.IsHead() {
		return
	}
	claims, ok := c.verifyToken(strings.TrimSuffix(raw, ".gif"), token.Open)
	if !ok {
		return
	}
	e := c.emailEvent(ctx, claims, "eo-", event.EmailOpen, "Email Opened")
	c.recordEmail(ctx, e, claims)
}

// emailClick serves GET /c/{token}: it records the click and redirects to the
// signed URL. A token that does not verify is never redirected anywhere (no
// open redirect): the answer is a small 404 page that does not say which
// check failed.
func (c *Collector) emailClick(ctx *fasthttp.RequestCtx, raw string) {
	ctx.Response.Header.Set("Cache-Control", "no-store")
	claims, ok := c.verifyToken(raw, token.Click)
	if !ok {
		htmlPage(ctx, fasthttp.StatusNotFound, "Link not valid", "This link is not valid. Please use the link from the original email.")
		return
	}
	e := c.emailEvent(ctx, claims, "ec-", event.EmailClick, "Email Link Clicked")
	e.URL = claims.URL
	segment.FillFromURL(e)
	e.Campaign = cmp.Or(claims.Campaign, e.Campaign)
	// The anonymous cookie (when the collector shares the site's domain)
	// stitches the visitor's anonymous history to the lead.
	e.AnonymousID = validAnonID(string(ctx.Request.Header.Cookie(anonCookie)))
	// Redirect even when Kafka is down: the reader must reach the page.
	c.recordEmail(ctx, e, claims)
	ctx.Response.Header.Set("Location", claims.URL)
	// The token must not leak to the target site through the Referer.
	ctx.Response.Header.Set("Referrer-Policy", "no-referrer")
	ctx.SetStatusCode(fasthttp.StatusFound)
}

func (c *Collector) verifyToken(raw string, kind token.Kind) (token.Claims, bool) {
	if c.tokens == nil {
		c.m.email.WithLabelValues(kindLabel(kind), "invalid_token").Inc()
		return token.Claims{}, false
	}
	claims, err := c.tokens.Verify(raw)
	if err != nil || claims.Kind != kind {
		c.m.email.WithLabelValues(kindLabel(kind), "invalid_token").Inc()
		c.log.Debug("invalid email token", "kind", kindLabel(kind), "err", err)
		return token.Claims{}, false
	}
	return claims, true
}

func kindLabel(k token.Kind) string {
	if k == token.Click {
		return "click"
	}
	return "open"
}

// emailEvent builds the event of a verified open or click. Each request is a
// distinct event (a second open is a second touch), so its id is random.
func (c *Collector) emailEvent(ctx *fasthttp.RequestCtx, claims token.Claims, idPrefix string, typ event.Type, track string) *event.Event {
	now := time.Now().UTC().Truncate(time.Millisecond)
	p := emailProperties(claims)
	return &event.Event{
		ID: newID(idPrefix), Type: typ, Track: track,
		EventTime: now, ReceivedAt: now, LeadID: claims.Lead, Campaign: claims.Campaign, Properties: p,
		IP: c.clientIP(ctx), UserAgent: string(ctx.UserAgent()),
	}
}

func (c *Collector) recordEmail(ctx *fasthttp.RequestCtx, e *event.Event, claims token.Claims) {
	c.bots.email(e, claims, e.ReceivedAt)
	kind := kindLabel(claims.Kind)
	if err := c.write(ctx, []*event.Event{e}); err != nil {
		c.m.email.WithLabelValues(kind, "unavailable").Inc()
		c.log.Warn("email "+kind+" not recorded: kafka did not acknowledge it", "err", err)
		return
	}
	c.m.email.WithLabelValues(kind, "recorded").Inc()
	c.countEvents([]*event.Event{e})
}

// emailProperties is {"message_id":…,"url":…} (url only for clicks), as
// encoding/json writes that map. Strings that encoding/json would escape
// (quotes, backslashes, HTML characters, control and non-ASCII bytes) take
// encoding/json itself.
func emailProperties(c token.Claims) []byte {
	if plainJSON(c.Message) && plainJSON(c.URL) {
		p := make([]byte, 0, len(`{"message_id":"","url":""}`)+len(c.Message)+len(c.URL))
		p = append(append(append(p, `{"message_id":"`...), c.Message...), '"')
		if c.URL != "" {
			p = append(append(append(p, `,"url":"`...), c.URL...), '"')
		}
		return append(p, '}')
	}
	props := map[string]string{"message_id": c.Message}
	if c.URL != "" {
		props["url"] = c.URL
	}
	p, err := json.Marshal(props)
	if err != nil {
		panic("BUG: encoding email properties: " + err.Error())
	}
	return p
}

// plainJSON reports whether encoding/json writes s as it is between quotes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// countEvents updates the event metrics of acknowledged events.
func (c *Collector) countEvents(events []*event.Event) {
	for _, e := range events {
		c.m.events.WithLabelValues(string(e.Type)).Inc()
		if e.Bot {
			label, _, _ := strings.Cut(e.BotReason, ":")
			c.m.bots.WithLabelValues(label).Inc()
		}
	}
}

// newID returns prefix + 128 random bits in hex.
func newID(prefix string) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("BUG: crypto/rand failed: " + err.Error())
	}
	return prefix + hex.EncodeToString(b[:])
}

// htmlPage answers a tiny self-contained HTML page (browser-facing errors
// and the forms' thank-you page). title and msg are constants, never input.
func htmlPage(ctx *fasthttp.RequestCtx, code int, title, msg string) {
	ctx.SetStatusCode(code)
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	ctx.SetBodyString(`<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width">` +
		`<title>` + title + `</title><body style="font:16px system-ui,sans-serif;max-width:32em;margin:4em auto;padding:0 1em">` +
		`<h1 style="font-size:1.4em">` + title + `</h1><p>` + msg + `</p></body>`)
}
