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
