package leadapi

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/leadstream/leadstream/erasure"
)

// eraserFunc erases with a function: the HTTP mapping is tested here, the
// erasure itself against real Redis, ClickHouse and Kafka in
// cmd/leadstream's TestE2EErase.
type eraserFunc func(ctx context.Context, id string, wait time.Duration) (*erasure.Result, error)

func (f eraserFunc) Erase(ctx context.Context, id string, wait time.Duration) (*erasure.Result, error) {
	return f(ctx, id, wait)
}

// DELETE /v1/leads/{id}: the secret key, the unescaped id, 200 when done,
// 202 while ClickHouse deletes, 503 (with Retry-After) when it fails or the
// role cannot erase, 500 when a store refuses the role's rights.
func TestEraseHTTP(t *testing.T) {
	var gotID string
	var result *erasure.Result
	var fail error
	api := New(nil, nil, "s3cret")
	api.SetEraser(eraserFunc(func(_ context.Context, id string, wait time.Duration) (*erasure.Result, error) {
		gotID = id
		if wait != eraseWait {
			t.Errorf("wait %v, want %v", wait, eraseWait)
		}
		return result, fail
	}))
	f := func(a *API, method, path, auth string, wantCode int, wantBody string) {
		t.Helper()
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetRequestURI(path)
		if auth != "" {
			ctx.Request.Header.Set("Authorization", "Bearer "+auth)
		}
		a.Serve(&ctx)
		if body := string(ctx.Response.Body()); ctx.Response.StatusCode() != wantCode || !strings.Contains(body, wantBody) {
			t.Errorf("%s %s = %d %s, want %d containing %q", method, path, ctx.Response.StatusCode(), body, wantCode, wantBody)
		}
	}
	result = &erasure.Result{LeadID: "jane@example.com", Leads: []string{"jane@example.com"}, AnonymousIDs: 2, Done: true}
	f(api, "DELETE", "/v1/leads/jane%40example.com", "", 401, "")
	f(api, "DELETE", "/v1/leads/jane%40example.com", "wrong", 401, "")
	f(api, "POST", "/v1/leads/jane%40example.com", "s3cret", 405, "DELETE")
	f(api, "DELETE", "/v1/leads/", "s3cret", 400, "lead_id")
	f(api, "DELETE", "/v1/leads/jane%40example.com", "s3cret", 200, `"anonymous_ids":2`)
	if gotID != "jane@example.com" {
		t.Errorf("erased %q, want the unescaped id", gotID)
	}
	result = &erasure.Result{LeadID: "x", Done: false}
	f(api, "DELETE", "/v1/leads/x", "s3cret", 202, `"done":false`)
	result, fail = nil, errors.New("clickhouse: connection refused")
	f(api, "DELETE", "/v1/leads/x", "s3cret", 503, "retry")
	// A store refusing the role's rights (leadstate's TestEraseACL: a
	// read-only Redis user) is no reason to retry: 500, naming what to grant.
	fail = errors.New("erasure: deleting the states: NOPERM User reader has no permissions to run the 'del' command")
	f(api, "DELETE", "/v1/leads/x", "s3cret", 500, "ACLEraser")
	fail = erasure.ErrNotConfigured
	f(api, "DELETE", "/v1/leads/x", "s3cret", 503, "not configured")
	f(New(nil, nil, "s3cret"), "DELETE", "/v1/leads/x", "s3cret", 503, "not configured")
}
