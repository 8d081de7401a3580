package ingest

import (
	"bytes"
	"encoding/json"
	"image/gif"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/ingest/token"
)

func TestGIFDecodes(t *testing.T) {
	img, err := gif.Decode(bytes.NewReader(pixelGIF))
	if err != nil || img.Bounds().Dx() != 1 || img.Bounds().Dy() != 1 {
		t.Fatalf("pixel is not a 1x1 GIF: %v", err)
	}
}

func TestEmailOpenAndClick(t *testing.T) {
	s := startServer(t, nil)
	sent := time.Now().Add(-time.Hour)
	open, err := s.keys.OpenURL(s.base, token.Claims{Lead: "lead-1", Campaign: "spring", Message: "msg-1", SentAt: sent})
	if err != nil {
		t.Fatal(err)
	}
	path := strings.TrimPrefix(open, s.base)
	res, body := s.do(t, "GET", path, "")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "image/gif" || body != string(pixelGIF) || !strings.Contains(res.Header.Get("Cache-Control"), "no-store") {
		t.Fatalf("pixel: %d %q %q", res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Cache-Control"))
	}
	// Forged (other secret), altered (one byte), and not a token at all: still a GIF.
	forger, _ := token.NewKeyring(token.Key{ID: "k2", Secret: []byte("guessed-secret-0123456789")})
	forged, _ := forger.OpenURL("", token.Claims{Lead: "lead-1", Message: "msg-1"})
	altered := strings.Replace(path, "/o/k2.e", "/o/k2.f", 1)
	for _, p := range []string{forged, altered, "/o/nonsense.gif", "/o/.gif"} {
		if res, body := s.do(t, "GET", p, ""); res.StatusCode != 200 || body != string(pixelGIF) {
			t.Fatalf("pixel with a bad token %s: %d, body %q", p, res.StatusCode, body)
		}
	}
	if n := counter(s.c.m.email.WithLabelValues("open", "invalid_token")); n != 4 {
		t.Fatalf("invalid open tokens counted %v, want 4", n)
	}

	target := "https://acme.example/pricing?utm_source=email&utm_campaign=spring"
	click, _ := s.keys.ClickURL(s.base, token.Claims{Lead: "lead-1", Campaign: "spring", Message: "msg-1", URL: target, SentAt: sent})
	res, _ = s.do(t, "GET", strings.TrimPrefix(click, s.base), "", "Cookie: ls_anon=anon-12345678")
	if res.StatusCode != 302 || res.Header.Get("Location") != target {
		t.Fatalf("click: %d Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	// A click token whose URL was swapped for another one's is refused, never redirected.
	evil, _ := forger.ClickURL("", token.Claims{Lead: "lead-1", Message: "msg-1", URL: "https://evil.example/"})
	openAsClick := "/c/" + strings.TrimSuffix(strings.TrimPrefix(path, "/o/"), ".gif")
	for _, p := range []string{evil, openAsClick, "/c/", "/c/k2.e30.AAAA"} {
		res, body := s.do(t, "GET", p, "")
		if res.StatusCode != 404 || res.Header.Get("Location") != "" || !strings.Contains(body, "not valid") {
			t.Fatalf("click with a bad token %s: %d Location %q", p, res.StatusCode, res.Header.Get("Location"))
		}
	}

	evs := s.events(t)
	if len(evs) != 2 {
		t.Fatalf("got %d events, want the open and the click: %+v", len(evs), evs)
	}
	o, c := evs[0], evs[1]
	if o.Type != event.EmailOpen || o.LeadID != "lead-1" || o.Campaign != "spring" || o.Bot || !strings.HasPrefix(o.ID, "eo-") || string(o.Properties) != `{"message_id":"msg-1"}` {
		t.Fatalf("open event %+v", o)
	}
	var props map[string]string
	_ = json.Unmarshal(c.Properties, &props)
	if c.Type != event.EmailClick || c.LeadID != "lead-1" || c.AnonymousID != "anon-12345678" || c.URL != target || c.Path != "/pricing" ||
		c.UTMSource != "email" || c.Bot || props["message_id"] != "msg-1" || c.ID == o.ID {
		t.Fatalf("click event %+v", c)
	}
}

// Scanners: clicks right after sending, bursts over several links of one
// message, and scanner user agents are stored flagged.
func TestEmailScannersAreFlagged(t *testing.T) {
	s := startServer(t, nil)
	old := time.Now().Add(-time.Hour)
	exp := time.Now().Add(time.Hour) // fixed, so the same link is the same token
	click := func(msg, url string, sent time.Time, ua string) {
		t.Helper()
		u, err := s.keys.ClickURL("", token.Claims{Lead: "lead-2", Message: msg, URL: url, SentAt: sent, Expires: exp})
		if err != nil {
			t.Fatal(err)
		}
		if res, _ := s.do(t, "GET", u, "", "User-Agent: "+ua); res.StatusCode != 302 {
			t.Fatalf("click %s: %d", url, res.StatusCode)
		}
	}
	click("m-fresh", "https://acme.example/a", time.Now(), browserUA)       // 0 s after sending
	click("m-burst", "https://acme.example/a", old, browserUA)              // first of a burst
	click("m-burst", "https://acme.example/b", old, browserUA)              // second link within 1 s
	click("m-burst", "https://acme.example/b", old, browserUA)              // same link again within the hour: the same event, not written again
	click("m-ua", "https://acme.example/a", old, "Mimecast Link Scanner/1") // scanner agent
	click("m-ua2", "https://acme.example/a", old, "")                       // no agent at all
	evs := s.events(t)
	want := []string{reasonDeliveryDelay, "", reasonLinkBurst, "user_agent:mimecast", "user_agent:empty"}
	if len(evs) != len(want) {
		t.Fatalf("got %d events, want %d", len(evs), len(want))
	}
	for i, e := range evs {
		if e.BotReason != want[i] || e.Bot != (want[i] != "") {
			t.Errorf("click %d: bot=%v reason %q, want %q", i, e.Bot, e.BotReason, want[i])
		}
	}
	if n := counter(s.c.m.bots.WithLabelValues(reasonLinkBurst)); n != 1 {
		t.Errorf("link_burst metric = %v, want 1", n)
	}
	if n := counter(s.c.m.email.WithLabelValues("click", "repeat")); n != 1 {
		t.Errorf("repeat metric = %v, want 1", n)
	}
}

func TestBotUserAgents(t *testing.T) {
	f := func(ua string, emptyIsBot bool, want string) {
		t.Helper()
		if got := uaBotReason(ua, emptyIsBot); got != want {
			t.Errorf("uaBotReason(%q) = %q, want %q", ua, got, want)
		}
	}
	f(browserUA, true, "")
	f("Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1", true, "")
	f("Mozilla/5.0 (Linux; Android 12; CUBOT X50) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36", true, "")
	f("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", true, "") // Gmail's image proxy: a real open
	f("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/150.0.0.0 Safari/537.36", true, "user_agent:headlesschrome")
	f("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", true, "user_agent:bot")
	f("Mozilla/5.0 (compatible; bingbot/2.0)", true, "user_agent:bot")
	f("curl/8.5.0", true, "user_agent:curl")
	f("python-requests/2.31", true, "user_agent:python-requests")
	f("facebookexternalhit/1.1", true, "user_agent:facebookexternalhit")
	f("", true, "user_agent:empty")
	f("", false, "")
}

func TestLinkBurstMemoryIsBounded(t *testing.T) {
	b := newBotFilter(time.Second, time.Second)
	now := time.Now()
	for i := range 3 * maxTrackedMessages / 2 {
		b.recordClick(strconv.Itoa(i), "u", now)
	}
	if len(b.clicks) > maxTrackedMessages {
		t.Fatalf("tracking %d messages, bound is %d", len(b.clicks), maxTrackedMessages)
	}
	later := now.Add(2 * time.Minute)
	b.recordClick("x", "u", later)
	if len(b.clicks) != 1 {
		t.Fatalf("stale messages kept after a sweep: %d", len(b.clicks))
	}
}

// A token's lead id is trimmed like the ids of Segment calls, so a sending
// system that signed it with surrounding spaces does not make a second lead.
func TestEmailLeadIDTrimmed(t *testing.T) {
	s := startServer(t, nil)
	open, err := s.keys.OpenURL(s.base, token.Claims{Lead: " ann@acme.example\t", Campaign: "spring", Message: "msg-trim", SentAt: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := s.do(t, "GET", strings.TrimPrefix(open, s.base), ""); res.StatusCode != 200 {
		t.Fatalf("pixel: %d", res.StatusCode)
	}
	evs := s.events(t)
	if len(evs) != 1 || evs[0].LeadID != "ann@acme.example" {
		t.Fatalf("events %+v, want one open of lead %q", evs, "ann@acme.example")
	}
}
