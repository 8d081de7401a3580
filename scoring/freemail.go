package scoring

import (
	_ "embed"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/publicsuffix"
)

//go:embed freemail.txt
var freemailText string

// freemail is the set of free-mail domains of freemail.txt, freemailFamily
// the names its "name.*" lines give.
var freemail, freemailFamily = func() (map[string]bool, map[string]bool) {
	domains, families := map[string]bool{}, map[string]bool{}
	for _, l := range strings.Split(freemailText, "\n") {
		if l = strings.TrimSpace(l); l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if name, ok := strings.CutSuffix(l, ".*"); ok {
			families[name] = true
		} else {
			domains[l] = true
		}
	}
	return domains, families
}()

// FreeMail reports whether domain (lower case) is a free-mail domain or a
// subdomain of one: listed in freemail.txt, or registered under a name the
// list gives as a family ("yahoo.*": yahoo.com.mx, mail.yahoo.co.jp) in an
// ICANN public suffix of a country, .com, .net or .org (publicsuffix: com,
// de, co.id, ne.jp, …; not a private suffix such as github.io, where anyone
// registers any name, nor a new generic one such as app).
func FreeMail(domain string) bool {
	if freemailFamilyDomain(domain) {
		return true
	}
	for d := domain; d != ""; {
		if freemail[d] {
			return true
		}
		_, rest, ok := strings.Cut(d, ".")
		if !ok {
			return false
		}
		d = rest
	}
	return false
}

// freemailFamilyDomain reports whether domain's registrable label (the one
// in front of its public suffix) names a free-mail family.
func freemailFamilyDomain(domain string) bool {
	ps, icann := publicsuffix.PublicSuffix(domain)
	if !icann || len(ps)+1 >= len(domain) || domain[len(domain)-len(ps)-1] != '.' {
		return false
	}
	switch top := ps[strings.LastIndexByte(ps, '.')+1:]; {
	case len(top) == 2, top == "com", top == "net", top == "org":
	default:
		return false
	}
	rest := domain[:len(domain)-len(ps)-1]
	return freemailFamily[rest[strings.LastIndexByte(rest, '.')+1:]]
}

// EmailDomainAccount is the account an e-mail address joins with
// accounts.from-email-domain: its domain in lower case, or "" for anything
// that is not one valid address with a host name as its domain, or an
// address at a free-mail domain. The address may be written as in a mail
// header ("Ann <ann@Acme.example>", "ann@acme.example (Ann)"), with spaces
// around it and the root's dot after the domain ("ann@acme.example.").
func EmailDomainAccount(email string) string {
	d, ok := emailDomain(email)
	if !ok || FreeMail(d) {
		return ""
	}
	return d
}

// emailDomain returns the domain of the address email (net/mail), in lower
// case without the root's dot, when it is a host name of two labels or more.
func emailDomain(email string) (string, bool) {
	s := strings.TrimSpace(email)
	if s == "" || !utf8.ValidString(s) {
		return "", false
	}
	// net/mail refuses the root's dot ("gmail.com." is gmail.com): drop it
	// at the end of the domain, bare or in angle brackets.
	if inner, ok := strings.CutSuffix(s, ">"); ok {
		s = strings.TrimRight(strings.TrimRightFunc(inner, unicode.IsSpace), ".") + ">"
	} else {
		s = strings.TrimRight(s, ".")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", false
	}
	at := strings.LastIndexByte(a.Address, '@') // a quoted local part may hold '@', the domain never
	if at < 1 {
		return "", false
	}
	d := strings.ToLower(a.Address[at+1:])
	if !hostName(d) {
		return "", false
	}
	return d, true
}

// hostName reports whether d (lower case) is a host name of two labels or
// more: labels of letters (non-ASCII ones too: internationalised names),
// digits and inner hyphens, at most 63 bytes each and 253 in all, the last
// not all digits (an IP address is no account). Domain literals
// ("[192.0.2.1]"), underscores and empty labels are not.
func hostName(d string) bool {
	if len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	var label string
	for rest := d; rest != ""; {
		label, rest, _ = strings.Cut(rest, ".")
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r == '-' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r))) {
				return false
			}
		}
	}
	return strings.TrimLeft(label, "0123456789") != "" && !strings.HasSuffix(d, ".")
}
