package ingest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/stream"
)

// The short paths of analytics.js and the mobile SDKs, posted as analytics.js
// posts them: text/plain JSON with the key in the body and in Basic auth.
func TestShortPaths(t *testing.T) {
	s := startServer(t, nil)
	origin := "https://www.acme.example"
	auth := "Authorization: " + mustBasic(testKey)
	for path, body := range map[string]string{
		"/v1/t": `{"type":"track","event":"Signed Up","userId":"u-t","messageId":"m-t"}`,
		"/v1/p": `{"type":"page","anonymousId":"a-p","messageId":"m-p","properties":{"url":"https://www.acme.example/pricing?utm_campaign=sp"}}`,
		"/v1/i": `{"type":"identify","userId":"u-i","messageId":"m-i","traits":{"title":"CTO"}}`,
		"/v1/g": `{"type":"group","userId":"u-g","groupId":"acme","messageId":"m-g"}`,
		"/v1/a": `{"type":"alias","userId":"u-a","previousId":"a-a","messageId":"m-a"}`,
		"/v1/s": `{"type":"screen","userId":"u-s","name":"Home","messageId":"m-s"}`,
		"/v1/b": `{"batch":[{"type":"track","event":"Batched","userId":"u-b","messageId":"m-b"}],"writeKey":"` + testKey + `","sentAt":"2026-01-01T00:00:00Z"}`,
	} {
		// Preflight first, as a browser sends for a JSON post.
		res, _ := s.do(t, "OPTIONS", path, "", "Origin: "+origin, "Access-Control-Request-Method: POST",
			"Access-Control-Request-Headers: authorization,content-type,x-retry-count,x-site-header")
		if allow := strings.ToLower(res.Header.Get("Access-Control-Allow-Headers")); res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != origin ||
			!strings.Contains(allow, "authorization") || !strings.Contains(allow, "x-retry-count") || !strings.Contains(allow, "x-site-header") {
			t.Fatalf("OPTIONS %s: %d %v", path, res.StatusCode, res.Header)
		}
		auth := auth
		if path == "/v1/a" {
			auth = "Authorization: " + mustBasic(testServerKey) // alias: server keys only
		}
		res, got := s.do(t, "POST", path, body, "Content-Type: text/plain", "Origin: "+origin, auth)
		if res.StatusCode != 200 || got != `{"success":true,"accepted":1}` {
			t.Fatalf("POST %s: %d %s", path, res.StatusCode, got)
		}
	}
	// A type that is not the endpoint's is refused.
	if res, body := s.do(t, "POST", "/v1/t", `{"type":"page","userId":"u"}`, auth); res.StatusCode != 400 || !strings.Contains(body, `track.type: is \"page\" but the endpoint is /v1/track`) {
		t.Fatalf("page to /v1/t: %d %s", res.StatusCode, body)
	}
	byID := map[string]event.Event{}
	for _, e := range s.events(t) {
		byID[e.ID] = e
	}
	for id, want := range map[string]event.Type{"m-t": event.Custom, "m-p": event.PageView, "m-i": event.Identify, "m-g": event.Group,
		"m-a": event.Alias, "m-s": event.PageView, "m-b": event.Custom} {
		if e, ok := byID[id]; !ok || e.Type != want {
			t.Errorf("%s: %+v, want a %s event", id, e, want)
		}
	}
	if e := byID["m-p"]; e.Campaign != "sp" {
		t.Errorf("page campaign %q, want sp", e.Campaign)
	}
	for code, want := range map[string]float64{"204": 1, "200": 1, "400": 1} {
		if got := counter(s.c.m.requests.WithLabelValues("/v1/t", code)); got != want {
			t.Errorf("requests of /v1/t with %s counted %v times, want %v", code, got, want)
		}
	}
}

// A batch with bad messages stores the good ones and lists the bad ones; a
// batch with no good message is refused whole.
func TestBatchPerMessageAnswer(t *testing.T) {
	s := startServer(t, nil)
	auth := "Authorization: " + mustBasic(testKey)
	res, body := s.do(t, "POST", "/v1/batch", `{"batch":[
		{"type":"track","userId":"u1","event":"Good One","messageId":"good-1"},
		{"type":"track","userId":"u1","messageId":"bad-1"},
		{"type":"track","userId":"u1","event":"Deal Won","messageId":"bad-2","properties":{"revenue":"lots"}},
		{"type":"page","anonymousId":"a1","messageId":"good-2"}]}`, auth)
	if res.StatusCode != 200 {
		t.Fatalf("partly bad batch: %d %s", res.StatusCode, body)
	}
	var got struct {
		Success  bool
		Accepted int
		Rejected []struct {
			Index     int
			MessageID string
			Error     string
		}
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Success || got.Accepted != 2 || len(got.Rejected) != 2 ||
		got.Rejected[0].Index != 1 || got.Rejected[0].MessageID != "bad-1" || got.Rejected[0].Error != "batch[1].event: is required for track" ||
		got.Rejected[1].Index != 2 || got.Rejected[1].MessageID != "bad-2" || got.Rejected[1].Error != `batch[2].properties.revenue: must be a number, or a string of one such as "1234.50" or "$99"; got "lots"` {
		t.Fatalf("answer %s", body)
	}
	res, body = s.do(t, "POST", "/v1/batch", `{"batch":[{"type":"track","userId":"u1","messageId":"bad-3"},{"type":"nope","userId":"u1"}]}`, auth)
	var refused struct {
		Success              bool
		Error, Code, Message string
		Accepted             int
		Rejected             []json.RawMessage
	}
	if err := json.Unmarshal([]byte(body), &refused); err != nil || res.StatusCode != 400 || refused.Success || refused.Code != "invalid_request" ||
		refused.Error != "batch: none of its 2 messages is valid (see rejected)" || refused.Message != refused.Error || len(refused.Rejected) != 2 {
		t.Fatalf("all bad: %d %s (%v)", res.StatusCode, body, err)
	}
	var ids []string
	for _, e := range s.events(t) {
		ids = append(ids, e.ID)
	}
	if strings.Join(ids, ",") != "good-1,good-2" {
		t.Fatalf("stored %v, want good-1 and good-2", ids)
	}
	if n := counter(s.c.m.rejectedEvents.WithLabelValues("malformed")); n != 4 {
		t.Errorf("rejected events counted %v, want 4", n)
	}
	if n := counter(s.c.m.rejected.WithLabelValues("malformed")); n != 1 {
		t.Errorf("rejected requests counted %v, want 1 (the batch with no good message)", n)
	}
}

// Every refusal carries code and message beside error (analytics-python
// reads them), for the collector's own errors and the lead API's alike.
func TestErrorBodies(t *testing.T) {
	s := startServer(t, nil)
	for _, c := range []struct {
		method, path, body string
		headers            []string
		status             int
		code               string
	}{
		{"POST", "/v1/track", `{"userId":"u"}`, []string{"Authorization: " + mustBasic(testKey)}, 400, "invalid_request"},
		{"POST", "/v1/track", `{"userId":"u","event":"e"}`, nil, 401, "unauthorized"},
		{"GET", "/v1/track", "", nil, 405, "method_not_allowed"},
		{"POST", "/v1/nope", "{}", nil, 404, "not_found"},
		{"POST", "/v1/batch", `{"batch":[]}`, []string{"Authorization: " + mustBasic(testOtherKey), "Origin: https://evil.example"}, 403, "forbidden"},
	} {
		res, body := s.do(t, c.method, c.path, c.body, c.headers...)
		var b struct {
			Success              bool
			Error, Code, Message string
		}
		if err := json.Unmarshal([]byte(body), &b); err != nil || res.StatusCode != c.status || b.Success || b.Code != c.code || b.Message == "" || b.Message != b.Error {
			t.Errorf("%s %s: %d %s, want %d with code %q", c.method, c.path, res.StatusCode, body, c.status, c.code)
		}
	}
}

// A browser's context.ip is what its page says; the connection's address is
// stored. A server SDK relays its visitor's.
func TestClientIPFromBrowser(t *testing.T) {
	s := startServer(t, nil)
	body := `{"type":"track","userId":"u","event":"e","context":{"ip":"203.0.113.9"},"writeKey":"` + testKey + `"}`
	if res, b := s.do(t, "POST", "/v1/t", body, "Origin: https://www.acme.example"); res.StatusCode != 200 {
		t.Fatalf("browser: %d %s", res.StatusCode, b)
	}
	if res, b := s.do(t, "POST", "/v1/t", body, "User-Agent: analytics-node-next/latest"); res.StatusCode != 200 {
		t.Fatalf("server: %d %s", res.StatusCode, b)
	}
	evs := s.events(t)
	if len(evs) != 2 || evs[0].IP != "127.0.0.1" || evs[1].IP != "203.0.113.9" || string(evs[0].Context) != `{"ip":"203.0.113.9"}` {
		t.Fatalf("events %+v", evs)
	}
}

// GET /v1/projects/{writeKey}/settings points analytics.js at the collector.
func TestSettings(t *testing.T) {
	check := func(s *server, wantHost, wantProto string) {
		t.Helper()
		res, body := s.do(t, "GET", "/v1/projects/"+testKey+"/settings", "", "Origin: https://www.acme.example")
		var got struct {
			Integrations map[string]struct{ APIKey, APIHost, Protocol string }
			Metrics      struct{ SampleRate *int }
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil || res.StatusCode != 200 {
			t.Fatalf("settings: %d %s (%v)", res.StatusCode, body, err)
		}
		sio := got.Integrations["Segment.io"]
		if len(got.Integrations) != 1 || sio.APIKey != testKey || sio.APIHost != wantHost || sio.Protocol != wantProto ||
			got.Metrics.SampleRate == nil || *got.Metrics.SampleRate != 0 {
			t.Fatalf("settings %s, want apiHost %s over %s and no remote metrics", body, wantHost, wantProto)
		}
		if res.Header.Get("Access-Control-Allow-Origin") != "https://www.acme.example" || !strings.Contains(res.Header.Get("Cache-Control"), "max-age") {
			t.Fatalf("settings headers %v", res.Header)
		}
	}
	s := startServer(t, nil)
	check(s, strings.TrimPrefix(s.base, "http://")+"/v1", "http")
	check(startServer(t, func(c *Config) { c.PublicURL = "https://t.acme.example/collect/" }), "t.acme.example/collect/v1", "https")

	for _, c := range []struct {
		method, path string
		headers      []string
		status       int
		want         string
	}{
		{"GET", "/v1/projects/unknown-key/settings", nil, 404, `"code":"not_found"`},
		{"GET", "/v1/projects/" + testKey + "/other", nil, 404, "want /v1/projects/{writeKey}/settings"},
		{"POST", "/v1/projects/" + testKey + "/settings", nil, 405, "use GET"},
		{"GET", "/v1/projects/" + testOtherKey + "/settings", []string{"Origin: https://evil.example"}, 403, "origin not allowed"},
		{"GET", "/v1/projects/" + testOtherKey + "/settings", []string{"Origin: https://a.shop.example"}, 200, `"apiKey":"` + testOtherKey + `"`},
	} {
		res, body := s.do(t, c.method, c.path, "", c.headers...)
		if res.StatusCode != c.status || !strings.Contains(body, c.want) {
			t.Errorf("%s %s: %d %s, want %d with %q", c.method, c.path, res.StatusCode, body, c.status, c.want)
		}
	}
	for _, u := range []string{"ftp://x", "https://", "https://t.example/?a=1", "t.example"} {
		cfg := Config{Kafka: stream.Config{Brokers: []string{"k:9092"}, Partitions: 1}, HTTPAddr: ":0", WriteKeys: []string{"k"}, ProduceTimeout: time.Second, PublicURL: u}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "public-url") {
			t.Errorf("public-url %q: Validate = %v", u, err)
		}
	}
}

// The clock of a client an hour ahead is corrected by its sentAt.
func TestClockSkewOverHTTP(t *testing.T) {
	s := startServer(t, nil)
	ahead := time.Now().Add(time.Hour).UTC()
	body := `{"batch":[{"type":"track","userId":"u","event":"e","timestamp":"` + ahead.Add(-3*time.Second).Format(time.RFC3339Nano) + `"}],"sentAt":"` + ahead.Format(time.RFC3339Nano) + `"}`
	if res, b := s.do(t, "POST", "/v1/batch", body, "Authorization: "+mustBasic(testKey)); res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	e := s.events(t)[0]
	// timestamp + (received − sentAt): 3 s before its receipt, whatever the
	// client's clock (to the millisecond the collector keeps).
	if d := e.ReceivedAt.Sub(e.EventTime) - 3*time.Second; d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("event time %v is %v off 3 s before its receipt %v", e.EventTime, d, e.ReceivedAt)
	}
	if d := time.Since(e.ReceivedAt); d < 0 || d > time.Minute {
		t.Errorf("received_at %v is not now", e.ReceivedAt)
	}
	if d := e.OriginalTimestamp.Sub(ahead); d < -4*time.Second || d > 0 {
		t.Errorf("original_timestamp %v, want the client's %v", e.OriginalTimestamp, ahead.Add(-3*time.Second))
	}
}
