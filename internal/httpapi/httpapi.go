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

// ErrorBody is the JSON answer of every refused request.
type ErrorBody struct {
	Success bool   `json:"success"`
	Error   string `json:"error"`
	Limit   string `json:"limit,omitempty"` // which limit was hit, e.g. "event_size_32KB"
}

// Error answers code with a JSON body carrying msg.
func Error(ctx *fasthttp.RequestCtx, code int, msg string) {
	WriteError(ctx, code, ErrorBody{Error: msg})
}

// WriteError answers code with b as JSON.
func WriteError(ctx *fasthttp.RequestCtx, code int, b ErrorBody) {
	out, err := json.Marshal(b)
	if err != nil {
		panic("BUG: encoding an error body: " + err.Error())
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
