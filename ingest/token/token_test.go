package token

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func keyring(t testing.TB, keys ...string) *Keyring {
	t.Helper()
	ks, err := ParseKeys(strings.Join(keys, ","))
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKeyring(ks...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRoundTripAndRotation(t *testing.T) {
	old := keyring(t, "k1:0123456789abcdef-old")
	sent := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	c := Claims{Kind: Click, Lead: "lead-1", Campaign: "spring", Message: "msg-1", URL: "https://acme.example/pricing?utm_source=email", SentAt: sent,
		Expires: time.Now().Add(time.Hour).Truncate(time.Second).UTC()}
	tok, err := old.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	// After rotation the new key signs and the old one still verifies.
	rotated := keyring(t, "k2:0123456789abcdef-new", "k1:0123456789abcdef-old")
	got, err := rotated.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	c.KeyID = "k1"
	if got != c {
		t.Fatalf("verify = %+v, want %+v", got, c)
	}
	tok2, _ := rotated.Sign(c)
	if !strings.HasPrefix(tok2, "k2.") {
		t.Fatalf("the first key must sign: %s", tok2)
	}
	// Retired key: unknown.
	if _, err := keyring(t, "k2:0123456789abcdef-new").Verify(tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("retired key: %v", err)
	}
	u, err := rotated.OpenURL("https://t.acme.example/", Claims{Lead: "l", Message: "m"})
	if err != nil || !strings.HasPrefix(u, "https://t.acme.example/o/k2.") || !strings.HasSuffix(u, ".gif") {
		t.Fatalf("OpenURL = %q, %v", u, err)
	}
	u, err = rotated.ClickURL("https://t.acme.example", c)
	if err != nil || !strings.HasPrefix(u, "https://t.acme.example/c/k2.") {
		t.Fatalf("ClickURL = %q, %v", u, err)
	}
}

// Tokens expire: DefaultTTL after minting unless the sender says otherwise;
// an expired token still verifies, with ErrExpired. Tokens minted before
// tokens expired (no "e") last DefaultTTL from their sent_at, and at least
// until LegacyValidUntil.
func TestExpiry(t *testing.T) {
	k := keyring(t, "k1:0123456789abcdef")
	before := time.Now()
	tok, err := k.Sign(Claims{Kind: Open, Lead: "l", Message: "m"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := k.Verify(tok)
	if err != nil || c.Expires.Before(before.Add(DefaultTTL).Truncate(time.Second)) || c.Expires.After(time.Now().Add(DefaultTTL)) {
		t.Fatalf("default expiry: %v %v, want %v from now", c.Expires, err, DefaultTTL)
	}
	exp := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	tok, err = k.Sign(Claims{Kind: Click, Lead: "l", Message: "m", URL: "https://acme.example/", Expires: exp})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := k.VerifyAt(tok, exp.Add(-time.Second)); err != nil || !c.Expires.Equal(exp) {
		t.Errorf("before expiry: %+v %v", c, err)
	}
	c, err = k.VerifyAt(tok, exp)
	if !errors.Is(err, ErrExpired) || c.URL != "https://acme.example/" || c.Lead != "l" {
		t.Errorf("at expiry: %+v %v, want the claims with ErrExpired", c, err)
	}
	// Legacy tokens, signed as before: no "e".
	legacy := func(payload string) string {
		signed := "k1." + b64.EncodeToString([]byte(payload))
		return signed + "." + b64.EncodeToString(mac([]byte("0123456789abcdef"), signed))
	}
	sent := LegacyValidUntil.Add(-DefaultTTL / 2)
	for _, c := range []struct {
		payload string
		want    time.Time
	}{
		{`{"k":"o","l":"l","m":"m"}`, LegacyValidUntil},
		{`{"k":"o","l":"l","m":"m","s":1700000000}`, LegacyValidUntil},
		{`{"k":"o","l":"l","m":"m","s":` + fmt.Sprint(sent.Unix()) + `}`, sent.Add(DefaultTTL)},
	} {
		got, err := k.VerifyAt(legacy(c.payload), c.want.Add(-time.Second))
		if err != nil || !got.Expires.Equal(c.want) {
			t.Errorf("%s: expires %v (%v), want %v", c.payload, got.Expires, err, c.want)
		}
		if _, err := k.VerifyAt(legacy(c.payload), c.want); !errors.Is(err, ErrExpired) {
			t.Errorf("%s at %v: %v, want ErrExpired", c.payload, c.want, err)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	k := keyring(t, "k1:0123456789abcdef")
	tok, err := k.Sign(Claims{Kind: Click, Lead: "lead-1", Message: "m", URL: "https://acme.example/"})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := keyring(t, "k1:fedcba9876543210").Sign(Claims{Kind: Click, Lead: "lead-1", Message: "m", URL: "https://evil.example/"})
	kid, rest, _ := strings.Cut(tok, ".")
	payload, sig, _ := strings.Cut(rest, ".")
	otherPayload := strings.Split(other, ".")[1]
	f := func(in string, want error) {
		t.Helper()
		if _, err := k.Verify(in); !errors.Is(err, want) {
			t.Errorf("Verify(%.40q) = %v, want %v", in, err, want)
		}
	}
	f("", ErrMalformed)
	f("abc", ErrMalformed)
	f(tok+".x", ErrMalformed)
	f(kid+"."+payload+"."+sig[:len(sig)-2], ErrMalformed)
	f("k9."+payload+"."+sig, ErrUnknownKey)
	f(other, ErrBadSignature)                                     // right kid, wrong secret (forged)
	f(kid+"."+otherPayload+"."+sig, ErrBadSignature)              // URL swapped (altered)
	f(kid+"."+payload[:len(payload)-1]+"A."+sig, ErrBadSignature) // one character changed
	f(strings.Repeat("a", MaxLen+1), ErrMalformed)
	// Another spelling of the same signature bytes (the last character's
	// unused bits set) is refused: a token's text names its event.
	want, _ := base64.RawURLEncoding.DecodeString(sig)
	variants := 0
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		v := sig[:len(sig)-1] + string(c)
		if got, err := base64.RawURLEncoding.DecodeString(v); err != nil || v == sig || !bytes.Equal(got, want) {
			continue
		}
		variants++
		f(kid+"."+payload+"."+v, ErrMalformed)
	}
	if variants == 0 {
		t.Fatal("no other spelling of the signature: the check above tested nothing")
	}

	mint := func(c Claims) error { _, err := k.Sign(c); return err }
	for _, c := range []Claims{
		{Kind: Click, Lead: "l", Message: "m", URL: "javascript:alert(1)"},
		{Kind: Click, Lead: "l", Message: "m", URL: "//evil.example/"},
		{Kind: Click, Lead: "l", Message: "m"},
		{Kind: Open, Lead: "", Message: "m"},
		{Kind: Open, Lead: "l", Message: ""},
		{Kind: "x", Lead: "l", Message: "m"},
	} {
		if err := mint(c); !errors.Is(err, ErrBadClaims) {
			t.Errorf("Sign(%+v) = %v, want ErrBadClaims", c, err)
		}
	}
}

func TestKeys(t *testing.T) {
	f := func(in string, ok bool) {
		t.Helper()
		ks, err := ParseKeys(in)
		if err == nil {
			_, err = NewKeyring(ks...)
		}
		if (err == nil) != ok {
			t.Errorf("keys %q: err = %v, want ok=%v", in, err, ok)
		}
	}
	f("k1:0123456789abcdef", true)
	f(" k1:0123456789abcdef , k2:0123456789abcdef:with-colon ", true)
	f("", false)
	f("k1:short", false)
	f("k1", false)
	f("bad id:0123456789abcdef", false)
	f("k1:0123456789abcdef,k1:0123456789abcdeg", false)
}

// FuzzVerify feeds arbitrary tokens to Verify: it must never panic, and
// anything it accepts must carry valid claims and re-sign to the same token.
func FuzzVerify(f *testing.F) {
	k := keyring(f, "k1:0123456789abcdef", "k0:fedcba9876543210")
	for _, c := range []Claims{
		{Kind: Open, Lead: "lead-1", Campaign: "c", Message: "m", SentAt: time.Unix(1_800_000_000, 0)},
		{Kind: Click, Lead: "l", Message: "m", URL: "https://acme.example/x?y=1#z"},
	} {
		tok, err := k.Sign(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	f.Add("k1..")
	f.Add("k1.e30.AAAA")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := k.Verify(tok)
		if errors.Is(err, ErrExpired) {
			err = nil // its claims are returned, checked as any others
		}
		if err != nil {
			return
		}
		if err := c.check(); err != nil {
			t.Fatalf("accepted invalid claims %+v: %v", c, err)
		}
		if c.KeyID != "k1" && c.KeyID != "k0" {
			t.Fatalf("accepted unknown key %q", c.KeyID)
		}
	})
}
