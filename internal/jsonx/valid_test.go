package jsonx

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

var validCases = []string{
	`{}`, `[]`, `""`, `0`, `-0`, `1.5e+10`, `true`, `false`, `null`, ` {"a" : [1, 2, {"b": null}] } `,
	`{"url":"https://x.example/?a=1\u0026b=2","t":"\"q\" \\ \/ \b\f\n\r\t"}`, `"\ud83d\ude00"`, "\"\xff\xfe\"",
	`[[[[[]]]]]`, `{"a":{"b":{"c":[]}}}`, `[1,[2,[3]],{"x":[{}]}]`, "\t\r\n[ ]\n",
	`{"a":1,"a":2}`, `"01234567890123456789"`, `"abcdefg\"hijklmn"`, `-12.345E-6`,
	// Invalid.
	``, ` `, `{`, `}`, `[`, `]`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`, `{"a" 1}`, `{1:2}`,
	`01`, `1.`, `.5`, `1e`, `1e+`, `-`, `+1`, `0x10`, `tru`, `nul`, `True`, `nulll`, `"abc`, `"a\x"`, `"\u12G4"`,
	"\"a\x01\"", "\"a\nb\"", `[1 2]`, `{"a":1 "b":2}`, `{} {}`, `[]]`, `[}`, `{]`, `"\`, `"\u12"`, "\xef\xbb\xbf{}",
	`{"a":[1,2}`, `[{"a":1]`, "[\x00]", `1 2`, `"x"y`, `{"a":tru}`,
}

func TestValidMatchesEncodingJSON(t *testing.T) {
	for _, c := range validCases {
		if got, want := Valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("Valid(%q) = %v, encoding/json says %v", c, got, want)
		}
	}
	// Every prefix of a valid document (truncated records).
	doc := `{"event_id":"e1","properties":{"a":[1,-2.5e3,true,false,null,{"b":"c\u00e9\n"}],"d":{}},"x":[[],[{}]]}`
	for i := 0; i <= len(doc); i++ {
		if got, want := Valid([]byte(doc[:i])), json.Valid([]byte(doc[:i])); got != want {
			t.Errorf("Valid(%q) = %v, encoding/json says %v", doc[:i], got, want)
		}
	}
}

func TestValidDepth(t *testing.T) {
	for _, n := range []int{63, 64, 65, 255, 256, 257, MaxDepth - 1, MaxDepth, MaxDepth + 1} {
		for _, open := range []string{"[", `{"k":`} {
			closeB := "]"
			if open != "[" {
				closeB = "}"
			}
			doc := []byte(strings.Repeat(open, n) + "1" + strings.Repeat(closeB, n))
			if got, want := Valid(doc), json.Valid(doc); got != want {
				t.Errorf("depth %d %q: Valid = %v, encoding/json says %v", n, open, got, want)
			}
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, c := range validCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

func BenchmarkValid(b *testing.B) {
	doc := []byte(`{"event_id":"ajs-next-1-1a2b3c4d5e","type":"page_view","event_time":"2026-11-22T16:39:58.12Z","received_at":"2026-11-22T16:39:58.12Z","anonymous_id":"0b7c9d3e-5f61-4a2b-9c8d-000000000001","write_key_id":"wk_1a2b3c4d5e6f","campaign":"spring","utm_source":"google","utm_medium":"cpc","utm_campaign":"spring","url":"https://acme.example/pricing?utm_source=google\u0026utm_medium=cpc\u0026utm_campaign=spring","path":"/pricing","referrer":"https://www.google.com/","title":"Pricing — Acme","properties":{"url":"https://acme.example/pricing","path":"/pricing","n":[1,2.5,true,null]},"ip":"198.51.100.7","user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"}`)
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if !json.Valid(doc) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("jsonx", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		b.ReportAllocs()
		for b.Loop() {
			if !Valid(doc) {
				b.Fatal("invalid")
			}
		}
	})
}

// Check flags every number encoding/json cannot decode into a float64, and
// no number of ordinary size.
func TestCheckLarge(t *testing.T) {
	f := func(doc string, large bool) {
		t.Helper()
		valid, got := Check([]byte(doc))
		if !valid || got != large {
			t.Errorf("Check(%.60q) = %v, %v; want true, %v", doc, valid, got, large)
		}
		var v any
		if err := json.Unmarshal([]byte(doc), &v); err != nil && !got {
			t.Errorf("Check(%.60q) missed what encoding/json refuses: %v", doc, err)
		}
	}
	f(`1e308`, true) // flagged: 10^(1+308) is over the bound; it fits
	f(`9.99e307`, false)
	f(`-1.7976931348623157e308`, true) // the largest float64: flagged, and fits
	f(`1e309`, true)
	f(`1e400`, true)
	f(`-1e400`, true)
	f(`1E+400`, true)
	f(`1e-400`, false) // underflows to 0, which encoding/json accepts
	f(`0.5e309`, true)
	f(`1e000000000000000000000400`, true)
	f(`{"a":[1,{"b":2e999}],"c":"1e400"}`, true)
	f(`{"a":[1,{"b":2e99}],"c":"1e400"}`, false)
	f(`"1e400"`, false)
	f(strings.Repeat("9", 308), false)
	f(strings.Repeat("9", 309), true)
	f(strings.Repeat("9", 400)+"e-100", false)
	f(strings.Repeat("9", 400)+"e-92", false) // 9.99…e307
	f(strings.Repeat("9", 400)+"e-91", true)  // 9.99…e308
	f("0."+strings.Repeat("0", 400)+"1e400", true)
}

func FuzzCheck(f *testing.F) {
	for _, c := range validCases {
		f.Add([]byte(c))
	}
	f.Add([]byte(`{"n":1e400}`))
	f.Add([]byte(`[1.5e308,2e308,-0.0e1]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		valid, large := Check(b)
		if valid != json.Valid(b) {
			t.Fatalf("Check(%q) valid = %v, encoding/json says %v", b, valid, !valid)
		}
		if !valid {
			return
		}
		var v any
		err := json.Unmarshal(b, &v)
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && !large {
			t.Fatalf("Check(%q) says no large number, encoding/json: %v", b, err)
		}
		if err != nil && te == nil && !strings.Contains(err.Error(), "exceeded max depth") {
			t.Fatalf("valid %q does not decode: %v", b, err)
		}
	})
}
