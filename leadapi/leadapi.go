// Package leadapi serves the lead API: GET /v1/leads/{lead_id}, a lead's
// current scores per model, fit, MQL state and last activity, read from the
// scoring state in Redis (package leadstate) and decayed to the time of the
// request; and DELETE /v1/leads/{lead_id}, the erasure of the lead (package
// erasure, when the role has one: SetEraser). It is authorised by the secret
// key (HTTP Basic user name or Bearer token). The collector mounts it (at
// Prefix); GET writes nothing.
package leadapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/leadstream/leadstream/internal/httpapi"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
)

// Prefix is the path the API serves under: Prefix + URL-escaped lead id.
const Prefix = "/v1/leads/"

// readTimeout bounds one read of a lead's or account's state: the request
// is answered 503 then.
const readTimeout = 2 * time.Second

// bounded returns what read returns, or ctx's error once ctx is done,
// whichever comes first: the Redis client does not bound a command by its
// context's deadline (go-redis does only with ContextTimeoutEnabled; its
// own read and dial timeouts let a stalled Redis hold a request 5 s), so
// the answer does not wait for it. The read goes on in the background
// until the client gives up.
func bounded[T any](ctx context.Context, read func(context.Context) (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := read(ctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// API serves GET and DELETE /v1/leads/{lead_id}.
type API struct {
	store  *leadstate.Store // nil: the API answers 503
	models []scoring.Model
	secret string
	eraser Eraser       // nil: DELETE answers 503
	log    *slog.Logger // nil: nothing logged
}

// SetLogger makes the API log the reads that fail for a reason other than
// their time running out (the id is never logged: it may be an e-mail).
func (a *API) SetLogger(l *slog.Logger) { a.log = l }

// readFailed answers a failed read of the state of what ("lead",
// "account"): 500 for a stored state that does not decode (retrying reads
// the same bytes: the scoring of its events is dead-lettered too, until
// `leadstream erase` or `rescore -apply` writes a good state), else 503 with
// Retry-After (Redis down, stalled or too slow for readTimeout).
func (a *API) readFailed(ctx *fasthttp.RequestCtx, what string, err error) {
	if errors.Is(err, leadstate.ErrCorruptState) {
		if a.log != nil {
			// The error names the subject (a lead id may be an e-mail).
			a.log.Error(what + " API: a stored state does not decode")
			a.log.Debug(what+" API: a stored state does not decode", "err", err)
		}
		httpapi.Error(ctx, fasthttp.StatusInternalServerError, "reading "+what+" state failed: a stored state does not decode")
		return
	}
	if a.log != nil && !errors.Is(err, context.DeadlineExceeded) {
		a.log.Warn(what+" API: reading state failed", "err", err)
	}
	ctx.Response.Header.Set("Retry-After", "1")
	httpapi.Error(ctx, fasthttp.StatusServiceUnavailable, "reading "+what+" state failed, retry")
}

// New returns the API reading store for models, authorised by secret (an
// empty secret refuses every request). store may be nil when no Redis is
// configured; every request is then answered 503.
func New(store *leadstate.Store, models []scoring.Model, secret string) *API {
	return &API{store: store, models: models, secret: secret}
}

// Serve answers one request under Prefix.
func (a *API) Serve(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsDelete() {
		ctx.Response.Header.Set("Allow", "GET, DELETE")
		httpapi.Error(ctx, fasthttp.StatusMethodNotAllowed, "use GET (read a lead) or DELETE (erase it)")
		return
	}
	if !a.authorized(ctx, "lead") {
		return
	}
	id, ok := pathID(ctx, Prefix, "lead_id")
	if !ok {
		return
	}
	if ctx.IsDelete() {
		a.erase(ctx, id)
		return
	}
	if a.store == nil {
		httpapi.Error(ctx, fasthttp.StatusServiceUnavailable, "lead API not configured: no redis address")
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	now := time.Now()
	view, err := bounded(rctx, func(ctx context.Context) (*LeadView, error) { return Read(ctx, a.store, id, a.models, now) })
	if err != nil {
		a.readFailed(ctx, "lead", err)
		return
	}
	if !view.Known {
		httpapi.Error(ctx, fasthttp.StatusNotFound, "no scores for this lead_id")
		return
	}
	writeView(ctx, view, "lead")
}

// authorized answers 401 unless the request carries the secret key; what
// names the API ("lead", "account") in the error.
func (a *API) authorized(ctx *fasthttp.RequestCtx, what string) bool {
	if httpapi.HasSecret(ctx, a.secret) {
		return true
	}
	ctx.Response.Header.Set("WWW-Authenticate", `Basic realm="leadstream"`)
	httpapi.Error(ctx, fasthttp.StatusUnauthorized, "the "+what+" API needs the secret key (HTTP Basic user name or Bearer token)")
	return false
}

// pathID is the id after prefix (e.g. /v1/leads/{lead_id}), URL-unescaped
// once, or false after answering 400 naming field. It is read from the path
// as sent (ctx.Path() is already unescaped: unescaping it again would turn
// "x%2541" into "xA"), so an id may hold any byte, "/" and "%" included, as
// %2F and %25; a "/" as such after the prefix is refused.
func pathID(ctx *fasthttp.RequestCtx, prefix, field string) (string, bool) {
	raw := string(ctx.URI().PathOriginal())
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	rest, ok := strings.CutPrefix(raw, prefix)
	id, err := url.PathUnescape(rest)
	if !ok || err != nil || id == "" || strings.Contains(rest, "/") {
		httpapi.Error(ctx, fasthttp.StatusBadRequest, field+": expected "+prefix+"{"+field+"} with a URL-escaped id")
		return "", false
	}
	return id, true
}

// writeView answers 200 with view as JSON; what names it for the panic of a
// view that cannot be encoded (a bug).
func writeView(ctx *fasthttp.RequestCtx, view any, what string) {
	out, err := json.Marshal(view)
	if err != nil {
		panic("BUG: encoding " + what + " view: " + err.Error())
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
}
