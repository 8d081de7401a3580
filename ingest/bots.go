package ingest

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/ingest/token"
)

// Bot reasons (event.BotReason). The metric label is the part before ':'.
const (
	reasonUserAgent     = "user_agent"           // + ":" + the matched marker, e.g. user_agent:headlesschrome
	reasonDeliveryDelay = "email_delivery_delay" // open/click sooner after sending than a person reacts
	reasonLinkBurst     = "link_burst"           // several links of one message clicked within the burst window
)

// botMarkers are lower-case substrings of user agents that belong to crawlers,
// headless or automated browsers, link-preview fetchers, email security
// scanners and HTTP libraries. The first match names the reason, so specific
// markers come before the generic ones. The README lists them.
var botMarkers = []string{
	// headless and automated browsers, audits
	"headlesschrome", "headless", "phantomjs", "puppeteer", "playwright", "selenium", "webdriver", "cypress",
	"lighthouse", "pagespeed", "gtmetrix",
	// email security scanners (link checking before delivery)
	"barracuda", "mimecast", "proofpoint", "safelinks", "symantec", "forcepoint", "trendmicro",
	// link previews
	"facebookexternalhit", "linkedinbot", "twitterbot", "slackbot", "discordbot", "telegrambot", "whatsapp", "skypeuripreview",
	// HTTP libraries and command-line tools
	"curl/", "wget/", "python-requests", "python-urllib", "aiohttp", "httpx", "go-http-client", "java/", "okhttp",
	"apache-httpclient", "libwww-perl", "node-fetch", "axios/",
	// crawlers (names of the big ones end in "bot"; the generic markers catch them)
	"yandex", "baiduspider", "slurp", "ahrefs", "semrush", "bytespider",
	"bot", "crawler", "spider", "crawl", "scraper",
}

// uaBotReason returns the bot reason for a user agent, or "" for a browser.
// An empty user agent counts as a bot only where browsers always send one
// (emptyIsBot): every browser and email client does, scripts often do not.
func uaBotReason(ua string, emptyIsBot bool) string {
	if strings.TrimSpace(ua) == "" {
		if emptyIsBot {
			return reasonUserAgent + ":empty"
		}
		return ""
	}
	if len(ua) > maxCachedUA {
		return scanUA(ua)
	}
	if r, ok := uaCache.Load(ua); ok {
		return r.(string)
	}
	r := scanUA(ua)
	if uaCacheLen.Add(1) > maxCachedUAs { // a flood of distinct agents: start over
		uaCache.Clear()
		uaCacheLen.Store(0)
	}
	uaCache.Store(strings.Clone(ua), r)
	return r
}

// The reasons of recently seen user agents: real traffic repeats a few
// thousand agents, and scanning one costs some 50 substring searches.
var (
	uaCache    sync.Map // user agent -> reason ("" for a browser)
	uaCacheLen atomic.Int64
)

const (
	maxCachedUAs = 4096
	maxCachedUA  = 512 // longer agents are scanned every time
)

func scanUA(ua string) string {
	l := strings.ToLower(ua)
	for _, m := range botMarkers {
		if strings.Contains(l, m) {
			if m == "bot" && strings.Contains(l, "cubot") { // a phone brand, not a bot
				continue
			}
			return reasonUserAgent + ":" + strings.TrimSuffix(m, "/")
		}
	}
	return ""
}

// botFilter flags events; it keeps the recent clicks per message to see
// scanner bursts. That memory is per collector process: behind a load
// balancer without affinity a burst split across instances is caught only by
// the delivery-delay rule.
type botFilter struct {
	minDelay, burst time.Duration

	mu        sync.Mutex
	clicks    map[string]*recentClicks // lead + "\x00" + message
	lastSweep time.Time
}

// recentClicks holds the newest clicks of one message (a small ring).
type recentClicks struct {
	at   [4]time.Time
	urls [4]string
	n    int
}

// maxTrackedMessages bounds the click memory; past it, everything older than
// the burst window is dropped at once.
const maxTrackedMessages = 200_000

func newBotFilter(minDelay, burst time.Duration) *botFilter {
	return &botFilter{minDelay: minDelay, burst: burst, clicks: map[string]*recentClicks{}}
}

func flagBot(e *event.Event, reason string) {
	if !e.Bot {
		e.Bot, e.BotReason = true, reason
	}
}

// userAgent flags e when its user agent is a bot's.
func (b *botFilter) userAgent(e *event.Event, emptyIsBot bool) {
	if r := uaBotReason(e.UserAgent, emptyIsBot); r != "" {
		flagBot(e, r)
	}
}

// email flags an open or click (e, from verified claims, received at now).
// Order of checks: user agent, delivery delay, then the burst rule — which
// also records the click, so a later link of the same burst is flagged even
// when this one was flagged for another reason.
func (b *botFilter) email(e *event.Event, c token.Claims, now time.Time) {
	b.userAgent(e, true)
	if !c.SentAt.IsZero() && now.Sub(c.SentAt) < b.minDelay {
		flagBot(e, reasonDeliveryDelay)
	}
	if c.Kind == token.Click && b.burst > 0 && b.recordClick(c.Lead+"\x00"+c.Message, c.URL, now) {
		flagBot(e, reasonLinkBurst)
	}
}

// recordClick remembers a click and reports whether a different link of the
// same message was clicked within the burst window before it. The first click
// of a burst is not flagged by this rule (it was answered before the others
// arrived); scanners usually also trip the delivery-delay rule with it.
func (b *botFilter) recordClick(key, url string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.clicks) >= maxTrackedMessages || now.Sub(b.lastSweep) > time.Minute {
		b.sweep(now)
	}
	r := b.clicks[key]
	if r == nil {
		r = &recentClicks{}
		b.clicks[key] = r
	}
	burst := false
	for i := range min(r.n, len(r.at)) {
		if r.urls[i] != url && now.Sub(r.at[i]) < b.burst && now.Sub(r.at[i]) > -b.burst {
			burst = true
		}
	}
	i := r.n % len(r.at)
	r.at[i], r.urls[i] = now, url
	r.n++
	return burst
}

func (b *botFilter) sweep(now time.Time) {
	b.lastSweep = now
	for k, r := range b.clicks {
		newest := r.at[(r.n-1)%len(r.at)]
		if now.Sub(newest) >= b.burst {
			delete(b.clicks, k)
		}
	}
	if len(b.clicks) >= maxTrackedMessages { // a flood inside one window: start over
		clear(b.clicks)
	}
}
