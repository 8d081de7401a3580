// Package beacon holds ls.js, the browser beacon the collector serves at
// GET /ls.js. ls.js is the readable source; ls.min.js is what is served,
// produced from it by terser (`make beacon`, pinned in e2e/package.json) and
// committed, so that neither the build nor the collector needs Node.js. The
// e2e tests check that ls.min.js is up to date and under its size budget.
package beacon

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
)

// Source is the readable beacon (for reference and tests).
//
//go:embed ls.js
var Source []byte

// Script is the minified beacon that is served.
//
//go:embed ls.min.js
var Script []byte

// Gzip is Script gzipped at the best compression, computed once.
var Gzip = gzipBytes(Script)

// ETag identifies this build of Script (strong validator).
var ETag = func() string {
	sum := sha256.Sum256(Script)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}()

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		panic("BUG: gzip writer: " + err.Error())
	}
	if _, err := zw.Write(b); err != nil {
		panic("BUG: gzip: " + err.Error())
	}
	if err := zw.Close(); err != nil {
		panic("BUG: gzip: " + err.Error())
	}
	return buf.Bytes()
}
