package ingest

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/valyala/fasthttp"
)

// parseTrustedProxies parses collector.trusted-proxies: comma-separated
// networks (CIDR) or single addresses.
func parseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if p, err := netip.ParsePrefix(part); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("collector.trusted-proxies: %q is neither a network (10.0.0.0/8) nor an address", part)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// allAddresses is what the deprecated collector.trust-forwarded trusts.
var allAddresses = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// trusted reports whether a is one of the trusted proxies.
func (c *Collector) trusted(a netip.Addr) bool {
	for _, p := range c.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// remoteAddr is the address of the connection the request came on.
func remoteAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	if ta, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	a, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return a.Unmap()
}

// clientAddr is the client's address: the connection's, unless that is a
// trusted proxy; then the rightmost address of X-Forwarded-For that is not a
// trusted proxy (each proxy appends the address it got the request from, so
// everything left of the last untrusted hop may be made up by the client).
// When every hop is trusted, the leftmost one.
func (c *Collector) clientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	remote := remoteAddr(ctx)
	if len(c.proxies) == 0 || !c.trusted(remote) {
		return remote
	}
	var hops [][]byte
	for _, h := range ctx.Request.Header.PeekAll("X-Forwarded-For") {
		hops = append(hops, bytes.Split(h, []byte{','})...)
	}
	client := remote
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			return client // a proxy does not write that: what is left of it is not to be trusted
		}
		client = a
		if !c.trusted(a) {
			return a
		}
	}
	return client
}

// parseHop reads one X-Forwarded-For entry: an address, maybe with a port.
func parseHop(h []byte) (netip.Addr, bool) {
	s := string(bytes.TrimSpace(h))
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	if a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// forwardedHTTPS reports whether a trusted proxy says the client used https.
func (c *Collector) forwardedHTTPS(ctx *fasthttp.RequestCtx) bool {
	return len(c.proxies) > 0 && c.trusted(remoteAddr(ctx)) &&
		strings.EqualFold(string(ctx.Request.Header.Peek("X-Forwarded-Proto")), "https")
}
