package scoring

import "testing"

// A domain written with the root's dot and spaces around it is the domain
// itself: free-mail stays free-mail, a work domain its account.
func TestEmailDomainAccountTrailingDotAndSpace(t *testing.T) {
	for email, want := range map[string]string{
		"ann@gmail.com. ":    "",
		"ann@gmail.com..":    "",
		" ann@Acme.example.": "acme.example",
	} {
		if got := EmailDomainAccount(email); got != want {
			t.Errorf("EmailDomainAccount(%q) = %q, want %q", email, got, want)
		}
	}
}
