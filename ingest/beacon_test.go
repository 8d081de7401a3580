package ingest

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"

	"github.com/leadstream/leadstream/ingest/beacon"
	"github.com/leadstream/leadstream/stream"
)

func TestServeBeacon(t *testing.T) {
	s := startServer(t, nil)
	res, body := s.do(t, "GET", "/ls.js", "", "Accept-Encoding: identity")
	if res.StatusCode != 200 || body != string(beacon.Script) || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/javascript") ||
		res.Header.Get("ETag") != beacon.ETag || !strings.Contains(res.Header.Get("Cache-Control"), "max-age=") {
		t.Fatalf("GET /ls.js: %d %v", res.StatusCode, res.Header)
	}
	if res, _ := s.do(t, "GET", "/ls.js", "", "If-None-Match: "+beacon.ETag); res.StatusCode != 304 {
		t.Fatalf("revalidation with the ETag = %d, want 304", res.StatusCode)
	}
	// Go's client asks for gzip by itself and decodes it; ask explicitly to see the raw bytes.
	res, body = s.do(t, "GET", "/ls.js", "", "Accept-Encoding: gzip")
	if res.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("no gzip: %v", res.Header)
	}
	zr, err := gzip.NewReader(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if !bytes.Equal(plain, beacon.Script) {
		t.Fatal("gzipped beacon differs from the script")
	}
	// The size budget of the README: under 4 KB minified and gzipped.
	if n := len(beacon.Gzip); n >= 4096 {
		t.Fatalf("ls.js is %d bytes gzipped, over the 4 KB budget", n)
	}
	t.Logf("ls.js: %d bytes minified, %d bytes gzipped", len(beacon.Script), len(beacon.Gzip))
}

// The beacon posts text/plain JSON with the key in the body (no preflight);
// on the collector's own host the response sets the ls_anon cookie.
func TestBeaconBatch(t *testing.T) {
	s := startServer(t, nil)
	batch := func(anon, ua string) string {
		return `{"writeKey":"` + testKey + `","context":{"library":{"name":"leadstream.js","version":"1"}},"batch":[` +
			`{"type":"page","anonymousId":"` + anon + `","messageId":"ls-` + anon + `","properties":{"url":"http://x/p"},"context":{"userAgent":"` + ua + `"}}]}`
	}
	host := strings.TrimPrefix(s.base, "http://")
	res, body := s.do(t, "POST", "/v1/batch", batch("0123456789abcdef0123456789abcdef", browserUA), "Content-Type: text/plain;charset=UTF-8", "Origin: http://"+host)
	if res.StatusCode != 200 {
		t.Fatalf("beacon batch: %d %s", res.StatusCode, body)
	}
	ck := res.Header.Get("Set-Cookie")
	if !strings.Contains(ck, "ls_anon=0123456789abcdef0123456789abcdef") || !strings.Contains(ck, "SameSite=Lax") || strings.Contains(ck, "HttpOnly") ||
		res.Header.Get("Access-Control-Allow-Origin") != "http://"+host {
		t.Fatalf("Set-Cookie %q, ACAO %q", ck, res.Header.Get("Access-Control-Allow-Origin"))
	}
	// From a page on another site: no cookie (it would be a third-party one).
	res, _ = s.do(t, "POST", "/v1/batch", batch("fedcba9876543210", browserUA), "Content-Type: text/plain", "Origin: https://acme.example")
	if res.StatusCode != 200 || res.Header.Get("Set-Cookie") != "" {
		t.Fatalf("third-party beacon: %d Set-Cookie %q", res.StatusCode, res.Header.Get("Set-Cookie"))
	}
	// A headless browser is stored, flagged.
	headless := "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/150.0.0.0 Safari/537.36"
	if res, body := s.do(t, "POST", "/v1/batch", batch("headless-0001", headless), "Content-Type: text/plain", "Origin: https://acme.example"); res.StatusCode != 200 {
		t.Fatalf("headless beacon: %d %s", res.StatusCode, body)
	}
	// Server-side SDKs are not judged by their library's user agent.
	if res, body := s.do(t, "POST", "/v1/track", `{"userId":"u1","event":"Deal Won"}`, "Authorization: "+mustBasic(testServerKey), "User-Agent: python-requests/2.31"); res.StatusCode != 200 {
		t.Fatalf("server-side track: %d %s", res.StatusCode, body)
	}
	evs := s.events(t)
	if len(evs) != 4 {
		t.Fatalf("got %d events, want 4", len(evs))
	}
	for i, want := range []string{"", "", "user_agent:headlesschrome", ""} {
		if evs[i].BotReason != want || evs[i].Bot != (want != "") {
			t.Errorf("event %d (%s): bot=%v reason %q, want %q", i, evs[i].AnonymousID, evs[i].Bot, evs[i].BotReason, want)
		}
	}
}

func TestCORS(t *testing.T) {
	s := startServer(t, func(c *Config) { c.WriteKeys = []string{testOtherKey} })
	pre := func(origin string, want int) {
		t.Helper()
		res, _ := s.do(t, "OPTIONS", "/v1/batch", "", "Origin: "+origin, "Access-Control-Request-Method: POST", "Access-Control-Request-Headers: content-type")
		if res.StatusCode != want {
			t.Errorf("preflight from %s = %d, want %d", origin, res.StatusCode, want)
		}
		if want == 204 && (res.Header.Get("Access-Control-Allow-Origin") != origin || !strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Content-Type")) {
			t.Errorf("preflight from %s: headers %v", origin, res.Header)
		}
	}
	pre("https://www.acme.example", 204)
	pre("https://a.shop.example", 204)
	pre("https://shop.example", 403) // *.shop.example is subdomains only
	pre("https://evil.example", 403)
	post := func(origin string, want int) {
		t.Helper()
		body := `{"writeKey":"` + testOtherKey + `","batch":[{"type":"track","anonymousId":"a1234567","event":"x"}]}`
		res, got := s.do(t, "POST", "/v1/batch", body, "Content-Type: text/plain", "Origin: "+origin)
		if res.StatusCode != want {
			t.Errorf("POST from %s = %d %s, want %d", origin, res.StatusCode, got, want)
		}
	}
	post("https://www.acme.example", 200)
	post("https://evil.example", 403)
	// The refusal is readable by the page (so ls.js drops the batch), but nothing was accepted.
	res, body := s.do(t, "POST", "/v1/batch", `{"writeKey":"`+testOtherKey+`","batch":[]}`, "Content-Type: text/plain", "Origin: https://evil.example")
	if res.StatusCode != 403 || res.Header.Get("Access-Control-Allow-Origin") != "https://evil.example" || !strings.Contains(body, "origin not allowed") {
		t.Errorf("refused browser post: %d %v %s", res.StatusCode, res.Header, body)
	}
	if n := counter(s.c.m.rejected.WithLabelValues("origin")); n != 2 {
		t.Errorf("rejected{reason=origin} = %v, want 2", n)
	}
}

func TestParseCORSOrigins(t *testing.T) {
	m, err := parseCORSOrigins("k1=https://a.example|https://*.b.example/, k2=*")
	if err != nil || len(m["k1"]) != 2 || m["k1"][1] != "https://*.b.example" || m["k2"][0] != "*" {
		t.Fatalf("parse = %v, %v", m, err)
	}
	for _, bad := range []string{"k1", "k1=", "k1=ftp://a.example", "k1=https://a.example/path", "=https://a.example"} {
		if _, err := parseCORSOrigins(bad); err == nil {
			t.Errorf("parseCORSOrigins(%q) accepted", bad)
		}
	}
	cfg := Config{Kafka: stream.Config{Brokers: []string{"127.0.0.1:1"}, TopicPrefix: "leadstream.", Partitions: 1}, HTTPAddr: ":0", WriteKeys: []string{"k1"}, ProduceTimeout: 1, CORSOrigins: map[string][]string{"unknown": {"*"}}}
	if err := cfg.Validate(); err == nil || strings.Contains(err.Error(), "unknown") {
		t.Errorf("Validate with an unknown key in cors-origins = %v (must fail without echoing the key)", err)
	}
}
