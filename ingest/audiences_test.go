package ingest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/leadstream/leadstream/leadstate"
)

// lookupFunc answers audience questions in tests of the HTTP side; the
// lookup over Redis is tested in processor (TestProcessorAudiences) and e2e.
type lookupFunc func(ctx context.Context, anon, lead string) ([]string, error)

func (f lookupFunc) Audiences(ctx context.Context, anon, lead string) ([]string, error) {
	return f(ctx, anon, lead)
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

	s.c.SetAudiences(lookupFunc(func(_ context.Context, anon, _ string) ([]string, error) {
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
	f("PUT", "/v1/audiences?writeKey=site-key&anonymousId=returner", 405, `use GET, or POST`)
	// CORS: the other key allows its origins only, refusals carry the headers.
	f("GET", "/v1/audiences?writeKey=other-key&anonymousId=returner", 200, `pricing-returner`, "Origin: https://www.acme.example")
	f("GET", "/v1/audiences?writeKey=other-key&anonymousId=returner", 200, `pricing-returner`, "Origin: https://a.shop.example")
	f("GET", "/v1/audiences?writeKey=other-key&anonymousId=returner", 403, `origin not allowed`, "Origin: https://evil.example")
	res, _ := s.do(t, "GET", "/v1/audiences?writeKey=other-key&anonymousId=returner", "", "Origin: https://evil.example")
	if res.Header.Get("Access-Control-Allow-Origin") != "https://evil.example" {
		t.Errorf("a refusal does not let the page read it: %v", res.Header)
	}
	res, _ = s.do(t, "OPTIONS", "/v1/audiences", "", "Origin: https://www.acme.example", "Access-Control-Request-Method: GET", "Access-Control-Request-Headers: authorization")
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Methods") != "GET, POST, OPTIONS" || !strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: %d %v", res.StatusCode, res.Header)
	}
	// A preflight without an origin is refused.
	if res, _ := s.do(t, "OPTIONS", "/v1/audiences", "", "Access-Control-Request-Method: GET"); res.StatusCode != 403 {
		t.Errorf("preflight without Origin: %d", res.StatusCode)
	}
	// A body over 1 MB, refused before the handler (httpError).
	if res, _ := tooLarge(t, s, "/v1/audiences", "Content-Type: application/x-www-form-urlencoded", "Origin: "+crossOrigin); res.StatusCode != 413 || res.Header.Get("Access-Control-Allow-Origin") != crossOrigin {
		t.Errorf("POST over 1 MB: %d %v", res.StatusCode, res.Header)
	}
	// Every answer is counted, under what it was: a 405 (PUT) too, a
	// preflight, and a 413 fasthttp refused before the handler.
	want := map[string]float64{"ok": 5, "unauthorized": 2, "bad_request": 2, "origin": 3, "unavailable": 2, "method_not_allowed": 1, "preflight": 1, "too_large": 1}
	total := 0.0
	for _, result := range []string{"ok", "bad_request", "unauthorized", "origin", "identity", "rate_limit", "unavailable",
		"internal_error", "method_not_allowed", "preflight", "too_large", "timeout"} {
		got := counter(s.c.am.lookups.WithLabelValues(result))
		if got != want[result] {
			t.Errorf("lookups{result=%q} = %v, want %v", result, got, want[result])
		}
		total += got
	}
	if total != 17 {
		t.Errorf("%v answers counted, want the 17 requests made", total)
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

const testIdentityKey = "site-identity-key-0123456789"

func userHash(key, user string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(user))
	return hex.EncodeToString(m.Sum(nil))
}

// A lead's audiences are answered to a visitor only with the lead's userHash:
// the lookup gets the lead only when the hash verifies.
func TestAudiencesUserHash(t *testing.T) {
	s := startServer(t, func(c *Config) { c.IdentityKeys = []string{"old-identity-key-0123456789", testIdentityKey} })
	var gotLead []string
	s.c.SetAudiences(lookupFunc(func(_ context.Context, _, lead string) ([]string, error) {
		gotLead = append(gotLead, lead)
		if lead == "ceo@acme.example" {
			return []string{"warm"}, nil
		}
		return nil, nil
	}))
	f := func(query string, wantCode int, wantBody string) {
		t.Helper()
		res, body := s.do(t, "GET", "/v1/audiences?writeKey=site-key&anonymousId=v1"+query, "")
		if res.StatusCode != wantCode || !strings.Contains(body, wantBody) {
			t.Errorf("%s: %d %s, want %d with %q", query, res.StatusCode, body, wantCode, wantBody)
		}
	}
	lead := url.QueryEscape("ceo@acme.example")
	good := userHash(testIdentityKey, "ceo@acme.example")
	f("", 200, `{"audiences":[]}`)
	f("&userId="+lead+"&userHash="+good, 200, `{"audiences":["warm"]}`)
	f("&userId="+lead+"&userHash="+strings.ToUpper(good), 200, `{"audiences":["warm"]}`)
	f("&userId="+lead+"&userHash="+userHash("old-identity-key-0123456789", "ceo@acme.example"), 200, `warm`) // any key verifies
	f("&userId="+lead+"&userHash="+userHash("some-other-key-0123456789", "ceo@acme.example"), 403, `userHash`)
	f("&userId="+url.QueryEscape("cfo@acme.example")+"&userHash="+good, 403, `userHash`) // another lead's hash
	f("&userId="+lead+"&userHash="+good[:40], 403, `userHash`)
	f("&userId="+lead+"&userHash=zz"+good[2:], 403, `userHash`)
	f("&userId="+lead, 400, `userId and userHash`)
	f("&userHash="+good, 400, `userId and userHash`)
	f("&userId="+strings.Repeat("x", 257)+"&userHash="+good, 400, `userId and userHash`)
	if want := []string{"", "ceo@acme.example", "ceo@acme.example", "ceo@acme.example"}; !slices.Equal(gotLead, want) {
		t.Errorf("leads passed to the lookup: %q, want %q", gotLead, want)
	}
	if got := counter(s.c.am.lookups.WithLabelValues("identity")); got != 4 {
		t.Errorf("lookups{result=identity} = %v, want 4", got)
	}

	// The same as a form-encoded POST, which keeps the user id and hash out
	// of the URL; a body of another type carries no parameters.
	post := func(body, ct string, wantCode int, wantBody string) {
		t.Helper()
		res, got := s.do(t, "POST", "/v1/audiences", body, "Content-Type: "+ct)
		if res.StatusCode != wantCode || !strings.Contains(got, wantBody) {
			t.Errorf("POST %s (%s): %d %s, want %d with %q", body, ct, res.StatusCode, got, wantCode, wantBody)
		}
	}
	form := "application/x-www-form-urlencoded;charset=UTF-8"
	post("writeKey=site-key&anonymousId=v1&userId="+lead+"&userHash="+good, form, 200, `{"audiences":["warm"]}`)
	post("writeKey=site-key&anonymousId=v1&userId="+lead+"&userHash="+good[:40], form, 403, `userHash`)
	post("writeKey=site-key&anonymousId=v1", form, 200, `{"audiences":[]}`)
	post("writeKey=site-key&anonymousId=v1", "text/plain", 401, `write key`)
	if res, _ := s.do(t, "PUT", "/v1/audiences?writeKey=site-key&anonymousId=v1", ""); res.StatusCode != 405 || !strings.Contains(res.Header.Get("Allow"), "POST") {
		t.Errorf("PUT: %d Allow %q", res.StatusCode, res.Header.Get("Allow"))
	}

	// Without identity keys a userHash cannot be checked: refused, not ignored.
	s2 := startServer(t, nil)
	s2.c.SetAudiences(lookupFunc(func(context.Context, string, string) ([]string, error) { return nil, nil }))
	res, body := s2.do(t, "GET", "/v1/audiences?writeKey=site-key&anonymousId=v1&userId="+lead+"&userHash="+good, "")
	if res.StatusCode != 403 || !strings.Contains(body, "identity-keys") {
		t.Errorf("no identity keys: %d %s", res.StatusCode, body)
	}
}

// Browser keys pay one event of their address's bucket per lookup, refused
// ones included; server keys are not limited; a corrupt state is a 500, not
// a retry.
func TestAudiencesLimits(t *testing.T) {
	s := startServer(t, func(c *Config) { c.RateLimitIP = Rate{PerSecond: 0.001, Burst: 2} })
	s.c.SetAudiences(lookupFunc(func(_ context.Context, anon, _ string) ([]string, error) {
		if anon == "corrupt" {
			return nil, fmt.Errorf("visitor %q: %w", anon, leadstate.ErrCorruptState)
		}
		return nil, nil
	}))
	for i, want := range []int{403, 400, 429, 429} {
		q := "/v1/audiences?writeKey=site-key&anonymousId=v1"
		switch i {
		case 0: // a refused userHash takes its event too
			q += "&userId=u&userHash=" + strings.Repeat("0", 64)
		case 1: // and so does a lookup without an anonymous id
			q = "/v1/audiences?writeKey=site-key"
		}
		res, body := s.do(t, "GET", q, "")
		if res.StatusCode != want || (want == 429 && (res.Header.Get("Retry-After") == "" || !strings.Contains(body, "rate_limit_ip"))) {
			t.Errorf("lookup %d: %d %s, want %d", i+1, res.StatusCode, body, want)
		}
	}
	if got := counter(s.c.am.lookups.WithLabelValues("rate_limit")); got != 2 {
		t.Errorf("lookups{result=rate_limit} = %v, want 2", got)
	}
	for range 3 {
		res, body := s.do(t, "GET", "/v1/audiences?anonymousId=v1", "", "Authorization: "+mustBasic(testServerKey))
		if res.StatusCode != 200 {
			t.Errorf("server key: %d %s", res.StatusCode, body)
		}
	}
	res, body := s.do(t, "GET", "/v1/audiences?anonymousId=corrupt", "", "Authorization: "+mustBasic(testServerKey))
	if res.StatusCode != 500 || res.Header.Get("Retry-After") != "" || strings.Contains(body, "corrupt\"") {
		t.Errorf("corrupt state: %d %v %s", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
	// A 500 is counted as what it is, not as Redis unavailable (the 503
	// an alert or a dashboard reads as "Redis down").
	if got := counter(s.c.am.lookups.WithLabelValues("internal_error")); got != 1 {
		t.Errorf("lookups{result=internal_error} = %v, want 1", got)
	}
	if got := counter(s.c.am.lookups.WithLabelValues("unavailable")); got != 0 {
		t.Errorf("lookups{result=unavailable} = %v, want 0 (no 503 was answered)", got)
	}
}
