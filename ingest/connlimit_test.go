package ingest

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// fakeListener hands out connections from the addresses in its queue.
type fakeListener struct {
	addrs []string
}

type fakeConn struct {
	net.Conn
	remote net.Addr
}

func (c fakeConn) RemoteAddr() net.Addr { return c.remote }
func (c fakeConn) Close() error         { return nil }
func (c fakeConn) Write(p []byte) (int, error) {
	return len(p), nil
}
func (c fakeConn) SetWriteDeadline(time.Time) error { return nil }

func (l *fakeListener) Accept() (net.Conn, error) {
	if len(l.addrs) == 0 {
		return nil, net.ErrClosed
	}
	a := l.addrs[0]
	l.addrs = l.addrs[1:]
	return fakeConn{remote: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(a))}, nil
}
func (l *fakeListener) Close() error   { return nil }
func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{} }

// The connection limit counts an IPv6 client by its /64, as the rate limits
// do: a host choosing new addresses from its /64 gets no more connections.
func TestConnLimitIPv6Per64(t *testing.T) {
	fl := &fakeListener{addrs: []string{
		"[2001:db8:1:2::1]:1000", "[2001:db8:1:2::2]:1001", "[2001:db8:1:2:ffff::9]:1002", // one /64: the third is over
		"[2001:db8:1:3::1]:1003",                 // another /64
		"198.51.100.7:1004", "198.51.100.8:1005", // IPv4: per address
	}}
	refused := 0
	l := newConnLimitListener(fl, 2, func(netip.Addr) bool { return false }, func() { refused++ })
	var accepted []string
	for {
		c, err := l.Accept()
		if err != nil {
			break
		}
		accepted = append(accepted, c.RemoteAddr().String())
	}
	if refused != 1 || len(accepted) != 5 {
		t.Fatalf("accepted %v, refused %d; want the third connection of the /64 refused", accepted, refused)
	}
	if n := l.openFrom(netip.MustParseAddr("2001:db8:1:2::77")); n != 2 {
		t.Errorf("open from the /64: %d, want 2", n)
	}
}
