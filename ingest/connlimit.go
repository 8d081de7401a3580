package ingest

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
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
	shards  [64]connShard
	// replying bounds the goroutines writing 429s to refused connections;
	// beyond it they are closed without an answer.
	replying atomic.Int32
}

type connShard struct {
	mu   sync.Mutex
	open map[[16]byte]int
}

const maxConnReplies = 64

// connRefusal is the whole answer to a refused connection.
var connRefusal = func() []byte {
	body := `{"success":false,"error":"too many open connections from this address (collector.max-conns-per-ip)","code":"too_many_requests","message":"too many open connections from this address (collector.max-conns-per-ip)"}`
	return []byte("HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

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
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(connRefusal)
		c.Close()
	}()
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
