// Package httpapi holds what every HTTP endpoint of leadstream answers
// alike: JSON error bodies, and the credentials a request carries (an HTTP
// Basic user name or a Bearer token). The collector (package ingest) and the
// read APIs it mounts (package leadapi) share it.
package httpapi

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"

	"github.com/valyala/fasthttp"
)

// ErrorBody is the JSON answer of every refused request. Error and Message
// say the same: "error" is leadstream's field, "code" and "message" are the
// ones Segment's API answers and some SDKs read (analytics-python retries a
// 4xx whose body lacks them, as if the network had failed).
type ErrorBody struct {
	Success bool   `json:"success"`
	Error   string `json:"error"`
	Code    string `json:"code"`            // Code* below; WriteError fills it from the status when empty
	Message string `json:"message"`         // Error again; WriteError fills it when empty
	Limit   string `json:"limit,omitempty"` // which limit was hit, e.g. "event_size_32KB"
}

// Error codes of ErrorBody.Code, one per status the APIs answer.
const (
	CodeInvalidRequest   = "invalid_request"    // 400
	CodeUnauthorized     = "unauthorized"       // 401
	CodeForbidden        = "forbidden"          // 403
	CodeNotFound         = "not_found"          // 404
	CodeMethodNotAllowed = "method_not_allowed" // 405
	CodeRequestTimeout   = "request_timeout"    // 408
	CodePayloadTooLarge  = "payload_too_large"  // 413
	CodeTooManyRequests  = "too_many_requests"  // 429
	CodeUnavailable      = "unavailable"        // 503
	CodeHeadersTooLarge  = "headers_too_large"  // 431
	CodeInternal         = "internal_error"     // 500
	CodeError            = "error"              // any other status
)

// CodeOf is the ErrorBody.Code of an HTTP status.
func CodeOf(status int) string {
	switch status {
	case fasthttp.StatusBadRequest:
		return CodeInvalidRequest
	case fasthttp.StatusUnauthorized:
		return CodeUnauthorized
	case fasthttp.StatusForbidden:
		return CodeForbidden
	case fasthttp.StatusNotFound:
		return CodeNotFound
	case fasthttp.StatusMethodNotAllowed:
		return CodeMethodNotAllowed
	case fasthttp.StatusRequestTimeout:
		return CodeRequestTimeout
	case fasthttp.StatusRequestEntityTooLarge:
		return CodePayloadTooLarge
	case fasthttp.StatusTooManyRequests:
		return CodeTooManyRequests
	case fasthttp.StatusServiceUnavailable:
		return CodeUnavailable
	case fasthttp.StatusRequestHeaderFieldsTooLarge:
		return CodeHeadersTooLarge
	case fasthttp.StatusInternalServerError:
		return CodeInternal
	}
	return CodeError
}

// Error answers code with a JSON body carrying msg.
func Error(ctx *fasthttp.RequestCtx, code int, msg string) {
	WriteError(ctx, code, ErrorBody{Error: msg})
}

// WriteError answers code with b as JSON, its Code and Message filled in
// when empty.
func WriteError(ctx *fasthttp.RequestCtx, code int, b ErrorBody) {
	b.Fill(code)
	WriteJSON(ctx, code, b)
}

// Fill sets the Code (from status) and Message (from Error) of b when
// empty, for answers that embed an ErrorBody in a larger body.
func (b *ErrorBody) Fill(status int) {
	if b.Code == "" {
		b.Code = CodeOf(status)
	}
	if b.Message == "" {
		b.Message = b.Error
	}
}

// WriteJSON answers code with v encoded as JSON.
func WriteJSON(ctx *fasthttp.RequestCtx, code int, v any) {
	out, err := json.Marshal(v)
	if err != nil {
		panic("BUG: encoding an answer: " + err.Error())
	}
	ctx.SetStatusCode(code)
	ctx.SetContentType("application/json")
	ctx.SetBody(out)
}

// BasicAuth parses an HTTP Basic Authorization header.
func BasicAuth(ctx *fasthttp.RequestCtx) (user, pass string, ok bool) {
	h := ctx.Request.Header.Peek("Authorization")
	const prefix = "Basic "
	if len(h) < len(prefix) || !bytes.EqualFold(h[:len(prefix)], []byte(prefix)) {
		return "", "", false
	}
	dec, err := base64.StdEncoding.DecodeString(string(h[len(prefix):]))
	if err != nil {
		return "", "", false
	}
	u, p, found := bytes.Cut(dec, []byte(":"))
	if !found {
		return string(dec), "", true
	}
	return string(u), string(p), true
}

// HasSecret reports whether the request carries secret as its HTTP Basic
// user name or as a Bearer token, compared in constant time. An empty
// secret is never matched.
func HasSecret(ctx *fasthttp.RequestCtx, secret string) bool {
	if secret == "" {
		return false
	}
	got := ""
	if user, _, ok := BasicAuth(ctx); ok {
		got = user
	} else if h := ctx.Request.Header.Peek("Authorization"); len(h) > 7 && bytes.EqualFold(h[:7], []byte("Bearer ")) {
		got = string(h[7:])
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(secret)) == 1
}
