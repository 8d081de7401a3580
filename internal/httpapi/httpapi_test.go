package httpapi

import (
	"encoding/json"
	"testing"

	"github.com/valyala/fasthttp"
)

// Every refusal the collector writes has a code of the documented list: a
// 431 and a 500 were "error", which the README's list did not name.
func TestErrorCodes(t *testing.T) {
	for status, want := range map[int]string{
		400: CodeInvalidRequest, 401: CodeUnauthorized, 403: CodeForbidden, 404: CodeNotFound,
		405: CodeMethodNotAllowed, 408: CodeRequestTimeout, 413: CodePayloadTooLarge, 429: CodeTooManyRequests,
		431: "headers_too_large", 500: "internal_error", 503: CodeUnavailable, 418: CodeError,
	} {
		var ctx fasthttp.RequestCtx
		Error(&ctx, status, "why")
		var b ErrorBody
		if err := json.Unmarshal(ctx.Response.Body(), &b); err != nil {
			t.Fatalf("%d: %v: %s", status, err, ctx.Response.Body())
		}
		if b.Code != want || b.Message != "why" || b.Error != "why" {
			t.Errorf("%d answered %+v, want code %q", status, b, want)
		}
	}
}
