package jsonx

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The walk over valid input finds the ends and members that the validating
// scan and encoding/json find.
func FuzzWalk(f *testing.F) {
	for _, c := range validCases {
		f.Add([]byte(c))
	}
	f.Add([]byte(`{"a":"x\\\"y","b":[1,{"c":"]"}],"d":-1.5e3,"e":null , "f" : {}}`))
	f.Add([]byte(`{"é":1}`))
	f.Add([]byte(`{"a\u0062":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !Valid(b) {
			return
		}
		i := SkipSpace(b, 0)
		want, _ := SkipValue(b, i)
		if got := SkipValidValue(b, i); got != want {
			t.Fatalf("%q: SkipValidValue = %d, SkipValue = %d", b, got, want)
		}
		var keys [][]byte
		var vals [][]byte
		end := Members(b, i, func(key []byte, v int) int {
			e := SkipValidValue(b, v)
			keys, vals = append(keys, key), append(vals, b[v:e])
			return e
		})
		if end < 0 {
			return
		}
		if end != want {
			t.Fatalf("%q: Members ends at %d, the value at %d", b, end, want)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%q: Members walked what encoding/json does not take for an object: %v", b, err)
		}
		for k, key := range keys {
			// The last duplicate wins in encoding/json.
			last := true
			for _, later := range keys[k+1:] {
				last = last && !bytes.Equal(later, key)
			}
			if last && !bytes.Equal(bytes.TrimSpace(m[string(key)]), vals[k]) {
				t.Fatalf("%q: member %q = %q, encoding/json %q", b, key, vals[k], m[string(key)])
			}
		}
		if len(m) > len(keys) {
			t.Fatalf("%q: Members saw %d keys, encoding/json %d", b, len(keys), len(m))
		}
	})
}

func TestPlainString(t *testing.T) {
	for _, s := range []string{`""`, `"abc"`, `" a b "`, `"a\"b"`, `"a\\b"`, `"é"`, "\"a\x7fb\"", `"\u0041"`, `"<&>"`} {
		var want string
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatal(err)
		}
		if got, ok := PlainString([]byte(s)); ok && got != want {
			t.Errorf("PlainString(%s) = %q, want %q", s, got, want)
		}
	}
	if _, ok := PlainString([]byte(`"abc"`)); !ok {
		t.Error(`PlainString("abc") is not plain`)
	}
}
