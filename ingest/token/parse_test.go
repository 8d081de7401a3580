package token

import (
	"encoding/json"
	"testing"
)

// parseWire gives exactly what encoding/json gives whenever it takes the input.
func FuzzParseWire(f *testing.F) {
	for _, s := range []string{
		`{"k":"o","l":"lead-1","c":"c","m":"m","s":1800000000}`,
		`{"k":"c","l":"l","m":"m","u":"https://acme.example/x?y=1#z"}`,
		` { "s" : -0 , "k":"o" } `, `{"s":01}`, `{"s":1.5}`, `{"s":99999999999999999999}`, `{"K":"o"}`, `{"k":"o","k":"c"}`,
		`{"l":"a\u0062"}`, `{"l":null}`, `{}`, `{"":1}`, `{"s":1e3}`, `{"k":"é"}`,
		`{"k":"o","l":"l","m":"m","s":1800000000,"e":1815552000}`, `{"e":1,"e":2}`, `{"e":-5}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := parseWire(b)
		if !ok {
			return
		}
		var want wire
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("parseWire took %q, encoding/json fails: %v", b, err)
		}
		if got != want {
			t.Fatalf("%q: parseWire %+v, encoding/json %+v", b, got, want)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	k := keyring(b, "k1:0123456789abcdef")
	tok, err := k.Sign(Claims{Kind: Open, Lead: "lead-1234", Campaign: "spring-nurture", Message: "msg-0123456789"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
