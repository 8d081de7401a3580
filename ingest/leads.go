package ingest

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/url"
	"strings"
	"time"

	"github.com/leadstream/leadstream/leadstate"
	"github.com/valyala/fasthttp"
)

// leadAPI serves GET /v1/leads/{lead_id}, authorised by the secret key as
// HTTP Basic user name or Bearer token.
type leadAPI struct {
	store  *leadstate.Store
	models []leadstate.ModelInfo
	secret string
}

func (a *leadAPI) serve(ctx *fasthttp.RequestCtx, rawID string) {
	if !ctx.IsGet() {
		ctx.Response.Header.Set("Allow", "GET")
		jsonError(ctx, fasthttp.StatusMethodNotAllowed, "use GET")
		return
	}
	if !a.authorised(ctx) {
		ctx.Response.Header.Set("WWW-Authenticate", `Basic realm="leadstream"`)
		jsonError(ctx, fasthttp.StatusUnauthorized, "the lead API needs the secret key (HTTP Basic user name or Bearer token)")
		return
	}
	id, err := url.PathUnescape(rawID)
	if err != nil || id == "" || strings.Contains(id, "/") {
		jsonError(ctx, fasthttp.StatusBadRequest, "lead_id: expected /v1/leads/{lead_id} with a URL-escaped id")
		return
	}
	if a.store == nil {
		jsonError(ctx, fasthttp.StatusServiceUnavailable, "lead API not configured: no redis address")
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	view, err := a.store.Lead(rctx, id, a.models, time.Now())
	if err != nil {
		ctx.Response.Header.Set("Retry-After", "1")
		jsonError(ctx, fasthttp.StatusServiceUnavailable, "reading lead state failed, retry")
		return
	}
	if !view.Known {
		jsonError(ctx, fasthttp.StatusNotFound, "no scores for this lead_id")
		return
	}
	out, err := json.Marshal(view)
	if err != nil {
		panic("BUG: encoding lead view: " + err.Error())
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
}

func (a *leadAPI) authorised(ctx *fasthttp.RequestCtx) bool {
	if a.secret == "" {
		return false
	}
	got := ""
	if user, _, ok := basicAuth(ctx); ok {
		got = user
	} else if h := string(ctx.Request.Header.Peek("Authorization")); len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		got = h[7:]
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(a.secret)) == 1
}
