package ingest

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// lookupFunc answers audience questions in tests of the HTTP side; the
// lookup over Redis is tested in processor (TestProcessorAudiences) and e2e.
type lookupFunc func(ctx context.Context, anon string) ([]string, error)

func (f lookupFunc) Audiences(ctx context.Context, anon string) ([]string, error) {
	return f(ctx, anon)
}

func TestAudiencesAPI(t *testing.T) {
	s := startServer(t, nil)
	f := func(method, path string, wantCode int, wantBody string, headers ...string) {
		t.Helper()
		res, body := s.do(t, method, path, "", headers...)
		if res.StatusCode != wantCode || !strings.Contains(body, wantBody) {
			t.Errorf("%s %s %v: %d %s, want %d with %q", method, path, headers, res.StatusCode, body, wantCode, wantBody)
		}
		if res.StatusCode != 204 && res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s %s: Cache-Control %q", method, path, res.Header.Get("Cache-Control"))
		}
		if o := strings.TrimPrefix(headerOf(headers, "Origin"), "Origin: "); o != "" && wantCode != 403 && res.Header.Get("Access-Control-Allow-Origin") != o {
			t.Errorf("%s %s: Access-Control-Allow-Origin %q, want %q", method, path, res.Header.Get("Access-Control-Allow-Origin"), o)
		}
	}
	f("GET", "/v1/audiences?writeKey=site-key&anonymousId=v1", 503, `"code":"unavailable"`)

	s.c.SetAudiences(lookupFunc(func(_ context.Context, anon string) ([]string, error) {
		switch anon {
		case "returner":
			return []string{"pricing-returner", "warm"}, nil
		case "down":
			return nil, errors.New("redis down")
		}
		return nil, nil
	}))
	f("GET", "/v1/audiences?writeKey=site-key&anonymousId=returner", 200, `{"audiences":["pricing-returner","warm"]}`)
	f("GET", "/v1/audiences?anonymousId=returner", 200, `{"audiences":["pricing-returner","warm"]}`, "Authorization: "+mustBasic(testKey))
	f("GET", "/v1/audiences?writeKey=site-key&anonymousId=new", 200, `{"audiences":[]}`)
	f("GET", "/v1/audiences?writeKey=site-key&anonymousId=down", 503, `reading audiences failed`)
	f("GET", "/v1/audiences?writeKey=nope&anonymousId=returner", 401, `"code":"unauthorized"`)
	f("GET", "/v1/audiences?anonymousId=returner", 401, `write key`)
	f("GET", "/v1/audiences?writeKey=site-key", 400, `anonymousId`)
	f("GET", "/v1/audiences?writeKey=site-key&anonymousId="+strings.Repeat("x", 257), 400, `anonymousId`)
	f("POST", "/v1/audiences?writeKey=site-key&anonymousId=returner", 405, `use GET`)
	// CORS: the other key allows its origins only, refusals carry the headers.
	f("GET", "/v1/audiences?writeKey=other-key&anonymousId=returner", 200, `pricing-returner`, "Origin: https://www.acme.example")
	f("GET", "/v1/audiences?writeKey=other-key&anonymousId=returner", 200, `pricing-returner`, "Origin: https://a.shop.example")
	f("GET", "/v1/audiences?writeKey=other-key&anonymousId=returner", 403, `origin not allowed`, "Origin: https://evil.example")
	res, _ := s.do(t, "GET", "/v1/audiences?writeKey=other-key&anonymousId=returner", "", "Origin: https://evil.example")
	if res.Header.Get("Access-Control-Allow-Origin") != "https://evil.example" {
		t.Errorf("a refusal does not let the page read it: %v", res.Header)
	}
	res, _ = s.do(t, "OPTIONS", "/v1/audiences", "", "Origin: https://www.acme.example", "Access-Control-Request-Method: GET", "Access-Control-Request-Headers: authorization")
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Methods") != "GET, OPTIONS" || !strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: %d %v", res.StatusCode, res.Header)
	}
	for result, want := range map[string]float64{"ok": 5, "unauthorized": 2, "bad_request": 2, "origin": 2, "unavailable": 2} {
		if got := counter(s.c.am.lookups.WithLabelValues(result)); got != want {
			t.Errorf("lookups{result=%q} = %v, want %v", result, got, want)
		}
	}
	if got := counter(s.c.am.members.WithLabelValues("pricing-returner")); got != 4 {
		t.Errorf("members{pricing-returner} = %v, want 4", got)
	}
}

func headerOf(headers []string, name string) string {
	for _, h := range headers {
		if strings.HasPrefix(h, name+": ") {
			return h
		}
	}
	return ""
}
