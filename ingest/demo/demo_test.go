package demo

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestHandler(t *testing.T) {
	h := Handler(`key"<x>`)
	f := func(method, path string, code int, want string) {
		t.Helper()
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetRequestURI(path)
		h(&ctx)
		if ctx.Response.StatusCode() != code || !strings.Contains(string(ctx.Response.Body()), want) {
			t.Errorf("%s %s = %d %.80q, want %d containing %q", method, path, ctx.Response.StatusCode(), ctx.Response.Body(), code, want)
		}
	}
	f("GET", "/demo/", 200, `data-key="key&#34;&lt;x&gt;"`) // the key is HTML-escaped
	f("GET", "/demo/pricing.html", 200, "<h1>Pricing</h1>")
	f("GET", "/demo/whitepaper.html", 200, `data-leadstream="whitepaper"`)
	f("GET", "/demo/webinar.html", 200, `action="/f/webinar"`)
	f("GET", "/demo/consent.html", 200, `data-consent="required"`)
	f("POST", "/demo/thanks.html", 200, "Thank you")
	f("GET", "/demo/style.css", 200, "body{")
	f("GET", "/demo/nope.html", 404, "not found")
	f("DELETE", "/demo/", 404, "not found")
	f("GET", "/demo", 301, "")
}
