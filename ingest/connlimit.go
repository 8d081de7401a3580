package ingest

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leadstream/leadstream/internal/httpapi"
	"github.com/valyala/fasthttp"
)

// connLimitListener refuses a connection from an address that already holds
// max open connections (trusted proxies excepted: every client behind them
// shares their address). The refused connection gets a 429 and is closed;
// what the collector serves is never starved by one client's connections.
type connLimitListener struct {
	net.Listener
	max     int
	trusted func(netip.Addr) bool
	refused func() // counts a refusal
	// head is given a refused request's headers, when they came: it sets
	// the CORS headers of the refusal as the endpoint would
	// (Collector.earlyCORS) and counts it by endpoint; nil: nothing.
	head   func(*fasthttp.RequestCtx)
	shards [64]connShard
	// replying bounds the goroutines writing 429s to refused connections;
	// beyond it they are closed without an answer.
	replying atomic.Int32
}

type connShard struct {
	mu   sync.Mutex
	open map[[16]byte]int
}

const maxConnReplies = 64

// connRefusalMsg is the error of the 429 to a refused connection.
const connRefusalMsg = "too many open connections from this address (collector.max-conns-per-ip)"

// connReplyTime bounds each step of answering a refused connection:
// reading its request's headers, writing the answer, then reading what the
// client still sends before closing.
const connReplyTime = time.Second

// connReadBuffer is fasthttp's read buffer per connection
// (Server.ReadBufferSize), which bounds a request's head: request line and
// headers, 16 KiB. fasthttp's default, 4 KiB, refused (431) the requests of
// visitors with a site's usual cookies when the collector shares the site's
// domain (ls.js sends them: credentialed posts), and every event of theirs
// was lost; 16 KiB is Node's limit and what load balancers commonly pass
// (nginx 8 KiB per line). It is also the most of a refused connection's
// request headers read.
const connReadBuffer = 16 << 10

func newConnLimitListener(ln net.Listener, max int, trusted func(netip.Addr) bool, refused func()) *connLimitListener {
	l := &connLimitListener{Listener: ln, max: max, trusted: trusted, refused: refused}
	for i := range l.shards {
		l.shards[i].open = map[[16]byte]int{}
	}
	return l
}

// Accept returns the next connection within the limit.
func (l *connLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, perr := netip.ParseAddrPort(c.RemoteAddr().String())
		if perr != nil {
			return c, nil // not TCP/IP (a test's pipe): nothing to count
		}
		a := ap.Addr().Unmap()
		if l.trusted(a) {
			return c, nil
		}
		k := ipBucketKey(a) // IPv6: its /64, as the rate limits count it
		s := l.shard(k)
		s.mu.Lock()
		if s.open[k] >= l.max {
			s.mu.Unlock()
			l.refuse(c)
			continue
		}
		s.open[k]++
		s.mu.Unlock()
		return &limitedConn{Conn: c, release: func() { l.release(s, k) }}, nil
	}
}

func (l *connLimitListener) shard(k [16]byte) *connShard {
	return &l.shards[(k[15]^k[13]^k[7]^k[5])&63]
}

func (l *connLimitListener) release(s *connShard, k [16]byte) {
	s.mu.Lock()
	if n := s.open[k] - 1; n > 0 {
		s.open[k] = n
	} else {
		delete(s.open, k)
	}
	s.mu.Unlock()
}

func (l *connLimitListener) refuse(c net.Conn) {
	l.refused()
	if l.replying.Add(1) > maxConnReplies {
		l.replying.Add(-1)
		c.Close()
		return
	}
	go func() {
		defer l.replying.Add(-1)
		l.reply(c)
	}()
}

// reply answers a refused connection 429 + Retry-After and closes it. It
// first reads the request's headers, so that the answer carries the CORS
// headers the endpoint would give its origin: a page's script (ls.js,
// analytics.js) then reads the 429 and its Retry-After, where without them
// the browser reports a network error. A request whose headers do not come
// within connReplyTime, or are over connReadBuffer, gets the answer
// without them. After the answer, what the client still sends (a body) is
// read and dropped, for connReplyTime and MaxBodyBytes at most, before the
// connection is closed: closing it with unread data would reset it, and
// the client could lose the answer (a client that sent nothing within
// connReplyTime is not waited for again).
func (l *connLimitListener) reply(c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(connReplyTime))
	br := bufio.NewReaderSize(c, connReadBuffer)
	var ctx fasthttp.RequestCtx
	ctx.Init2(c, nil, false)
	err := ctx.Request.Header.Read(br)
	if err == nil && l.head != nil {
		l.head(&ctx)
	}
	var ne net.Error
	silent := errors.As(err, &ne) && ne.Timeout() // nothing more is coming
	ctx.Response.Header.Set("Retry-After", "1")
	ctx.Response.SetConnectionClose()
	httpapi.Error(&ctx, fasthttp.StatusTooManyRequests, connRefusalMsg)
	_ = c.SetWriteDeadline(time.Now().Add(connReplyTime))
	if _, err := ctx.Response.WriteTo(c); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok && !silent && cw.CloseWrite() == nil {
		_ = c.SetReadDeadline(time.Now().Add(connReplyTime))
		_, _ = io.Copy(io.Discard, io.LimitReader(br, MaxBodyBytes))
	}
}

// limitedConn releases its place when closed (once).
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
