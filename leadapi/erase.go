package leadapi

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/leadstream/leadstream/erasure"
	"github.com/leadstream/leadstream/internal/httpapi"
	"github.com/leadstream/leadstream/warehouse"
)

// Eraser erases a lead (erasure.Eraser).
type Eraser interface {
	Erase(ctx context.Context, leadID string, wait time.Duration) (*erasure.Result, error)
}

// Bounds of DELETE /v1/leads/{id}: the whole erasure, and the part of it
// spent waiting for ClickHouse to delete the rows (the answer is 202 when it
// has not finished by then).
const (
	eraseTimeout = time.Minute
	eraseWait    = 10 * time.Second
)

// SetEraser makes DELETE erase leads with e.
func (a *API) SetEraser(e Eraser) { a.eraser = e }

// erase answers DELETE /v1/leads/{id}: 200 with what was erased, 202 when
// ClickHouse is still deleting the rows (DELETE again to follow it), 503
// when the role cannot erase or a store failed (nothing is lost by retrying:
// an erasure is idempotent).
func (a *API) erase(ctx *fasthttp.RequestCtx, id string) {
	if a.eraser == nil {
		httpapi.Error(ctx, fasthttp.StatusServiceUnavailable, "erasure not configured on this collector: it needs clickhouse.addr and redis.addr")
		return
	}
	ectx, cancel := context.WithTimeout(context.Background(), eraseTimeout)
	defer cancel()
	res, err := a.eraser.Erase(ectx, id, eraseWait)
	if err != nil && permissionDenied(err) {
		// A retry meets the same refusal: say what to grant instead.
		httpapi.Error(ctx, fasthttp.StatusInternalServerError, "erasure refused by a store's access rights: the collector's Redis user needs leadstate.ACLEraser "+
			"(README \"Redis ACL\"; a read-only user cannot erase) and its ClickHouse user ALTER DELETE on the leadstream tables; see the collector's log")
		return
	}
	if err != nil {
		ctx.Response.Header.Set("Retry-After", "5")
		msg := "erasure failed (Redis, ClickHouse or Kafka unavailable); retry: erasing is idempotent"
		if errors.Is(err, erasure.ErrNotConfigured) {
			msg = "erasure not configured on this collector: it needs clickhouse.addr and redis.addr"
		}
		httpapi.Error(ctx, fasthttp.StatusServiceUnavailable, msg)
		return
	}
	code := fasthttp.StatusOK
	if !res.Done {
		code = fasthttp.StatusAccepted
	}
	httpapi.WriteJSON(ctx, code, res)
}

// permissionDenied reports whether err is a store refusing the role's
// rights: Redis NOPERM (an ACL user without the commands or keys), or
// ClickHouse's access denied.
func permissionDenied(err error) bool {
	return strings.Contains(err.Error(), "NOPERM") || warehouse.AccessDenied(err)
}
