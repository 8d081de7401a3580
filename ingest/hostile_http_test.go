package ingest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/ingest/token"
	"github.com/leadstream/leadstream/internal/testsvc"
)

// A number no float64 holds is refused with a 400 naming the field; the
// next event goes through.
func TestNonFiniteNumberRefused(t *testing.T) {
	s := startServer(t, nil)
	auth := "Authorization: " + mustBasic(testKey)
	res, body := s.do(t, "POST", "/v1/identify", `{"userId":"x","traits":{"n":1e400}}`, auth)
	if res.StatusCode != 400 || !strings.Contains(body, `"error":"identify.traits.n: the number 1e400 is not finite as a 64-bit float`) {
		t.Fatalf("1e400: %d %s", res.StatusCode, body)
	}
	res, body = s.do(t, "POST", "/v1/batch", `{"batch":[{"type":"track","userId":"x","event":"e","messageId":"bad","properties":{"a":[-1e999]}},
		{"type":"identify","userId":"x","messageId":"good","traits":{"n":1e308}}]}`, auth)
	if res.StatusCode != 200 || !strings.Contains(body, `"rejected":[{"index":0,"messageId":"bad","error":"batch[0].properties.a[0]: the number -1e999 is not finite`) {
		t.Fatalf("batch: %d %s", res.StatusCode, body)
	}
	evs := s.events(t)
	if len(evs) != 1 || evs[0].ID != "good" || string(evs[0].Traits) != `{"n":1e308}` {
		t.Fatalf("stored %+v", evs)
	}
}

// A browser key may not send revenue, email engagement, alias, imports or
// old events: each refused alone with its reason; a server key may.
func TestBrowserKeyScope(t *testing.T) {
	s := startServer(t, func(c *Config) { c.MaxEventAge = 24 * time.Hour })
	browser, server := "Authorization: "+mustBasic(testKey), "Authorization: "+mustBasic(testServerKey)
	old := time.Now().Add(-48 * time.Hour).UTC().Format(time.RFC3339)
	batch := `{"batch":[
		{"type":"track","userId":"u","event":"Deal Won","messageId":"b0","properties":{"revenue":10}},
		{"type":"track","userId":"u","event":"Email Opened","messageId":"b1"},
		{"type":"alias","userId":"u","previousId":"a","messageId":"b2"},
		{"type":"track","userId":"u","event":"e","messageId":"b3","timestamp":"` + old + `"},
		{"type":"identify","userId":"u","anonymousId":"a","messageId":"b4"}]}`
	res, body := s.do(t, "POST", "/v1/batch", batch, browser)
	var got batchAnswer
	if err := json.Unmarshal([]byte(body), &got); err != nil || res.StatusCode != 200 || got.Accepted != 1 || len(got.Rejected) != 4 {
		t.Fatalf("browser batch: %d %s", res.StatusCode, body)
	}
	for i, want := range []string{`"Deal Won" needs a server write key`, `"Email Opened" needs a server write key`, "alias needs a server write key", "over collector.max-event-age (24h0m0s) for a browser write key"} {
		if !strings.Contains(got.Rejected[i].Error, want) {
			t.Errorf("rejected[%d] = %+v, want %q", i, got.Rejected[i], want)
		}
	}
	if res, body := s.do(t, "POST", "/v1/track", `{"userId":"u","event":"Email Link Clicked"}`, browser); res.StatusCode != 403 || !strings.Contains(body, `"code":"forbidden"`) {
		t.Errorf("single call: %d %s", res.StatusCode, body)
	}
	// /v1/import (analytics-android posts every batch there, with the app's
	// browser key) is /v1/batch: each message judged alone, by the key's scope.
	imp := `{"batch":[{"type":"screen","anonymousId":"a","name":"Pricing","messageId":"i1"},{"type":"track","userId":"u","event":"Deal Won","messageId":"i2","properties":{"revenue":5}}]}`
	if res, body := s.do(t, "POST", "/v1/import", imp, browser); res.StatusCode != 200 || !strings.Contains(body, `"accepted":1`) || !strings.Contains(body, `"Deal Won\" needs a server write key`) {
		t.Errorf("import with a browser key: %d %s", res.StatusCode, body)
	}
	if n := counter(s.c.m.rejectedEvents.WithLabelValues("scope")); n != 6 {
		t.Errorf("rejected_events{scope} = %v, want 6", n)
	}
	if evs := s.events(t); len(evs) != 2 || evs[0].ID != "b4" || evs[1].ID != "i1" {
		t.Fatalf("browser key stored %+v", evs)
	}
	// The server key sends it all, through /v1/import too.
	if res, body := s.do(t, "POST", "/v1/import", batch, server); res.StatusCode != 200 || body != `{"success":true,"accepted":5}` {
		t.Fatalf("server key: %d %s", res.StatusCode, body)
	}
	if evs := s.events(t); len(evs) != 7 || evs[2].Type != event.DealWon || evs[4].Type != event.Alias {
		t.Fatalf("server key stored %+v", evs) // b4 and i1 of the browser key, then the five
	}
}

// retryAfterIn reports whether the Retry-After value h is whole seconds
// within [lo, hi].
func retryAfterIn(h string, lo, hi int) bool {
	n, err := strconv.Atoi(h)
	return err == nil && n >= lo && n <= hi
}

// Over a rate limit the answer is 429 with Retry-After; limits are per
// client address and per browser key, never for server keys; the email
// pixel still answers its GIF.
func TestRateLimits(t *testing.T) {
	// One event per 100 s: no event comes back while the test runs, however
	// slow the machine.
	s := startServer(t, func(c *Config) { c.RateLimitIP = Rate{PerSecond: 0.01, Burst: 5} })
	browser := "Authorization: " + mustBasic(testKey)
	four := `{"batch":[` + strings.Repeat(`{"type":"track","userId":"u","event":"e"},`, 3) + `{"type":"track","userId":"u","event":"e"}]}`
	if res, body := s.do(t, "POST", "/v1/batch", four, browser); res.StatusCode != 200 {
		t.Fatalf("first batch: %d %s", res.StatusCode, body)
	}
	res, body := s.do(t, "POST", "/v1/batch", four, browser)
	if res.StatusCode != 429 || !retryAfterIn(res.Header.Get("Retry-After"), 290, 300) || !strings.Contains(body, `"limit":"rate_limit_ip"`) || !strings.Contains(body, `"code":"too_many_requests"`) {
		t.Fatalf("second batch: %d Retry-After %q %s", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
	// One event is left: a single call passes, the next is refused before
	// its body is read.
	if res, _ := s.do(t, "POST", "/v1/track", `{"userId":"u","event":"e"}`, browser); res.StatusCode != 200 {
		t.Fatalf("last event: %d", res.StatusCode)
	}
	if res, _ := s.do(t, "POST", "/v1/track", `{"writeKey":"`+testKey+`","userId":"u","event":"e"}`); res.StatusCode != 429 {
		t.Fatalf("over: %d", res.StatusCode)
	}
	// Server keys are not limited.
	for range 3 {
		if res, body := s.do(t, "POST", "/v1/batch", four, "Authorization: "+mustBasic(testServerKey)); res.StatusCode != 200 {
			t.Fatalf("server key: %d %s", res.StatusCode, body)
		}
	}
	// The pixel answers its GIF, records nothing.
	u, _ := s.keys.OpenURL("", token.Claims{Lead: "l", Message: "m", SentAt: time.Now().Add(-time.Hour)})
	if res, body := s.do(t, "GET", u, ""); res.StatusCode != 200 || body != string(pixelGIF) {
		t.Fatalf("pixel over the limit: %d", res.StatusCode)
	}
	if n := counter(s.c.m.email.WithLabelValues("open", "rate_limited")); n != 1 {
		t.Errorf("email rate_limited = %v", n)
	}
	if evs := s.events(t); len(evs) != 5+12 {
		t.Errorf("stored %d events, want 5 from the browser key and 12 from the server key", len(evs))
	}

	// Per key: the key's bucket, whatever the address.
	s = startServer(t, func(c *Config) { c.RateLimitKey = Rate{PerSecond: 0.01, Burst: 2} })
	for i, want := range []int{200, 200, 429} {
		res, body := s.do(t, "POST", "/v1/track", `{"userId":"u","event":"e"}`, browser)
		if res.StatusCode != want || want == 429 && (!strings.Contains(body, `"limit":"rate_limit_key"`) || !retryAfterIn(res.Header.Get("Retry-After"), 90, 100)) {
			t.Fatalf("request %d: %d %s %v", i, res.StatusCode, body, res.Header)
		}
	}
	if res, _ := s.do(t, "POST", "/v1/track", `{"userId":"u","event":"e"}`, "Authorization: "+mustBasic(testOtherKey)); res.StatusCode != 200 {
		t.Fatalf("another key: %d", res.StatusCode)
	}
}

func TestRateFlag(t *testing.T) {
	f := func(in string, want Rate, ok bool) {
		t.Helper()
		var r Rate
		err := r.Set(in)
		if (err == nil) != ok || ok && r != want {
			t.Errorf("Set(%q) = %+v, %v", in, r, err)
		}
		if ok {
			var back Rate
			if err := back.Set(r.String()); err != nil || back != r {
				t.Errorf("%q: String %q does not read back (%+v, %v)", in, r.String(), back, err)
			}
		}
	}
	f("100:1000", Rate{100, 1000}, true)
	f("100", Rate{100, 1000}, true)
	f("0.5", Rate{0.5, 5}, true)
	f("0", Rate{}, true)
	f("0:5", Rate{}, true)
	f("-1", Rate{}, false)
	f("x", Rate{}, false)
	f("10:0", Rate{}, false)
	f("NaN", Rate{}, false)
}

// The address table of the per-address limit stays bounded under a flood
// of distinct addresses, and a full bucket is what it forgets.
func TestIPBucketsBounded(t *testing.T) {
	b := newIPBuckets(Rate{PerSecond: 1, Burst: 1})
	now := time.Now().UnixNano()
	for i := range 10 * ipShards * ipShardSize {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		b.take(a, 1, now)
	}
	n := 0
	for i := range b.shards {
		n += len(b.shards[i].cur) + len(b.shards[i].old)
	}
	if n > 2*ipShards*ipShardSize {
		t.Fatalf("%d addresses kept, bound %d", n, 2*ipShards*ipShardSize)
	}
	// IPv6: one bucket per /64.
	x, y := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	if _, ok := b.take(x, 1, now); !ok {
		t.Fatal("first event refused")
	}
	if _, ok := b.take(y, 1, now); ok {
		t.Fatal("another address of the same /64 has its own bucket")
	}
}

// The client address: the connection's, or from trusted proxies the
// rightmost X-Forwarded-For hop that is not one of them; rate limits go by
// it too. The deprecated trust-forwarded still takes the first hop.
func TestTrustedProxies(t *testing.T) {
	proxies, err := parseTrustedProxies("127.0.0.0/8, 10.0.0.0/8,192.0.2.1")
	if err != nil || len(proxies) != 3 {
		t.Fatal(proxies, err)
	}
	if _, err := parseTrustedProxies("10.0.0.0/8,nope"); err == nil {
		t.Fatal("a bad entry was accepted")
	}
	ipOf := func(s *server, headers ...string) string {
		t.Helper()
		res, body := s.do(t, "POST", "/v1/track", `{"userId":"u","event":"e"}`, append(headers, "Authorization: "+mustBasic(testKey), "Origin: https://www.acme.example")...)
		if res.StatusCode != 200 {
			t.Fatalf("%d %s", res.StatusCode, body)
		}
		evs := s.events(t)
		return evs[len(evs)-1].IP
	}
	s := startServer(t, func(c *Config) { c.TrustedProxies = proxies })
	for _, c := range []struct {
		xff  []string
		want string
	}{
		{nil, "127.0.0.1"},
		{[]string{"198.51.100.7"}, "198.51.100.7"},
		{[]string{"9.9.9.9, 198.51.100.7, 10.1.2.3"}, "198.51.100.7"}, // 9.9.9.9 is made up by the client
		{[]string{"9.9.9.9", "198.51.100.7:4431, 192.0.2.1"}, "198.51.100.7"},
		{[]string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"},
		{[]string{"[2001:db8::7]:443"}, "2001:db8::7"},
		{[]string{"garbage, 198.51.100.7"}, "198.51.100.7"},
		{[]string{"198.51.100.7, garbage"}, "127.0.0.1"},
	} {
		var h []string
		for _, x := range c.xff {
			h = append(h, "X-Forwarded-For: "+x)
		}
		if got := ipOf(s, h...); got != c.want {
			t.Errorf("X-Forwarded-For %q: client %q, want %q", c.xff, got, c.want)
		}
	}
	// Not from a trusted proxy: the header is the client's word, ignored.
	if got := ipOf(startServer(t, nil), "X-Forwarded-For: 198.51.100.7"); got != "127.0.0.1" {
		t.Errorf("untrusted: %q", got)
	}
	if got := ipOf(startServer(t, func(c *Config) { c.TrustForwarded = true }), "X-Forwarded-For: 9.9.9.9, 198.51.100.7"); got != "9.9.9.9" {
		t.Errorf("trust-forwarded: %q", got)
	}
	// Each forwarded client has its own bucket.
	s = startServer(t, func(c *Config) { c.TrustedProxies = proxies; c.RateLimitIP = Rate{PerSecond: 0.01, Burst: 1} })
	for i, c := range []struct {
		client string
		want   int
	}{{"198.51.100.7", 200}, {"198.51.100.7", 429}, {"198.51.100.8", 200}} {
		if res, _ := s.do(t, "POST", "/v1/track", `{"userId":"u","event":"e"}`, "Authorization: "+mustBasic(testKey), "X-Forwarded-For: "+c.client); res.StatusCode != c.want {
			t.Errorf("request %d from %s: %d, want %d", i, c.client, res.StatusCode, c.want)
		}
	}
}

// Addresses are cut to their network before Kafka: the request's, a server
// SDK's context.ip (in the event and in the kept context), the pixel's and
// the form's.
func TestIPAnonymization(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.AnonymizeIP, c.TrustedProxies = true, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	xff := "X-Forwarded-For: 198.51.100.7"
	s.do(t, "POST", "/v1/track", `{"userId":"u","event":"browser","context":{"ip":"203.0.113.9"}}`, "Authorization: "+mustBasic(testKey), "Origin: https://www.acme.example", xff)
	s.do(t, "POST", "/v1/track", `{"userId":"u","event":"server","context":{"ip":"2001:db8:1:2::7","library":{"name":"x"}}}`, "Authorization: "+mustBasic(testServerKey), xff)
	u, _ := s.keys.OpenURL("", token.Claims{Lead: "l", Message: "m", SentAt: time.Now().Add(-time.Hour)})
	s.do(t, "GET", u, "", xff)
	s.do(t, "POST", "/f/webinar", "writeKey="+testKey+"&email=a%40acme.example", "Content-Type: application/x-www-form-urlencoded", xff)
	evs := s.events(t)
	if len(evs) != 5 {
		t.Fatalf("%d events", len(evs))
	}
	for i, want := range []struct{ ip, ctx string }{
		{"198.51.100.0", `{"ip":"203.0.113.0"}`},
		{"2001:db8:1::", `{"library":{"name":"x"},"ip":"2001:db8:1::"}`},
		{"198.51.100.0", ""}, {"198.51.100.0", ""}, {"198.51.100.0", ""},
	} {
		if evs[i].IP != want.ip || string(evs[i].Context) != want.ctx {
			t.Errorf("event %d (%s): ip %q context %s, want %q %s", i, evs[i].Type, evs[i].IP, evs[i].Context, want.ip, want.ctx)
		}
	}
}

// Sec-GPC: 1 — the person asked not to be tracked: each endpoint answers as
// usual, nothing is stored.
func TestGlobalPrivacyControl(t *testing.T) {
	s := startServer(t, nil)
	g := "Sec-GPC: 1"
	res, body := s.do(t, "POST", "/v1/batch", `{"writeKey":"`+testKey+`","batch":[{"type":"page","anonymousId":"a1234567"}]}`, "Content-Type: text/plain", "Origin: https://www.acme.example", g)
	if res.StatusCode != 200 || body != `{"success":true,"accepted":0,"gpc":true}` || res.Header.Get("Set-Cookie") != "" {
		t.Fatalf("beacon: %d %s %v", res.StatusCode, body, res.Header)
	}
	// Still authenticated first.
	if res, _ := s.do(t, "POST", "/v1/track", `{"userId":"u","event":"e"}`, g); res.StatusCode != 401 {
		t.Fatalf("no key: %d", res.StatusCode)
	}
	open, _ := s.keys.OpenURL("", token.Claims{Lead: "l", Message: "m", SentAt: time.Now().Add(-time.Hour)})
	if res, body := s.do(t, "GET", open, "", g); res.StatusCode != 200 || body != string(pixelGIF) {
		t.Fatalf("pixel: %d", res.StatusCode)
	}
	click, _ := s.keys.ClickURL("", token.Claims{Lead: "l", Message: "m", URL: "https://acme.example/x", SentAt: time.Now().Add(-time.Hour)})
	if res, _ := s.do(t, "GET", click, "", g); res.StatusCode != 302 || res.Header.Get("Location") != "https://acme.example/x" {
		t.Fatalf("click: %d %v", res.StatusCode, res.Header)
	}
	res, _ = s.do(t, "POST", "/f/webinar", "writeKey="+testKey+"&email=a%40acme.example&redirect=https://www.acme.example/thanks",
		"Content-Type: application/x-www-form-urlencoded", "Origin: https://www.acme.example", "Referer: https://www.acme.example/webinar", g)
	if res.StatusCode != 303 || res.Header.Get("Location") != "https://www.acme.example/thanks" {
		t.Fatalf("form: %d %v", res.StatusCode, res.Header)
	}
	if evs := s.events(t); len(evs) != 0 {
		t.Fatalf("stored %+v", evs)
	}
	for _, ep := range []string{"/v1", "/o", "/c", "/f"} {
		if n := counter(s.c.m.gpc.WithLabelValues(ep)); n != 1 {
			t.Errorf("gpc{%s} = %v", ep, n)
		}
	}
}

// Email tokens expire, and one link opened again and again within an hour
// is one event.
func TestEmailTokenExpiryAndRepeats(t *testing.T) {
	s := startServer(t, nil)
	sent := time.Now().Add(-time.Hour)
	expired := token.Claims{Lead: "l", Message: "m", SentAt: sent, Expires: time.Now().Add(-time.Minute)}
	open, _ := s.keys.OpenURL("", expired)
	if res, body := s.do(t, "GET", open, ""); res.StatusCode != 200 || body != string(pixelGIF) {
		t.Fatalf("expired pixel: %d", res.StatusCode)
	}
	expired.URL = "https://acme.example/x"
	click, _ := s.keys.ClickURL("", expired)
	if res, _ := s.do(t, "GET", click, ""); res.StatusCode != 302 || res.Header.Get("Location") != "https://acme.example/x" {
		t.Fatalf("expired click: %d %v", res.StatusCode, res.Header)
	}
	for _, k := range []string{"open", "click"} {
		if n := counter(s.c.m.email.WithLabelValues(k, "expired")); n != 1 {
			t.Errorf("%s expired = %v", k, n)
		}
	}
	// A forwarded link opened 7 times: one event.
	c := token.Claims{Lead: "l", Message: "m2", SentAt: sent}
	open, _ = s.keys.OpenURL("", c)
	c.URL = "https://acme.example/y"
	click, _ = s.keys.ClickURL("", c)
	for range 7 {
		s.do(t, "GET", open, "")
		s.do(t, "GET", click, "")
	}
	evs := s.events(t)
	tok := strings.TrimSuffix(strings.TrimPrefix(open, "/o/"), ".gif")
	if len(evs) != 2 || evs[0].ID != emailEventID("eo-", tok, time.Now()) || evs[1].Type != event.EmailClick {
		t.Fatalf("stored %+v", evs)
	}
	if n := counter(s.c.m.email.WithLabelValues("open", "repeat")); n != 6 {
		t.Errorf("open repeats = %v", n)
	}
	// The id is the token's and the hour's.
	at := time.Date(2026, 11, 22, 16, 0, 0, 0, time.UTC)
	if emailEventID("eo-", tok, at) != emailEventID("eo-", tok, at.Add(59*time.Minute)) || emailEventID("eo-", tok, at) == emailEventID("eo-", tok, at.Add(time.Hour)) ||
		emailEventID("eo-", tok, at) == emailEventID("eo-", tok+"x", at) {
		t.Error("email event ids are not one per token and hour")
	}
}

// The hour memory forgets the last hour and stays bounded.
func TestHourSet(t *testing.T) {
	s := newHourSet(32)
	s.add("a1", 10)
	if !s.has("a1", 10) || s.has("a1", 11) || s.has("b2", 10) {
		t.Fatal("membership")
	}
	s.add("a1", 11)
	s.add("a1", 10) // late: not kept
	if !s.has("a1", 11) || s.has("a1", 10) {
		t.Fatal("a new hour")
	}
	for i := range 1000 {
		s.add(emailEventID("eo-", string(rune(i)), time.Unix(11*3600, 0)), 11)
	}
	n := 0
	for i := range s.shards {
		n += len(s.shards[i].ids)
	}
	if n > 32 {
		t.Fatalf("%d ids kept, bound 32", n)
	}
}

// The body limit (413 before reading, as JSON), the idle timeout and the
// per-address connection limit.
func TestConnectionLimits(t *testing.T) {
	s := startServer(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond; c.MaxConnsPerIP = 2 })
	host := strings.TrimPrefix(s.base, "http://")
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", host, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// Over 1 MB: refused from its headers, the body never read.
	c := dial()
	io.WriteString(c, "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048577\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 413 || !strings.Contains(string(b), `"limit":"body_size_1MB"`) || !strings.Contains(string(b), `"code":"payload_too_large"`) {
		t.Fatalf("1 MB + 1: %d %s", res.StatusCode, b)
	}
	c.Close()
	// Between 500 KB and 1 MB: read, and refused by the batch limit.
	if res, body := s.do(t, "POST", "/v1/batch", `{"batch":[],"pad":"`+strings.Repeat("x", 600<<10)+`"}`, "Authorization: "+mustBasic(testKey)); res.StatusCode != 400 || !strings.Contains(body, `"limit":"batch_size_500KB"`) {
		t.Fatalf("600 KB: %d %s", res.StatusCode, body)
	}
	time.Sleep(400 * time.Millisecond) // the client's keep-alive connection is closed by now

	// Idle keep-alive connections are closed.
	c = dial()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	res, err = http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", res, err)
	}
	io.ReadAll(res.Body)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Fatalf("closed after %v, want the idle timeout of 300 ms", d)
	}
	c.Close()

	// Two connections per address: the third is answered 429 and closed.
	// (First the ones above are let go: closing is asynchronous.)
	s.client.CloseIdleConnections()
	cl := s.c.ln.(*connLimitListener)
	for deadline := time.Now().Add(3 * time.Second); cl.openFrom(netip.MustParseAddr("127.0.0.1")) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open", cl.openFrom(netip.MustParseAddr("127.0.0.1")))
		}
	}
	c1, c2 := dial(), dial()
	for _, c := range []net.Conn{c1, c2} {
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		if res, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || res.StatusCode != 200 {
			t.Fatalf("open connection: %v %v", res, err)
		}
	}
	c3 := dial()
	_ = c3.SetReadDeadline(time.Now().Add(3 * time.Second))
	third, _ := io.ReadAll(c3)
	if !bytes.HasPrefix(third, []byte("HTTP/1.1 429 Too Many Requests\r\n")) || !bytes.Contains(third, []byte("Retry-After: 1")) || !bytes.Contains(third, []byte(`"code":"too_many_requests"`)) {
		t.Fatalf("third connection: %q", third)
	}
	if n := counter(s.c.m.rejected.WithLabelValues("connections")); n != 1 {
		t.Errorf("rejected{connections} = %v", n)
	}
	c1.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		c4 := dial()
		io.WriteString(c4, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(c4), nil)
		if err == nil && res.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a connection after one closed: %v %v", res, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Trusted proxies are not limited.
	s = startServer(t, func(c *Config) {
		c.MaxConnsPerIP, c.TrustedProxies = 1, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	host = strings.TrimPrefix(s.base, "http://")
	for range 3 {
		c := dial()
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		if res, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || res.StatusCode != 200 {
			t.Fatalf("from a trusted proxy: %v %v", res, err)
		}
	}
}

// fasthttp's own messages go through slog, without the client's address,
// at debug level for what a client did wrong.
func TestHTTPServerLog(t *testing.T) {
	var buf testsvc.SyncBuffer
	s := startServerLog(t, nil, slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	c, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "NOT HTTP AT ALL\r\n\x00\x01\r\n\r\n")
	io.ReadAll(c)
	c.Close()
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(buf.String(), "http server:") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var lines []string
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, "http server:") {
			lines = append(lines, l)
		}
	}
	if out := strings.Join(lines, "\n"); len(lines) != 1 || !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "http server: error when serving connection") || strings.Contains(out, "127.0.0.1") {
		t.Fatalf("log: %s", out)
	}
	l := httpLogger{slog.New(slog.NewTextHandler(&buf, nil))}
	l.Printf("error when serving connection %q<->%q: %v", &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 80}, &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 5},
		"read tcp 10.0.0.1:80->[2001:db8::1]:5 and 203.0.113.5:99 and ::ffff:1.2.3.4: i/o timeout")
	l.Printf("Permanent error when accepting new connections: %v", "boom")
	out := buf.String()
	for _, leak := range []string{"10.0.0.1", "2001:db8", "203.0.113", "1.2.3.4"} {
		if strings.Contains(out, leak) {
			t.Errorf("%s in the log: %s", leak, out)
		}
	}
	if !strings.Contains(out, `level=WARN msg="http server: Permanent error when accepting new connections: boom"`) {
		t.Errorf("warn: %s", out)
	}
}

// openFrom is the number of open connections from a.
func (l *connLimitListener) openFrom(a netip.Addr) int {
	k := ipBucketKey(a)
	s := l.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open[k]
}

// Every message of a batch costs an event of the rate limits, refused ones
// too, and it is charged before any is decoded; a batch of more messages
// than a burst, which no wait would let in, is a 413 that also empties the
// address's bucket. An answer lists at most 100 refused messages, and
// counts them all.
func TestBatchRateAndRefusals(t *testing.T) {
	s := startServer(t, func(c *Config) { c.RateLimitIP = Rate{PerSecond: 0.01, Burst: 5} })
	browser := "Authorization: " + mustBasic(testKey)
	invalid := func(n int) string { return `{"batch":[` + strings.TrimSuffix(strings.Repeat(`{},`, n), ",") + `]}` }
	if res, body := s.do(t, "POST", "/v1/batch", invalid(4), browser); res.StatusCode != 400 || !strings.Contains(body, `"rejected_count":4`) {
		t.Fatalf("4 invalid messages: %d %s", res.StatusCode, body)
	}
	// They took 4 of the 5 events: 2 more are over.
	res, body := s.do(t, "POST", "/v1/batch", invalid(2), browser)
	if res.StatusCode != 429 || !strings.Contains(body, `"limit":"rate_limit_ip"`) {
		t.Fatalf("after 4 refused messages: %d %s", res.StatusCode, body)
	}

	s = startServer(t, func(c *Config) { c.RateLimitIP = Rate{PerSecond: 0.01, Burst: 5} })
	six := `{"batch":[` + strings.Repeat(`{"type":"track","userId":"u","event":"e"},`, 5) + `{"type":"track","userId":"u","event":"e"}]}`
	res, body = s.do(t, "POST", "/v1/batch", six, browser)
	if res.StatusCode != 413 || !strings.Contains(body, `"limit":"batch_over_burst_ip"`) ||
		!strings.Contains(body, "a batch of 6 messages is more than the 5 events a client may send at once (the burst of collector.rate-limit-ip)") {
		t.Fatalf("batch over the burst: %d %s", res.StatusCode, body)
	}
	if res, body := s.do(t, "POST", "/v1/track", `{"userId":"u","event":"e"}`, browser); res.StatusCode != 429 {
		t.Fatalf("after a batch over the burst, the address's bucket is empty: %d %s", res.StatusCode, body)
	}
	if evs := s.events(t); len(evs) != 0 {
		t.Fatalf("stored %d events", len(evs))
	}

	// The key's burst the same way.
	s = startServer(t, func(c *Config) { c.RateLimitKey = Rate{PerSecond: 0.01, Burst: 5} })
	if res, body := s.do(t, "POST", "/v1/batch", six, browser); res.StatusCode != 413 || !strings.Contains(body, `"limit":"batch_over_burst_key"`) {
		t.Fatalf("batch over the key's burst: %d %s", res.StatusCode, body)
	}

	// A server key is not limited; its answer lists 100 of 3,000 refused
	// messages and counts them all.
	res, body = s.do(t, "POST", "/v1/batch", invalid(3000), "Authorization: "+mustBasic(testServerKey))
	var got struct {
		Accepted      int               `json:"accepted"`
		Rejected      []json.RawMessage `json:"rejected"`
		RejectedCount int               `json:"rejected_count"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || res.StatusCode != 400 || len(got.Rejected) != 100 || got.RejectedCount != 3000 || len(body) > 20000 {
		t.Fatalf("3,000 invalid messages: %d, %d bytes, %d listed, count %d: %v", res.StatusCode, len(body), len(got.Rejected), got.RejectedCount, err)
	}
}

// A refused message without a string messageId is listed without one, as
// README says ("messageId when the message has a string one").
func TestRejectedWithoutMessageID(t *testing.T) {
	s := startServer(t, nil)
	res, body := s.do(t, "POST", "/v1/batch", `{"batch":[{},{"type":"track","userId":"u","messageId":"m-2"}]}`, "Authorization: "+mustBasic(testKey))
	if res.StatusCode != 400 || !strings.Contains(body, `"rejected":[{"index":0,"error":"batch[0].type: is required`) ||
		!strings.Contains(body, `{"index":1,"messageId":"m-2","error":"batch[1].event: is required for track"}`) {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
}
