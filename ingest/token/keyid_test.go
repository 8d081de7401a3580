package token

import (
	"strings"
	"testing"
)

// A key written SECRET:ID (swapped) is refused without quoting what it took
// for the id: that is the secret.
func TestBadKeyIDNotEchoed(t *testing.T) {
	_, err := NewKeyring(Key{ID: "TOPSECRET/VALUE+XX=", Secret: []byte("k1k1k1k1k1k1k1k1")})
	if err == nil || strings.Contains(err.Error(), "TOPSECRET") {
		t.Fatalf("error %v: want a refusal that does not quote the id", err)
	}
}

// A swapped key whose secret is made of id characters passes as an id: the
// refusals that follow (a short "secret", a repeated id) name keys by
// position, never by id.
func TestSwappedKeySecretNotEchoed(t *testing.T) {
	const secret = "S3cretTokenKey0123456789abcdef"
	keys, err := ParseKeys(secret + ":k1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewKeyring(keys...)
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "key 1") {
		t.Fatalf("short secret: error %v: want a refusal naming key 1, without its id", err)
	}
	keys, _ = ParseKeys(secret + ":k1k1k1k1k1k1k1k1k1," + secret + ":k2k2k2k2k2k2k2k2k2")
	_, err = NewKeyring(keys...)
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "keys 1 and 2") {
		t.Fatalf("repeated id: error %v: want a refusal naming keys 1 and 2, without the id", err)
	}
}
