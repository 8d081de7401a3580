package leadapi

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/leadstream/leadstream/erasure"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// pathIDs are ids whose escaped form an extra unescaping would change.
var pathIDs = []string{"x%41@example.com", "x%2541@example.com", "50%off@example.com", "a/b", "a%2Fb", "o'brien+1 @example.com"}

// DELETE /v1/leads/{id} erases the id as sent, unescaped once: "%" and "/"
// (as %25 and %2F) are part of the id, not escapes of something else. A
// query string is not part of the id; a "/" sent as such is refused.
func TestEraseHTTPUnescapesIDOnce(t *testing.T) {
	for _, id := range pathIDs {
		for _, uri := range []string{Prefix + url.PathEscape(id), Prefix + url.PathEscape(id) + "?wait=1", "http://collect.example.com" + Prefix + url.PathEscape(id)} {
			got := ""
			code := deleteLead(uri, func(id string) { got = id })
			if got != id || code != 200 {
				t.Errorf("DELETE %s = %d, erased %q; want %q", uri, code, got, id)
			}
		}
	}
	for _, uri := range []string{Prefix + "a/b", Prefix + "%zz", Prefix, Prefix + "?x=1"} {
		if code := deleteLead(uri, func(id string) { t.Errorf("DELETE %s erased %q", uri, id) }); code != 400 {
			t.Errorf("DELETE %s = %d, want 400", uri, code)
		}
	}
}

// deleteLead serves DELETE uri with the secret key, erase called with the
// id the API would erase; it returns the answer's status.
func deleteLead(uri string, erase func(id string)) int {
	api := New(nil, nil, "s")
	api.SetEraser(eraserFunc(func(_ context.Context, id string, _ time.Duration) (*erasure.Result, error) {
		erase(id)
		return &erasure.Result{Done: true}, nil
	}))
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("DELETE")
	ctx.Request.SetRequestURI(uri)
	ctx.Request.Header.Set("Authorization", "Bearer s")
	api.Serve(&ctx)
	return ctx.Response.StatusCode()
}

// GET /v1/leads/{id} and /v1/accounts/{id} read the state of the id as
// sent, unescaped once, "/" (%2F) included.
func TestGetUnescapesIDOnce(t *testing.T) {
	s := leadstatetest.Open(t, testsvc.Redis(t))
	ctx := context.Background()
	api := New(s, scoring.Default().Models, "s")
	for _, id := range pathIDs {
		id := id + "-" + time.Now().Format("150405.000000000")
		lead, acct := scoring.Lead(id), scoring.Account(id)
		if _, err := s.Commit(ctx, []leadstate.Commit{{Subject: lead, State: &scoring.State{Subject: lead, MemberOf: id}},
			{Subject: acct, State: &scoring.State{Subject: acct}}}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			prefix string
			serve  func(*fasthttp.RequestCtx)
		}{{Prefix, api.Serve}, {AccountPrefix, api.ServeAccount}} {
			var rc fasthttp.RequestCtx
			rc.Request.Header.SetMethod("GET")
			rc.Request.SetRequestURI(c.prefix + url.PathEscape(id))
			rc.Request.Header.Set("Authorization", "Bearer s")
			c.serve(&rc)
			if rc.Response.StatusCode() != 200 {
				t.Errorf("GET %s%s = %d %s, want 200", c.prefix, url.PathEscape(id), rc.Response.StatusCode(), rc.Response.Body())
			}
		}
	}
}
