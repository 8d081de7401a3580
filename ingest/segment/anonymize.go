package segment

import (
	"encoding/json"
	"net"
	"net/netip"
	"strings"
)

// AnonymizeIP cuts an address to its network, as kept when
// collector.ip-anonymize is on: IPv4 to its /24 (198.51.100.7 → 198.51.100.0),
// IPv6 to its /48 (2001:db8:1:2::7 → 2001:db8:1::). IPv4-mapped IPv6 counts as
// IPv4; a port is dropped. What is not an address (one with a zone included)
// gives "": nothing of it is kept.
func AnonymizeIP(s string) string {
	if s == "" {
		return ""
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		host, _, serr := net.SplitHostPort(s)
		if serr != nil {
			return ""
		}
		if a, err = netip.ParseAddr(host); err != nil {
			return ""
		}
	}
	if a.Zone() != "" {
		return ""
	}
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits) // a valid address without zone: cannot fail
	return p.Addr().String()
}

// mayHaveIPKey reports whether the JSON object raw may have a member whose
// key a decoder takes for "ip" (any case, or written with escapes): a cheap
// test before anonymizeContextIP rebuilds it.
func mayHaveIPKey(raw []byte) bool {
	for i := 0; i+3 < len(raw); i++ {
		if raw[i] == '"' && raw[i+1]|0x20 == 'i' && raw[i+2]|0x20 == 'p' && raw[i+3] == '"' {
			return true
		}
		if raw[i] == '\\' && raw[i+1] == 'u' {
			return true
		}
	}
	return false
}

// anonymizeContextIP returns the context object raw (valid JSON) with its ip
// anonymized: every member whose key a decoder takes for "ip" (any case) is
// dropped, and "ip" with AnonymizeIP(ip) — the value the decoder read — is
// added last, unless it is empty.
func anonymizeContextIP(raw json.RawMessage, ip string) json.RawMessage {
	out := make([]byte, 0, len(raw))
	out = append(out, '{')
	eachMember(raw, func(key string, member []byte) {
		if strings.EqualFold(key, "ip") {
			return
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, member...)
	})
	if a := AnonymizeIP(ip); a != "" {
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(append(append(out, `"ip":"`...), a...), '"')
	}
	return append(out, '}')
}
