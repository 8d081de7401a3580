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

// An address is read as a mail header writes it: a display name and angle
// brackets, a comment, spaces around, any case. What is not one valid
// address at a host name joins no account.
func TestEmailDomainAccountParsesAddress(t *testing.T) {
	for email, want := range map[string]string{
		"Ann <ann@Acme.example>":              "acme.example",
		`"Doe, Ann" <ann@acme.example>`:       "acme.example",
		" <ann@acme.example> ":                "acme.example",
		"Ann <ann@acme.example.>":             "acme.example",
		"ann@acme.example (Ann Doe)":          "acme.example",
		"=?utf-8?q?J=C3=BCrgen?= <j@acme.de>": "acme.de",
		"ANN@SALES.ACME.EXAMPLE":              "sales.acme.example",
		`"ann@home"@acme.example`:             "acme.example",
		"ann@münchen.example":                 "münchen.example",
		"ann@xn--mnchen-3ya.example":          "xn--mnchen-3ya.example",
		"Ann <ann@gmail.com>":                 "",
		"Ann <ann@GMAIL.com>":                 "",
		"ann@acme.example>":                   "",
		"<ann@acme.example":                   "",
		"ann@acme.example, bob@acme.example":  "",
		"ann bob@acme.example":                "",
		"ann@acme..example":                   "",
		"ann@.acme.example":                   "",
		"ann@-acme.example":                   "",
		"ann@acme_x.example":                  "",
		"ann@[192.0.2.1]":                     "",
		"ann@192.0.2.1":                       "",
		"ann@localhost":                       "",
		"ann@acme.example/x":                  "",
		"ann@@acme.example":                   "",
		"mailto:ann@acme.example":             "",
		"ann@acme.example\x00":                "",
		"ann@acme.\xffexample":                "",
		"":                                    "",
		"   ":                                 "",
		"@":                                   "",
	} {
		if got := EmailDomainAccount(email); got != want {
			t.Errorf("EmailDomainAccount(%q) = %q, want %q", email, got, want)
		}
	}
}

// The big providers' country domains are free-mail as a family ("yahoo.*"
// in freemail.txt), under any ICANN suffix of a country, .com, .net or
// .org; a company's domain that merely contains such a name is not, nor a
// family name under a private suffix or a new generic one.
func TestFreeMailFamilies(t *testing.T) {
	for d, want := range map[string]bool{
		"yahoo.com":            true,
		"yahoo.com.mx":         true,
		"yahoo.co.id":          true,
		"yahoo.co.jp":          true,
		"mail.yahoo.co.jp":     true,
		"yahoo.ne.jp":          true, // Y!mobile
		"gmx.fr":               true,
		"gmx.net":              true,
		"gmx.co.uk":            true,
		"hotmail.com.br":       true,
		"outlook.com.vn":       true,
		"live.com.au":          true,
		"aol.de":               true,
		"ymail.com":            true,
		"yandex.com.tr":        true,
		"au.com":               true, // KDDI
		"ezweb.ne.jp":          true,
		"biz.ezweb.ne.jp":      true,
		"docomo.ne.jp":         true,
		"softbank.ne.jp":       true,
		"i.softbank.jp":        true,
		"ymobile.ne.jp":        true,
		"uqmobile.jp":          true,
		"rakumail.jp":          true,
		"gmail.com":            true,
		"web.de":               true,
		"acme.example":         false,
		"yahoo.acme.com":       false,
		"outlook.acme.co.uk":   false,
		"acme-yahoo.com":       false,
		"myyahoo.com":          false,
		"yahoo.github.io":      false,
		"gmx.app":              false,
		"live.example":         false,
		"acme.com.au":          false,
		"kddi.com":             false,
		"orange.com":           false,
		"co.jp":                false,
		"com":                  false,
		"yahoo":                false,
		"":                     false,
		"web.acme.de":          false,
		"softbank.jp":          false,
		"gmail.com.acme.co.uk": false,
	} {
		if got := FreeMail(d); got != want {
			t.Errorf("FreeMail(%q) = %v, want %v", d, got, want)
		}
	}
	for _, email := range []string{"ann@yahoo.com.mx", "Ann <ann@gmx.fr>", "ann@au.com", "ANN@YAHOO.CO.ID"} {
		if got := EmailDomainAccount(email); got != "" {
			t.Errorf("EmailDomainAccount(%q) = %q, want none (free-mail)", email, got)
		}
	}
}
