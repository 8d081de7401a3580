package ingest

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/stream"
	"github.com/prometheus/client_golang/prometheus"
)

const crossOrigin = "https://www.acme.example"

// exposesRetryAfter reports whether a browser lets a page's script read the
// answer's Retry-After: it is not a CORS-safelisted response header.
func exposesRetryAfter(res *http.Response) bool {
	for _, h := range strings.Split(res.Header.Get("Access-Control-Expose-Headers"), ",") {
		if strings.EqualFold(strings.TrimSpace(h), "Retry-After") {
			return true
		}
	}
	return false
}

// analytics-next (packages/browser/src/plugins/segmentio/shared-dispatcher.ts
// parseRetryAfter: res.headers.get('Retry-After')) and ls.js read the
// Retry-After of a 429 posted cross-origin: the answer must expose it, or
// the browser hides it and the SDK falls back to its own backoff.
func TestRetryAfterExposedOn429CrossOrigin(t *testing.T) {
	s := startServer(t, func(c *Config) { c.RateLimitIP = Rate{PerSecond: 0.01, Burst: 1} })
	body := `{"type":"track","event":"Signed Up","anonymousId":"a1","messageId":"m-%d","writeKey":"` + testKey + `"}`
	hdr := []string{"Content-Type: text/plain", "Origin: " + crossOrigin, "Authorization: " + mustBasic(testKey)}
	if res, got := s.do(t, "POST", "/v1/t", strings.Replace(body, "%d", "1", 1), hdr...); res.StatusCode != 200 || !exposesRetryAfter(res) {
		t.Fatalf("first post: %d %s, Access-Control-Expose-Headers %q", res.StatusCode, got, res.Header.Get("Access-Control-Expose-Headers"))
	}
	// Over the limit: refused before the body is read, and after it
	// (a batch of more events than are left).
	for _, path := range []string{"/v1/t", "/v1/b"} {
		res, got := s.do(t, "POST", path, strings.Replace(body, "%d", "2", 1), hdr...)
		if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: want a 429 with Retry-After, got %d %v %s", path, res.StatusCode, res.Header, got)
		}
		if !exposesRetryAfter(res) || res.Header.Get("Access-Control-Allow-Origin") != crossOrigin {
			t.Fatalf("%s: 429 to a cross-origin post: Access-Control-Allow-Origin %q, Access-Control-Expose-Headers %q: a browser SDK cannot read Retry-After",
				path, res.Header.Get("Access-Control-Allow-Origin"), res.Header.Get("Access-Control-Expose-Headers"))
		}
	}
	// GET /v1/audiences' 429 too.
	res, _ := s.do(t, "GET", "/v1/audiences?writeKey="+testKey+"&anonymousId=a1", "", "Origin: "+crossOrigin)
	if res.StatusCode != 429 || !exposesRetryAfter(res) {
		t.Fatalf("/v1/audiences: %d, Access-Control-Expose-Headers %q", res.StatusCode, res.Header.Get("Access-Control-Expose-Headers"))
	}
}

// failingProducer is Kafka down: every produce fails.
type failingProducer struct{}

func (failingProducer) Produce(context.Context, []stream.Record) error {
	return errors.New("kafka down")
}
func (failingProducer) Healthy() bool { return false }

// The 503 of a cross-origin post whose events Kafka did not take exposes
// its Retry-After as well.
func TestRetryAfterExposedOn503CrossOrigin(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := New(Config{Kafka: stream.Config{Brokers: []string{"127.0.0.1:1"}, Partitions: 1}, HTTPAddr: "127.0.0.1:0", WriteKeys: []string{testKey}, ProduceTimeout: time.Second},
		failingProducer{}, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	addr, err := c.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	s := &server{c: c, base: "http://" + addr.String(), client: http.DefaultClient}
	res, got := s.do(t, "POST", "/v1/t", `{"type":"track","event":"E","anonymousId":"a1","writeKey":"`+testKey+`"}`, "Content-Type: text/plain", "Origin: "+crossOrigin)
	if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" {
		t.Fatalf("want a 503 with Retry-After, got %d %v %s", res.StatusCode, res.Header, got)
	}
	if res.Header.Get("Access-Control-Allow-Origin") != crossOrigin || !exposesRetryAfter(res) {
		t.Fatalf("503 to a cross-origin post: Access-Control-Allow-Origin %q, Access-Control-Expose-Headers %q",
			res.Header.Get("Access-Control-Allow-Origin"), res.Header.Get("Access-Control-Expose-Headers"))
	}
}

// tooLarge posts to path only the headers of a body over MaxBodyBytes
// (Content-Length: 1 MB + 1), which fasthttp refuses (413) from its headers
// before any handler runs, and reads the answer. (Posting the whole body
// races the collector closing the connection: the client may see a reset.)
func tooLarge(t *testing.T, s *server, path string, headers ...string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.base, "http://"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// A body over 1 MB is refused by httpError before any handler ran. Posted
// cross-origin to a Segment endpoint, the 413 must be readable: otherwise
// the browser turns it into a network error, which analytics-next
// (fetch-dispatcher.ts: not a NonRetryableError) and ls.js retry,
// re-uploading the same body, instead of dropping it as they do a 4xx.
func TestBodyTooLargeReadableCrossOrigin(t *testing.T) {
	s := startServer(t, nil)
	for _, c := range []struct {
		path, origin string
		hdr          []string
	}{
		{"/v1/t", crossOrigin, []string{"Content-Type: text/plain", "Authorization: " + mustBasic(testKey)}},
		{"/v1/batch", crossOrigin, []string{"Content-Type: application/json"}},
		// As its handler, a Segment endpoint answers any origin readably,
		// refusals included (the allow-list refuses the events; a 413
		// stores nothing).
		{"/v1/t", "https://elsewhere.example", []string{"Content-Type: text/plain", "Authorization: " + mustBasic(testOtherKey)}},
	} {
		res, got := tooLarge(t, s, c.path, append(c.hdr, "Origin: "+c.origin)...)
		if res.StatusCode != 413 || !strings.Contains(got, `"limit":"body_size_1MB"`) {
			t.Fatalf("%s: want 413 body_size_1MB, got %d %s", c.path, res.StatusCode, got)
		}
		if res.Header.Get("Access-Control-Allow-Origin") != c.origin || res.Header.Get("Access-Control-Allow-Credentials") != "true" {
			t.Fatalf("%s from %s: 413 without CORS headers (%v): the browser SDK sees a network error and retries", c.path, c.origin, res.Header)
		}
	}
	// Without an Origin (a server SDK), no CORS header.
	res, _ := tooLarge(t, s, "/v1/t", "Authorization: "+mustBasic(testKey))
	if res.StatusCode != 413 || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("413 without Origin: %d %v", res.StatusCode, res.Header)
	}
	// An endpoint that answers no browser gets none either.
	res, _ = tooLarge(t, s, "/healthz", "Origin: "+crossOrigin)
	if res.StatusCode != 413 || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("413 of /healthz: %d %v", res.StatusCode, res.Header)
	}
}

// A form's early 413 follows the form handler's rule: CORS only for an
// origin allowed for its key (when the key is known before the body), else
// for an origin some key allows (the preflight's rule).
func TestBodyTooLargeFormCORS(t *testing.T) {
	// Only testOtherKey, which allows www.acme.example and *.shop.example.
	s := startServer(t, func(c *Config) { c.WriteKeys = []string{testOtherKey} })
	for _, c := range []struct {
		query, origin string
		allowed       bool
	}{
		{"?writeKey=" + testOtherKey, crossOrigin, true},
		{"?writeKey=" + testOtherKey, "https://elsewhere.example", false},
		{"", "https://a.shop.example", true},
		{"", "https://elsewhere.example", false},
	} {
		res, _ := tooLarge(t, s, "/f/contact"+c.query, "Content-Type: application/x-www-form-urlencoded", "Origin: "+c.origin)
		if res.StatusCode != 413 {
			t.Fatalf("%s from %s: %d, want 413", c.query, c.origin, res.StatusCode)
		}
		if got := res.Header.Get("Access-Control-Allow-Origin"); (got == c.origin) != c.allowed || (got != "" && got != c.origin) {
			t.Fatalf("form %s from %s: Access-Control-Allow-Origin %q, want allowed=%v", c.query, c.origin, got, c.allowed)
		}
	}
}

// The ingest endpoints' other early refusals (no such endpoint, not a POST)
// are readable cross-origin too.
func TestEarlyRefusalsReadableCrossOrigin(t *testing.T) {
	s := startServer(t, nil)
	for _, c := range []struct {
		method, path string
		code         int
	}{{"GET", "/v1/t", 405}, {"POST", "/v1/nope", 404}} {
		res, got := s.do(t, c.method, c.path, "", "Origin: "+crossOrigin)
		if res.StatusCode != c.code || res.Header.Get("Access-Control-Allow-Origin") != crossOrigin {
			t.Fatalf("%s %s: %d %s, Access-Control-Allow-Origin %q", c.method, c.path, res.StatusCode, got, res.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	// A preflight still answers as before.
	res, _ := s.do(t, "OPTIONS", "/v1/t", "", "Origin: "+crossOrigin, "Access-Control-Request-Method: POST")
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != crossOrigin || res.Header.Get("Access-Control-Allow-Methods") == "" {
		t.Fatalf("preflight: %d %v", res.StatusCode, res.Header)
	}
}

// Segment's HTTP API ("Batch"): the batch's integrations are merged with
// each message's, like its context, the message's own keys winning.
func TestBatchIntegrationsMergedIntoEvents(t *testing.T) {
	s := startServer(t, nil)
	res, got := s.do(t, "POST", "/v1/batch", `{"batch":[{"type":"track","userId":"u-int","event":"Signed Up","messageId":"int-1"},`+
		`{"type":"track","userId":"u-int","event":"Signed Up","messageId":"int-2","integrations":{"Salesforce":false}}],`+
		`"integrations":{"All":false,"Salesforce":true},"context":{"library":{"name":"http"}}}`, "Authorization: "+mustBasic(testServerKey))
	if res.StatusCode != 200 || got != `{"success":true,"accepted":2}` {
		t.Fatalf("%d %s", res.StatusCode, got)
	}
	want := map[string]string{"int-1": `{"All":false,"Salesforce":true}`, "int-2": `{"All":false,"Salesforce":false}`}
	n := 0
	for _, e := range s.events(t) {
		if w, ok := want[e.ID]; ok {
			n++
			if string(e.Integrations) != w {
				t.Errorf("%s: stored integrations %s, want %s", e.ID, e.Integrations, w)
			}
		}
	}
	if n != 2 {
		t.Fatalf("%d of the 2 events stored", n)
	}
}

// analytics-kotlin's ScreenEvent (and analytics-swift's, analytics-android's
// ScreenPayload, analytics-node's screen()) send a screen's category beside
// its name: it is kept as properties.category.
func TestScreenCategoryStored(t *testing.T) {
	s := startServer(t, nil)
	body := `{"batch":[{"type":"screen","name":"Pricing","category":"Onboarding","properties":{},` +
		`"messageId":"kt-scr-1","anonymousId":"a-kt","userId":"","integrations":{},"timestamp":"2026-01-01T00:00:00.000Z",` +
		`"context":{"library":{"name":"analytics-kotlin","version":"1.19.0"}},"_metadata":{"bundled":[],"unbundled":[],"bundledIds":[]}}],` +
		`"sentAt":"2026-01-01T00:00:01.000Z","writeKey":"` + testKey + `"}`
	res, got := s.do(t, "POST", "/v1/b", body, "Content-Type: text/plain", "User-Agent: analytics-kotlin/1.19.0")
	if res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, got)
	}
	for _, e := range s.events(t) {
		if e.ID == "kt-scr-1" {
			if e.Title != "Pricing" || string(e.Properties) != `{"category":"Onboarding"}` {
				t.Fatalf("screen category: title %q, properties %s", e.Title, e.Properties)
			}
			return
		}
	}
	t.Fatal("event not stored")
}

// Segment's own documented /v1/batch example (segment-docs, HTTP API,
// "Batch") dates two messages "2015-2-02T00:30:12.984Z", month not
// zero-padded: all four are accepted.
func TestSegmentDocBatchExample(t *testing.T) {
	s := startServer(t, nil)
	body := `{"batch":[
	{"type":"identify","userId":"019mr8mf4r","traits":{"email":"jake@yahoo.com","name":"Jake Peterson","age":26},"timestamp":"2012-12-02T00:30:08.276Z"},
	{"type":"track","userId":"019mr8mf4r","event":"Song Played","properties":{"name":"Fallin for You","artist":"Dierks Bentley"},"timestamp":"2012-12-02T00:30:12.984Z"},
	{"type":"identify","userId":"971mj8mk7p","traits":{"email":"cindy@example.com","name":"Cindy Gonzalez","age":23},"timestamp":"2015-2-02T00:30:08.276Z"},
	{"type":"track","userId":"971mj8mk7p","event":"Song Played","properties":{"name":"Get Right","artist":"Jennifer Lopez"},"timestamp":"2015-2-02T00:30:12.984Z"}
	],"writeKey":"` + testServerKey + `","context":{"device":{"type":"phone","name":"Apple iPhone 6"}}}`
	res, got := s.do(t, "POST", "/v1/batch", body, "Content-Type: application/json")
	if res.StatusCode != 200 || got != `{"success":true,"accepted":4}` {
		t.Fatalf("Segment's documented batch example: %d %s", res.StatusCode, got)
	}
	want := time.Date(2015, 2, 2, 0, 30, 12, 984e6, time.UTC)
	for _, e := range s.events(t) {
		if e.LeadID == "971mj8mk7p" && e.Track == "Song Played" {
			if !e.OriginalTimestamp.Equal(want) {
				t.Fatalf("original timestamp %v, want %v", e.OriginalTimestamp, want)
			}
			return
		}
	}
	t.Fatal("event not stored")
}

// /v1/import is /v1/batch for every key (analytics-android 4.x posts there
// with its browser key): the flag's help must not say it needs a server key.
func TestServerWriteKeysHelpNoImport(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.RegisterFlags(fs)
	f := fs.Lookup("server-write-keys")
	if f == nil {
		t.Fatal("no server-write-keys flag")
	}
	if serverOnly, _, _ := strings.Cut(f.Usage, ";"); strings.Contains(serverOnly, "/v1/import") {
		t.Fatalf("server-write-keys help lists /v1/import among what only server keys may send: %q", f.Usage)
	}
}
