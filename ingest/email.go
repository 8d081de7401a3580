package ingest

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
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
	tok := strings.TrimSuffix(raw, ".gif")
	claims, ok := c.verifyToken(tok, token.Open)
	if !ok || !c.emailAllowed(ctx, token.Open) {
		return
	}
	e := c.emailEvent(ctx, claims, tok, "eo-", event.EmailOpen, "Email Opened")
	c.recordEmail(ctx, e, claims)
}

// emailClick serves GET /c/{token}: it records the click and redirects to the
// signed URL. A token that does not verify is never redirected anywhere (no
// open redirect): the answer is a small 404 page that does not say which
// check failed. An expired token is still redirected (its URL was signed),
// but not recorded.
func (c *Collector) emailClick(ctx *fasthttp.RequestCtx, raw string) {
	ctx.Response.Header.Set("Cache-Control", "no-store")
	claims, err := c.checkToken(raw, token.Click)
	if err != nil && !errors.Is(err, token.ErrExpired) {
		htmlPage(ctx, fasthttp.StatusNotFound, "Link not valid", "This link is not valid. Please use the link from the original email.")
		return
	}
	// Redirect even when nothing is recorded (expired, a person who asked
	// not to be tracked, over a rate limit, Kafka down): the reader must
	// reach the page.
	if err == nil && c.emailAllowed(ctx, token.Click) {
		e := c.emailEvent(ctx, claims, raw, "ec-", event.EmailClick, "Email Link Clicked")
		e.URL = claims.URL
		segment.FillFromURL(e)
		e.Campaign = cmp.Or(claims.Campaign, e.Campaign)
		// The anonymous cookie (when the collector shares the site's domain)
		// stitches the visitor's anonymous history to the lead.
		e.AnonymousID = validAnonID(string(ctx.Request.Header.Cookie(anonCookie)))
		c.recordEmail(ctx, e, claims)
	}
	ctx.Response.Header.Set("Location", claims.URL)
	// The token must not leak to the target site through the Referer.
	ctx.Response.Header.Set("Referrer-Policy", "no-referrer")
	ctx.SetStatusCode(fasthttp.StatusFound)
}

// verifyToken is checkToken for the pixel: only a valid, unexpired token is ok.
func (c *Collector) verifyToken(raw string, kind token.Kind) (token.Claims, bool) {
	claims, err := c.checkToken(raw, kind)
	return claims, err == nil
}

// checkToken verifies a token of kind and counts what is wrong with it: an
// expired token (token.ErrExpired) comes with its claims.
func (c *Collector) checkToken(raw string, kind token.Kind) (token.Claims, error) {
	if c.tokens == nil {
		c.m.email.WithLabelValues(kindLabel(kind), "invalid_token").Inc()
		return token.Claims{}, token.ErrNoKeys
	}
	claims, err := c.tokens.Verify(raw)
	if errors.Is(err, token.ErrExpired) && claims.Kind == kind {
		c.m.email.WithLabelValues(kindLabel(kind), "expired").Inc()
		return claims, err
	}
	if err == nil && claims.Kind != kind {
		err = fmt.Errorf("%w: a %s token used as a %s", token.ErrBadClaims, kindLabel(claims.Kind), kindLabel(kind))
	}
	if err != nil {
		c.m.email.WithLabelValues(kindLabel(kind), "invalid_token").Inc()
		c.log.Debug("invalid email token", "kind", kindLabel(kind), "err", err)
		return token.Claims{}, err
	}
	return claims, nil
}

// emailAllowed says whether an open or click with a good token may be
// recorded: not when the browser sends Global Privacy Control, nor over the
// client address's rate limit (each counted).
func (c *Collector) emailAllowed(ctx *fasthttp.RequestCtx, kind token.Kind) bool {
	if gpc(ctx) {
		c.m.gpc.WithLabelValues(kindEndpoint(kind)).Inc()
		c.m.email.WithLabelValues(kindLabel(kind), "gpc").Inc()
		return false
	}
	if _, _, ok := c.limit(c.clientAddr(ctx), "", 1, time.Now()); !ok {
		c.m.rejected.WithLabelValues("rate_limit").Inc()
		c.m.email.WithLabelValues(kindLabel(kind), "rate_limited").Inc()
		return false
	}
	return true
}

func kindLabel(k token.Kind) string {
	if k == token.Click {
		return "click"
	}
	return "open"
}

func kindEndpoint(k token.Kind) string {
	if k == token.Click {
		return "/c"
	}
	return "/o"
}

// emailEvent builds the event of a verified open or click of token tok. Its
// id is derived from the token and the hour (emailEventID), so the same link
// opened again and again within an hour — a forwarded email, a reader
// reloading — counts once; the next hour it is a new touch.
func (c *Collector) emailEvent(ctx *fasthttp.RequestCtx, claims token.Claims, tok, idPrefix string, typ event.Type, track string) *event.Event {
	now := time.Now().UTC().Truncate(time.Millisecond)
	p := emailProperties(claims)
	return &event.Event{
		ID: emailEventID(idPrefix, tok, now), Type: typ, Track: track,
		// The lead id trimmed like every id of a Segment call: a sending
		// system that signed " ann@acme.example" made a second lead.
		EventTime: now, ReceivedAt: now, LeadID: strings.TrimSpace(claims.Lead), Campaign: claims.Campaign, Properties: p,
		IP: c.clientIP(ctx), UserAgent: string(ctx.UserAgent()),
	}
}

// emailEventID is prefix + 128 bits of SHA-256(token, hour of at) in hex.
func emailEventID(prefix, tok string, at time.Time) string {
	return hourEventID(prefix, at, []byte(tok))
}

// hourEventID is prefix + 128 bits of SHA-256(parts…, hour of at) in hex:
// the id of an event that counts once per clock hour (email touches, form
// posts).
func hourEventID(prefix string, at time.Time, parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	var hour [9]byte
	binary.BigEndian.PutUint64(hour[1:], uint64(at.Unix()/3600))
	h.Write(hour[:])
	var sum [sha256.Size]byte
	return prefix + hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// recordEmail writes the event of an open or click, unless this collector
// already wrote that event (same token, same hour): a repeat is scored once
// anyway (same id), and not writing it keeps one row per touch in ClickHouse
// and spares Kafka a reader who reloads the pixel over and over.
func (c *Collector) recordEmail(ctx *fasthttp.RequestCtx, e *event.Event, claims token.Claims) {
	c.bots.email(e, claims, e.ReceivedAt)
	kind := kindLabel(claims.Kind)
	hour := e.ReceivedAt.Unix() / 3600
	if c.emailSeen.has(e.ID, hour) {
		c.m.email.WithLabelValues(kind, "repeat").Inc()
		return
	}
	if err := c.write(ctx, []*event.Event{e}); err != nil {
		c.m.email.WithLabelValues(kind, "unavailable").Inc()
		c.log.Warn("email "+kind+" not recorded: kafka did not acknowledge it", "err", err)
		return
	}
	c.emailSeen.add(e.ID, hour)
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

// hourSet remembers the ids of the opens and clicks written in the current
// hour (the hour of their ids), in shards so requests rarely wait on one
// another; at most max ids, past which a repeat is written again (and still
// scored once, by its id). A new hour forgets the last one.
type hourSet struct {
	shards [16]hourShard
	max    int // per shard
}

type hourShard struct {
	mu   sync.Mutex
	hour int64
	ids  map[string]struct{}
}

// maxEmailSeen bounds hourSet: 200,000 ids of about 40 bytes.
const maxEmailSeen = 200_000

func newHourSet(max int) *hourSet {
	s := &hourSet{}
	s.max = max / len(s.shards)
	for i := range s.shards {
		s.shards[i].ids = map[string]struct{}{}
	}
	return s
}

func (s *hourSet) shard(id string) *hourShard {
	var h uint32
	for i := max(len(id)-4, 0); i < len(id); i++ { // the ids end in hex digits of a hash
		h = h*31 + uint32(id[i])
	}
	return &s.shards[h%uint32(len(s.shards))]
}

// has reports whether id was added in hour.
func (s *hourSet) has(id string, hour int64) bool {
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, ok := sh.ids[id]
	return ok && sh.hour == hour
}

// add remembers id for hour; an id of an earlier hour than the one kept is
// not remembered.
func (s *hourSet) add(id string, hour int64) {
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if hour < sh.hour {
		return
	}
	if hour > sh.hour {
		sh.hour = hour
		clear(sh.ids)
	}
	if len(sh.ids) < s.max {
		sh.ids[id] = struct{}{}
	}
}
