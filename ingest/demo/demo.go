// Package demo is the landing site that `leadstream dev` serves under /demo/:
// a product page, a pricing page, a whitepaper form captured by the beacon, a
// plain HTML webinar form posting to /f/webinar, and a consent-mode page. It
// shows the whole loop in a browser and is what the real-browser tests drive.
package demo

import (
	"bytes"
	"embed"
	"html"
	"io/fs"
	"path"
	"strings"

	"github.com/valyala/fasthttp"
)

//go:embed site
var site embed.FS

// Prefix is where the site is mounted.
const Prefix = "/demo/"

// Handler serves the site with writeKey in its script tags and forms.
func Handler(writeKey string) fasthttp.RequestHandler {
	pages := map[string][]byte{}
	err := fs.WalkDir(site, "site", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := site.ReadFile(p)
		if err != nil {
			return err
		}
		pages[strings.TrimPrefix(p, "site/")] = bytes.ReplaceAll(b, []byte("{{WRITE_KEY}}"), []byte(html.EscapeString(writeKey)))
		return nil
	})
	if err != nil {
		panic("BUG: reading the embedded demo site: " + err.Error())
	}
	return func(ctx *fasthttp.RequestCtx) {
		name := strings.TrimPrefix(string(ctx.Path()), Prefix)
		if string(ctx.Path())+"/" == Prefix {
			ctx.Redirect(Prefix, fasthttp.StatusMovedPermanently)
			return
		}
		if name == "" {
			name = "index.html"
		}
		body, ok := pages[name]
		// POST too: the whitepaper form posts to thanks.html (the beacon
		// records it; a static page is all the demo needs behind it).
		if !ok || !(ctx.IsGet() || ctx.IsHead() || ctx.IsPost()) {
			ctx.SetStatusCode(fasthttp.StatusNotFound)
			ctx.SetContentType("text/plain; charset=utf-8")
			ctx.SetBodyString("not found\n")
			return
		}
		switch path.Ext(name) {
		case ".css":
			ctx.SetContentType("text/css; charset=utf-8")
		case ".js":
			ctx.SetContentType("text/javascript; charset=utf-8")
		default:
			ctx.SetContentType("text/html; charset=utf-8")
		}
		ctx.Response.Header.Set("Cache-Control", "no-cache")
		ctx.SetBody(body)
	}
}
