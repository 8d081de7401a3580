package ingest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
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
func (c fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c fakeConn) Read([]byte) (int, error)         { return 0, io.EOF }

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

// refusedConn opens a connection over the limit of s (whose other
// connections are held open by the caller), sends req and reads the answer.
func refusedConn(t *testing.T, s *server, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.base, "http://"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// Written alongside the read: a body larger than the socket buffers is
	// taken only as the collector reads it.
	go io.WriteString(c, req)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%.40q: %v", req, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%.40q: %v", req, err)
	}
	return res, string(b)
}

// The 429 to a connection over collector.max-conns-per-ip is written by the
// listener, before fasthttp reads the request. Posted cross-origin to an
// endpoint that answers browsers, it carries the endpoint's CORS headers, so
// that ls.js and analytics.js read its status and Retry-After and wait as
// asked; without them the browser reports a network error.
func TestConnRefusalReadableCrossOrigin(t *testing.T) {
	s := startServer(t, func(c *Config) { c.MaxConnsPerIP = 1; c.WriteKeys = []string{testKey, testOtherKey} })
	held, err := net.DialTimeout("tcp", strings.TrimPrefix(s.base, "http://"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	io.WriteString(held, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, err := http.ReadResponse(bufio.NewReader(held), nil); err != nil || res.StatusCode != 200 {
		t.Fatalf("the connection within the limit: %v %v", res, err)
	}
	post := func(path string, body string, headers ...string) string {
		req := "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n"
		for _, h := range headers {
			req += h + "\r\n"
		}
		return req + "\r\n" + body
	}
	batch := `{"writeKey":"` + testKey + `","batch":[{"type":"page","anonymousId":"a-conn","pad":"` + strings.Repeat("x", 200<<10) + `"}]}`
	for _, c := range []struct {
		name, req, origin string
	}{
		// ls.js' post (a body larger than the socket buffers: it is read
		// and dropped, the answer not lost to a reset), analytics.js' post.
		{"ls.js batch", post("/v1/batch", batch, "Origin: "+crossOrigin), crossOrigin},
		{"analytics.js track", post("/v1/t", `{"event":"e","anonymousId":"a"}`, "Origin: https://elsewhere.example", "Authorization: "+mustBasic(testOtherKey)), "https://elsewhere.example"},
		{"audiences", post("/v1/audiences", "writeKey="+testKey+"&anonymousId=a", "Origin: "+crossOrigin), crossOrigin},
		{"settings", "GET /v1/projects/" + testKey + "/settings HTTP/1.1\r\nHost: x\r\nOrigin: " + crossOrigin + "\r\n\r\n", crossOrigin},
		// A form: an origin allowed for its key only.
		{"form, allowed", post("/f/contact?writeKey="+testOtherKey, "email=a%40b.example", "Origin: https://a.shop.example"), "https://a.shop.example"},
		{"form, not allowed", post("/f/contact?writeKey="+testOtherKey, "email=a%40b.example", "Origin: https://elsewhere.example"), ""},
		// No Origin (a server SDK), an endpoint that answers no browser,
		// no request at all (the headers are waited for a second).
		{"no origin", post("/v1/t", `{"event":"e","anonymousId":"a"}`, "Authorization: "+mustBasic(testKey)), ""},
		{"healthz", "GET /healthz HTTP/1.1\r\nHost: x\r\nOrigin: " + crossOrigin + "\r\n\r\n", ""},
		{"silent", "", ""},
	} {
		res, body := refusedConn(t, s, c.req)
		if res.StatusCode != 429 || res.Header.Get("Retry-After") != "1" || !strings.Contains(body, `"code":"too_many_requests"`) || !strings.Contains(body, "collector.max-conns-per-ip") {
			t.Fatalf("%s: %d Retry-After %q %s", c.name, res.StatusCode, res.Header.Get("Retry-After"), body)
		}
		h := res.Header
		if h.Get("Access-Control-Allow-Origin") != c.origin {
			t.Errorf("%s: Access-Control-Allow-Origin %q, want %q", c.name, h.Get("Access-Control-Allow-Origin"), c.origin)
		}
		if c.origin != "" && (h.Get("Access-Control-Allow-Credentials") != "true" || h.Get("Access-Control-Expose-Headers") != "Retry-After" || h.Get("Vary") != "Origin") {
			t.Errorf("%s: 429 unreadable by the page's script: %v", c.name, h)
		}
	}
	if n := counter(s.c.m.rejected.WithLabelValues("connections")); n != 9 {
		t.Errorf("rejected{connections} = %v, want 9", n)
	}
	// The lookup counts every answer of its own, this refusal too.
	if n := counter(s.c.am.lookups.WithLabelValues("rate_limit")); n != 1 {
		t.Errorf("audience lookups{rate_limit} = %v, want 1 (the refused connection's)", n)
	}
}

// rawRequest sends req on a new connection to s and reads the answer.
func rawRequest(t *testing.T, s *server, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.base, "http://"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	go io.WriteString(c, req)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%.40q: %v", req, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%.40q: %v", req, err)
	}
	return res, string(b)
}

// Headers over the collector's 16 KiB read buffer (a site's cookies, sent with
// ls.js' credentialed posts when the collector shares the site's domain)
// are refused 431 by httpError, after fasthttp emptied the headers it could
// not read whole. The 431 still carries the CORS headers the endpoint
// gives the origin, read from the copy of the request's head, so that the
// page's script reads it and drops the batch instead of retrying a network
// error for ever.
func TestHeadersTooLargeReadableCrossOrigin(t *testing.T) {
	s := startServer(t, nil)
	cookie := "Cookie: big=" + strings.Repeat("c", 17000)
	req := func(method, path string, headers ...string) string {
		r := method + " " + path + " HTTP/1.1\r\nHost: x\r\n"
		for _, h := range headers {
			r += h + "\r\n"
		}
		return r + cookie + "\r\n\r\n"
	}
	for _, c := range []struct {
		name, req, origin string
	}{
		{"ls.js batch", req("POST", "/v1/batch", "Content-Type: text/plain", "Content-Length: 0", "Origin: "+crossOrigin), crossOrigin},
		{"audiences", req("POST", "/v1/audiences", "Content-Length: 0", "Origin: "+crossOrigin), crossOrigin},
		{"form, allowed", req("POST", "/f/contact?writeKey="+testOtherKey, "Content-Length: 0", "Origin: https://a.shop.example"), "https://a.shop.example"},
		{"form, not allowed", req("POST", "/f/contact?writeKey="+testOtherKey, "Content-Length: 0", "Origin: https://elsewhere.example"), ""},
		{"no origin", req("POST", "/v1/t", "Content-Length: 0", "Authorization: "+mustBasic(testKey)), ""},
		{"healthz", req("GET", "/healthz", "Origin: "+crossOrigin), ""},
		// The Origin line after the part that fits: not known.
		{"origin beyond 16 KiB", "POST /v1/t HTTP/1.1\r\nHost: x\r\n" + cookie + "\r\nOrigin: " + crossOrigin + "\r\n\r\n", ""},
	} {
		res, body := rawRequest(t, s, c.req)
		if res.StatusCode != 431 || !strings.Contains(body, "request headers too large") {
			t.Fatalf("%s: %d %s", c.name, res.StatusCode, body)
		}
		h := res.Header
		if h.Get("Access-Control-Allow-Origin") != c.origin {
			t.Errorf("%s: Access-Control-Allow-Origin %q, want %q", c.name, h.Get("Access-Control-Allow-Origin"), c.origin)
		}
		if c.origin != "" && (h.Get("Access-Control-Allow-Credentials") != "true" || h.Get("Access-Control-Expose-Headers") != "Retry-After" || h.Get("Vary") != "Origin") {
			t.Errorf("%s: 431 unreadable by the page's script: %v", c.name, h)
		}
	}
	if got := counter(s.c.am.lookups.WithLabelValues("too_large")); got != 1 {
		t.Errorf("lookups{result=too_large} = %v, want 1", got)
	}

	// On a keep-alive connection, the head of each request is kept: the
	// second request's 431 carries CORS too.
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(s.base, "http://"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if res, err := http.ReadResponse(br, nil); err != nil || res.StatusCode != 200 {
		t.Fatalf("first request: %v %v", res, err)
	} else {
		io.ReadAll(res.Body)
	}
	go io.WriteString(conn, req("POST", "/v1/batch", "Content-Length: 0", "Origin: "+crossOrigin))
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 431 || res.Header.Get("Access-Control-Allow-Origin") != crossOrigin {
		t.Fatalf("second request: %v %v", res, err)
	}
}

// A site's cookies come with ls.js' credentialed posts when the collector
// shares the site's domain: a request head of 12 KiB (fasthttp's default
// buffer refused anything over 4 KiB with a 431, and the visitor's every
// event was lost) is accepted and its event lands.
func TestBigCookieHeaderAccepted(t *testing.T) {
	s := startServer(t, nil)
	var cookies []string
	for i := 0; len(strings.Join(cookies, "; ")) < 12<<10; i++ {
		cookies = append(cookies, fmt.Sprintf("_site_cookie_%03d=%s", i, strings.Repeat("v", 100)))
	}
	body := `{"writeKey":"` + testKey + `","batch":[{"type":"page","anonymousId":"big-cookies","messageId":"big-cookie-page","properties":{"path":"/pricing"}}]}`
	res, out := s.do(t, "POST", "/v1/batch", body, "Content-Type: text/plain", "Origin: "+crossOrigin, "Cookie: "+strings.Join(cookies, "; "))
	if res.StatusCode != 200 {
		t.Fatalf("batch with 12 KiB of cookies: %d %s", res.StatusCode, out)
	}
	found := false
	for _, e := range s.events(t) {
		found = found || e.ID == "big-cookie-page"
	}
	if !found {
		t.Fatal("the page view with 12 KiB of cookies did not land")
	}
}
