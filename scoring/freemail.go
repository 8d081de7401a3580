package scoring

import (
	_ "embed"
	"strings"
)

//go:embed freemail.txt
var freemailText string

// freemail is the set of free-mail domains (freemail.txt).
var freemail = func() map[string]bool {
	out := map[string]bool{}
	for _, l := range strings.Split(freemailText, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out[l] = true
		}
	}
	return out
}()

// FreeMail reports whether domain (lower case) is a free-mail domain or a
// subdomain of one.
func FreeMail(domain string) bool {
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

// EmailDomainAccount is the account an e-mail address joins with
// accounts.from-email-domain: its domain in lower case, or "" for an address
// without one, or at a free-mail domain.
func EmailDomainAccount(email string) string {
	at := strings.LastIndexByte(email, '@')
	if at < 1 {
		return ""
	}
	// Spaces, then the root's dots ("gmail.com. " is gmail.com).
	d := strings.ToLower(strings.TrimRight(strings.TrimSpace(email[at+1:]), "."))
	if d == "" || !strings.Contains(d, ".") || strings.ContainsAny(d, " \t@/") || FreeMail(d) {
		return ""
	}
	return d
}
