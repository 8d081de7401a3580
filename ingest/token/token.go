// Package token mints and verifies the signed tokens of email tracking links:
// the open pixel (GET /o/{token}.gif) and the click redirect (GET /c/{token}).
// Sending systems (an ESP integration, a mail-merge job) call Keyring.OpenURL
// and Keyring.ClickURL while rendering a message; the collector calls
// Keyring.Verify on every request, so a forged or altered token never scores
// and a click never redirects to a URL that was not signed.
//
// A token is three base64url (no padding) parts joined by dots:
//
//	KID "." base64url(JSON claims) "." base64url(HMAC-SHA256(secret, KID "." CLAIMS))
//
// The key id travels in clear so several keys can be valid at once (rotation:
// add a new key first in the list, keep the old ones until their links stop
// mattering). The MAC is checked, in constant time, before the claims are
// decoded. The JSON claims are short field names:
//
//	{"k":"o"|"c","l":LEAD,"c":CAMPAIGN,"m":MESSAGE,"u":URL,"s":SENT_AT_UNIX_SECONDS,"e":EXPIRES_UNIX_SECONDS}
//
// so other languages can mint tokens with a few lines of code (see README).
// A token expires ("e", DefaultTTL after minting unless set): an expired
// one still verifies (Verify returns its claims with ErrExpired), so a click
// still reaches its signed URL, but the collector records nothing for it.
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Kind says what a token is for; an open token is never accepted as a click.
type Kind string

// Token kinds.
const (
	Open  Kind = "o" // email-open pixel
	Click Kind = "c" // click redirect; carries the target URL
)

// MaxLen bounds a token's length; longer input is rejected before any work.
const MaxLen = 4096

// DefaultTTL is how long a token minted without an expiry stays valid: 180
// days from minting.
const DefaultTTL = 180 * 24 * time.Hour

// LegacyValidUntil: a token without "e" (minted before tokens expired)
// expires DefaultTTL after its sent_at, but not before this date, so links
// already sent keep working for a while after an upgrade.
var LegacyValidUntil = time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)

// Claims is what a token says. SentAt is when the message was sent (or
// rendered for sending); the collector flags opens and clicks that come
// sooner after it than a person could react as scanner traffic.
type Claims struct {
	Kind     Kind
	Lead     string // lead id (the sending system's id for the recipient)
	Campaign string // campaign id
	Message  string // message id (one send of one email to one lead)
	URL      string // click target; clicks only
	SentAt   time.Time
	// Expires is when the token stops counting. Sign sets it to DefaultTTL
	// from now when it is zero; Verify sets it for tokens without one (see
	// LegacyValidUntil).
	Expires time.Time
	KeyID   string // set by Verify: which key signed it
}

// Key is one signing key.
type Key struct {
	ID     string
	Secret []byte
}

// Keyring signs with its first key and verifies with any of them.
type Keyring struct {
	keys  []Key
	pools map[string]*sync.Pool // key id -> HMAC states keyed with its secret
}

// ParseKeys parses "kid:secret,kid2:secret2" (LEADSTREAM_TOKEN_KEYS). Key ids
// are 1–32 characters of [A-Za-z0-9_-]; secrets must be at least 16 bytes.
func ParseKeys(s string) ([]Key, error) {
	var keys []Key
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, secret, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("%w: want kid:secret, got an entry without ':'", ErrBadKey)
		}
		keys = append(keys, Key{ID: id, Secret: []byte(secret)})
	}
	return keys, nil
}

// NewKeyring checks keys; the first one signs.
func NewKeyring(keys ...Key) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	seen := map[string]int{}
	for i, k := range keys {
		// Keys are named by position, never by id: a key written
		// SECRET:ID puts the secret where the id belongs.
		if !validKeyID(k.ID) {
			return nil, fmt.Errorf("%w: key %d: its id (the part before the first ':') is not 1-32 characters of A-Z a-z 0-9 _ - (is it written SECRET:ID instead of ID:SECRET?)", ErrBadKey, i+1)
		}
		if len(k.Secret) < 16 {
			return nil, fmt.Errorf("%w: key %d: the secret (the part after the first ':') must be at least 16 bytes (is the key written SECRET:ID instead of ID:SECRET?)", ErrBadKey, i+1)
		}
		if j, ok := seen[k.ID]; ok {
			return nil, fmt.Errorf("%w: keys %d and %d have the same id", ErrBadKey, j+1, i+1)
		}
		seen[k.ID] = i
	}
	k := &Keyring{keys: append([]Key(nil), keys...), pools: map[string]*sync.Pool{}}
	for _, key := range k.keys {
		k.pools[key.ID] = &sync.Pool{}
	}
	return k, nil
}

func validKeyID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// wire is the JSON form of Claims.
type wire struct {
	Kind     Kind   `json:"k"`
	Lead     string `json:"l"`
	Campaign string `json:"c,omitempty"`
	Message  string `json:"m"`
	URL      string `json:"u,omitempty"`
	SentAt   int64  `json:"s,omitempty"`
	Expires  int64  `json:"e,omitempty"`
}

// Strict: a token has one spelling (the last character's unused bits zero),
// so its text, which names its event, cannot be varied to count a link again.
var b64 = base64.RawURLEncoding.Strict()

// Sign returns the token for c, signed with the first key. A zero
// c.Expires is DefaultTTL from now.
func (k *Keyring) Sign(c Claims) (string, error) {
	if err := c.check(); err != nil {
		return "", err
	}
	w := wire{Kind: c.Kind, Lead: c.Lead, Campaign: c.Campaign, Message: c.Message, URL: c.URL}
	if !c.SentAt.IsZero() {
		w.SentAt = c.SentAt.Unix()
	}
	if c.Expires.IsZero() {
		c.Expires = time.Now().Add(DefaultTTL)
	}
	if w.Expires = c.Expires.Unix(); w.Expires <= 0 {
		return "", fmt.Errorf("%w: expiry %v is not after 1970", ErrBadClaims, c.Expires)
	}
	payload, err := json.Marshal(w)
	if err != nil {
		panic("BUG: encoding token claims: " + err.Error())
	}
	key := k.keys[0]
	signed := key.ID + "." + b64.EncodeToString(payload)
	tok := signed + "." + b64.EncodeToString(mac(key.Secret, signed))
	if len(tok) > MaxLen {
		return "", fmt.Errorf("%w: token would be %d bytes, over %d", ErrBadClaims, len(tok), MaxLen)
	}
	return tok, nil
}

// OpenURL returns base + "/o/{token}.gif" for an open pixel.
func (k *Keyring) OpenURL(base string, c Claims) (string, error) {
	c.Kind = Open
	tok, err := k.Sign(c)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(base, "/") + "/o/" + tok + ".gif", nil
}

// ClickURL returns base + "/c/{token}", which redirects to c.URL.
func (k *Keyring) ClickURL(base string, c Claims) (string, error) {
	c.Kind = Click
	tok, err := k.Sign(c)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(base, "/") + "/c/" + tok, nil
}

// Verify is VerifyAt now.
func (k *Keyring) Verify(tok string) (Claims, error) {
	return k.VerifyAt(tok, time.Now())
}

// VerifyAt checks tok's signature and returns its claims. Errors wrap
// ErrMalformed, ErrUnknownKey, ErrBadSignature or ErrBadClaims, and then
// the claims are zero; or the error is ErrExpired (the token expired before
// now), and then the claims are the token's, signed and checked.
func (k *Keyring) VerifyAt(tok string, now time.Time) (Claims, error) {
	if len(tok) > MaxLen {
		return Claims{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, MaxLen)
	}
	kid, rest, ok1 := strings.Cut(tok, ".")
	payloadB64, sigB64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sigB64, ".") {
		return Claims{}, fmt.Errorf("%w: want KID.CLAIMS.SIGNATURE", ErrMalformed)
	}
	sig, err := b64.DecodeString(sigB64)
	if err != nil || len(sig) != sha256.Size {
		return Claims{}, fmt.Errorf("%w: signature is not base64url of 32 bytes", ErrMalformed)
	}
	var key *Key
	for i := range k.keys {
		if k.keys[i].ID == kid {
			key = &k.keys[i]
			break
		}
	}
	if key == nil {
		return Claims{}, ErrUnknownKey
	}
	var sum [sha256.Size]byte
	if !hmac.Equal(sig, k.mac(key, tok[:len(kid)+1+len(payloadB64)], sum[:0])) {
		return Claims{}, ErrBadSignature
	}
	// Only signed bytes are decoded from here on.
	payload, err := b64.DecodeString(payloadB64)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: claims are not base64url", ErrMalformed)
	}
	w, ok := parseWire(payload)
	if !ok {
		if err := json.Unmarshal(payload, &w); err != nil {
			return Claims{}, fmt.Errorf("%w: claims are not JSON", ErrMalformed)
		}
	}
	c := Claims{Kind: w.Kind, Lead: w.Lead, Campaign: w.Campaign, Message: w.Message, URL: w.URL, KeyID: kid}
	if w.SentAt != 0 {
		c.SentAt = time.Unix(w.SentAt, 0).UTC()
	}
	if err := c.check(); err != nil {
		return Claims{}, err
	}
	if w.Expires != 0 {
		c.Expires = time.Unix(w.Expires, 0).UTC()
	} else {
		c.Expires = LegacyValidUntil
		if !c.SentAt.IsZero() && c.SentAt.Add(DefaultTTL).After(c.Expires) {
			c.Expires = c.SentAt.Add(DefaultTTL)
		}
	}
	if !now.Before(c.Expires) {
		return c, ErrExpired
	}
	return c, nil
}

// check enforces what the collector relies on, at mint time and again at
// verify time (a key holder could sign anything).
func (c *Claims) check() error {
	switch {
	case c.Kind != Open && c.Kind != Click:
		return fmt.Errorf("%w: kind must be open or click", ErrBadClaims)
	case strings.TrimSpace(c.Lead) == "" || len(c.Lead) > 256:
		return fmt.Errorf("%w: lead is required (at most 256 bytes)", ErrBadClaims)
	case strings.TrimSpace(c.Message) == "" || len(c.Message) > 256:
		return fmt.Errorf("%w: message is required (at most 256 bytes)", ErrBadClaims)
	case len(c.Campaign) > 256:
		return fmt.Errorf("%w: campaign is longer than 256 bytes", ErrBadClaims)
	case c.Kind == Open && c.URL != "":
		return fmt.Errorf("%w: an open token carries no URL", ErrBadClaims)
	case c.Kind == Click:
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(c.URL) > 2048 {
			return fmt.Errorf("%w: a click needs an absolute http(s) URL of at most 2048 bytes", ErrBadClaims)
		}
	}
	return nil
}

func mac(secret []byte, signed string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(signed))
	return h.Sum(nil)
}

// mac appends the MAC of signed under key to dst, with a pooled HMAC state
// of the key (setting one up hashes the secret twice).
func (k *Keyring) mac(key *Key, signed string, dst []byte) []byte {
	pool := k.pools[key.ID]
	h, _ := pool.Get().(hash.Hash)
	if h == nil {
		h = hmac.New(sha256.New, key.Secret)
	}
	h.Reset()
	io.WriteString(h, signed)
	dst = h.Sum(dst)
	pool.Put(h)
	return dst
}

// parseWire decodes claims as Sign writes them: an object of the known keys,
// each at most once, with strings of printable ASCII without escapes and an
// integer "s" and "e". It gives what encoding/json gives for such input; ok is false
// for anything else, which is left to encoding/json.
func parseWire(b []byte) (w wire, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return w, false
	}
	var seen [7]bool
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return w, skipSpace(b, i+1) == len(b)
	}
	for {
		key, next, ok := plainString(b, i)
		if !ok {
			return w, false
		}
		i = skipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return w, false
		}
		i = skipSpace(b, i+1)
		if len(key) != 1 {
			return w, false
		}
		f := strings.IndexByte("klcmuse", key[0])
		if f < 0 || seen[f] {
			return w, false
		}
		seen[f] = true
		if key == "s" || key == "e" {
			j := i
			if j < len(b) && b[j] == '-' {
				j++
			}
			d := j
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			if j == d || j-d > 18 || (b[d] == '0' && j-d > 1) || (j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E')) {
				return w, false
			}
			n, err := strconv.ParseInt(string(b[i:j]), 10, 64)
			if err != nil {
				return w, false
			}
			if key == "s" {
				w.SentAt = n
			} else {
				w.Expires = n
			}
			i = j
		} else {
			v, next, ok := plainString(b, i)
			if !ok {
				return w, false
			}
			switch key {
			case "k":
				w.Kind = Kind(v)
			case "l":
				w.Lead = v
			case "c":
				w.Campaign = v
			case "m":
				w.Message = v
			case "u":
				w.URL = v
			}
			i = next
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return w, false
		}
		if b[i] == '}' {
			return w, skipSpace(b, i+1) == len(b)
		}
		if b[i] != ',' {
			return w, false
		}
		i = skipSpace(b, i+1)
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the JSON string at b[i] when it holds only printable
// ASCII and no escape, returning it and the index past its closing quote.
func plainString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return string(b[i+1 : j]), j + 1, true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return "", i, false
		}
	}
	return "", i, false
}
