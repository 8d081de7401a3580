package ingest

import (
	"bufio"
	"bytes"
	"net"
	"sync"

	"github.com/valyala/fasthttp"
)

// A request whose headers are over fasthttp's read buffer (Server.
// ReadBufferSize, 16 KiB, connReadBuffer: cookies of a site the collector
// shares a domain with, typically) is refused 431 by httpError, but fasthttp empties the
// request's headers and releases its read buffer before it calls httpError:
// neither the path nor the Origin is known there, so the 431 could not carry
// the CORS headers the endpoint would give, and a page's script saw a
// network error (ls.js retries one for ever). headConn keeps a copy of the
// head of each request as it is read, until the end of its headers, so that
// httpError can read the path and the header lines that fit (Origin, and
// Authorization for a form, come before the Cookie line that overflows in
// browsers' requests).

// captureListener wraps each accepted connection in a headConn.
type captureListener struct {
	net.Listener
}

func (l captureListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &headConn{Conn: c, capturing: true}, nil
}

// headConn copies the bytes read of a request's head, up to connReadBuffer,
// until its header block ends. Reads and nextRequest are called by the one
// goroutine serving the connection.
type headConn struct {
	net.Conn
	head      *[]byte // nil until the request's first bytes arrive
	capturing bool
}

var headPool = sync.Pool{New: func() any { b := make([]byte, 0, connReadBuffer); return &b }}

func (c *headConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.capturing && n > 0 {
		c.capture(p[:n])
	}
	return n, err
}

var headEnd = []byte("\r\n\r\n")

// capture keeps p, what was read of the request's head, until the end of
// its header block: a request whose headers come in one read (the common
// case) is not copied at all.
func (c *headConn) capture(p []byte) {
	var h []byte
	if c.head != nil {
		h = *c.head
	}
	p = p[:min(len(p), connReadBuffer-len(h))] // beyond, fasthttp refuses the request
	whole := bytes.Contains(p, headEnd)
	if !whole && len(h) > 0 {
		// The end of the block may straddle two reads.
		var edge [6]byte
		n := copy(edge[:], h[max(len(h)-3, 0):])
		n += copy(edge[n:], p[:min(len(p), 3)])
		whole = bytes.Contains(edge[:n], headEnd)
	}
	if whole {
		// The headers are whole: fasthttp reads them itself.
		c.release()
		c.capturing = false
		return
	}
	if c.head == nil {
		c.head = headPool.Get().(*[]byte)
	}
	*c.head = append(*c.head, p...)
	if len(*c.head) == connReadBuffer {
		c.capturing = false // what fasthttp refuses as too large
	}
}

func (c *headConn) release() {
	if c.head != nil {
		*c.head = (*c.head)[:0]
		headPool.Put(c.head)
		c.head = nil
	}
}

// nextRequest starts the copy of the next request's head; the handler of
// the current one calls it (its request is read whole by then).
func (c *headConn) nextRequest() {
	c.release()
	c.capturing = true
}

// nextRequest is headConn.nextRequest for the connection of ctx, if it has one.
func nextRequest(ctx *fasthttp.RequestCtx) {
	if c, ok := ctx.Conn().(*headConn); ok {
		c.nextRequest()
	}
}

// restoreHead sets the request headers of ctx, which fasthttp could not
// read whole (ErrSmallBuffer), to the complete header lines of the copy of
// its head: the request line and the lines that fit in the read buffer.
// It reports whether it could: not when the request line alone does not
// fit, or the connection keeps no copy.
func restoreHead(ctx *fasthttp.RequestCtx) bool {
	c, ok := ctx.Conn().(*headConn)
	if !ok || c.head == nil {
		return false
	}
	h := *c.head
	end := bytes.LastIndex(h, []byte("\r\n"))
	if end < 0 {
		return false
	}
	block := make([]byte, 0, end+4)
	block = append(append(block, h[:end]...), "\r\n\r\n"...)
	c.release()
	var hdr fasthttp.RequestHeader
	if err := hdr.Read(bufio.NewReaderSize(bytes.NewReader(block), len(block)+16)); err != nil {
		return false
	}
	hdr.CopyTo(&ctx.Request.Header)
	ctx.Request.SetRequestURIBytes(hdr.RequestURI()) // parsed again from it
	return true
}
