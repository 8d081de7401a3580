package scoring

import (
	"reflect"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/leadstream/leadstream/event"
)

// The same page arrives with its path percent-encoded (ls.js sends
// location.pathname) or decoded (a URL-only event: the collector's url.Parse
// decodes it), and a url glob is written either way in the rules file: a
// scoring rule and an audience match every combination alike.
func TestURLGlobPercentEncoding(t *testing.T) {
	r, err := Parse("r.yaml", []byte(`
models:
  - name: m
    threshold: 100
    rules:
      - {name: decoded, event: page_view, url: "/über-uns*", points: 1}
      - {name: encoded, event: page_view, url: "/%C3%BCber-uns*", points: 10}
      - {name: lower-hex, event: page_view, url: "/%c3%bcber-uns/team", points: 100}
audiences:
  - {name: decoded, event: page_view, url: "/über-uns*", window: 7d}
  - {name: encoded, event: page_view, url: "/%C3%BCber-uns*", window: 7d}
`))
	if err != nil {
		t.Fatal(err)
	}
	pages := map[string]*event.Event{
		"ls.js path":          {Type: event.PageView, Path: "/%C3%BCber-uns/team", URL: "https://acme.example/%C3%BCber-uns/team"},
		"decoded path":        {Type: event.PageView, Path: "/über-uns/team", URL: "https://acme.example/%C3%BCber-uns/team"},
		"lower-case escapes":  {Type: event.PageView, Path: "/%c3%bcber-uns/team"},
		"encoded URL only":    {Type: event.PageView, URL: "https://acme.example/%C3%BCber-uns/team?x=%C3%BC#top"},
		"raw UTF-8 URL only":  {Type: event.PageView, URL: "https://acme.example/über-uns/team"},
		"scheme-less encoded": {Type: event.PageView, URL: "/%C3%BCber-uns/team"},
	}
	for name, e := range pages {
		if got := r.Models[0].Match(e, nil); len(got) != 3 {
			t.Errorf("%s: rule hits %+v, want all three", name, got)
		}
		am := newAudienceMatcher(r)
		if got := am.m.Match(e, nil); len(got) != 2 {
			t.Errorf("%s: audience hits %+v, want both", name, got)
		}
	}
	// Through the processor's path: a visitor's hits, then its audiences.
	rp := replay(t, r, []*event.Event{pv("p1", t0, "", "enc", "/%C3%BCber-uns"), pv("p2", t0, "", "dec", "/über-uns")})
	for _, v := range []string{"enc", "dec"} {
		st := rp.States()[Anon(v)]
		if got := r.AudiencesAt([]*State{st}, t0.UnixMilli()); !slices.Equal(got, []string{"decoded", "encoded"}) {
			t.Errorf("visitor %s: audiences %v", v, got)
		}
		if ms := st.Model("m"); ms == nil || ms.V != 11 {
			t.Errorf("visitor %s: model state %+v, want 11 points", v, ms)
		}
	}
	// Another page does not match.
	if got := r.Models[0].Match(&event.Event{Type: event.PageView, Path: "/%C3%BCber"}, nil); len(got) != 0 {
		t.Errorf("/über: %+v", got)
	}
	// The rules file keeps the glob as written: it encodes back to itself.
	b, err := yaml.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Parse("r2.yaml", b)
	if err != nil || !reflect.DeepEqual(r, r2) {
		t.Fatalf("round trip: %v\n%s", err, b)
	}
	if r2.Models[0].Rules[1].URL != "/%C3%BCber-uns*" {
		t.Fatalf("encoded glob written back as %q", r2.Models[0].Rules[1].URL)
	}
}

// Decoding keeps what a glob means: a decoded * or ? is literal, an invalid
// escape is itself (in the glob and in the path), an encoded / is a /, and a
// space may be written as it is or as %20.
func TestURLGlobEscapes(t *testing.T) {
	cases := []struct {
		glob  string
		match []string
		not   []string
	}{
		{"/a b*", []string{"/a b", "/a%20b/c", "/a%20b"}, []string{"/a+b", "/ab"}},
		{"/a%20b", []string{"/a b", "/a%20b"}, []string{"/a%2520b"}},
		{"/x%2Ay", []string{"/x*y", "/x%2Ay", "/x%2ay"}, []string{"/xzy", "/xy", "/x**y"}},
		{"/faq%3F", []string{"/faq%3F"}, []string{"/faqs", "/faq"}},
		{"/q%3F*", []string{"/q%3Fa", "/q%3F"}, []string{"/qa"}},
		{"/back%5C*", []string{"/back%5C", "/back%5Cslash"}, []string{"/backs"}},
		{"/100%", []string{"/100%", "/100%25"}, []string{"/1000"}},
		{"/%zz*", []string{"/%zz", "/%zz/a", "/%25zz"}, []string{"/zz"}},
		{"/a%2Fb", []string{"/a/b", "/a%2Fb", "/a%2fb"}, []string{"/a%252Fb"}},
		{"/%23top", []string{"/%23top"}, []string{"/top"}},
		{"/?", []string{"/%C3%BC", "/ü", "/a"}, []string{"/%C3%BCx", "/ab"}},
	}
	for _, c := range cases {
		if err := checkGlob(c.glob); err != nil {
			t.Errorf("checkGlob(%q): %v", c.glob, err)
			continue
		}
		m := Model{Rules: []Rule{{Event: event.PageView, URL: c.glob, glob: compileGlob(c.glob)}}}
		for _, p := range c.match {
			if len(m.Match(&event.Event{Type: event.PageView, Path: p}, nil)) != 1 {
				t.Errorf("glob %q does not match path %q", c.glob, p)
			}
		}
		for _, p := range c.not {
			if len(m.Match(&event.Event{Type: event.PageView, Path: p}, nil)) != 0 {
				t.Errorf("glob %q matches path %q", c.glob, p)
			}
		}
	}
	// Written as is, a control character is refused; as %XX it is fine.
	if checkGlob("/a\tb") == nil || checkGlob("/a\x00") == nil {
		t.Error("control characters accepted")
	}
	if err := checkGlob("/a%09b"); err != nil {
		t.Error(err)
	}
}

func TestDecodePath(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "",
		"/plain":             "/plain",
		"/%C3%BCber-uns":     "/über-uns",
		"/%c3%bc":            "/ü",
		"/a%20b+c":           "/a b+c",
		"/100%":              "/100%",
		"/100%2":             "/100%2",
		"/%zz%41":            "/%zzA",
		"/%%41":              "/%A",
		"/%2525":             "/%25",
		"%41%42%43":          "ABC",
		"/%FF":               "/\xff",
		"/mixed/%E6%97%A5本%": "/mixed/日本%",
	} {
		if got := decodePath(in); got != want {
			t.Errorf("decodePath(%q) = %q, want %q", in, got, want)
		}
	}
}

// Matching a path without '%' allocates nothing (the processor's hot path);
// a path with escapes is decoded once per call, however many rules read it.
func TestMatchURLAllocs(t *testing.T) {
	m := mustModel(t, `
models:
  - name: m
    threshold: 100
    rules:
      - {name: a, event: page_view, url: "/über*", points: 1}
      - {name: b, event: page_view, url: "/%C3%BCber/*", points: 1}
      - {name: c, event: page_view, url: "*/pricing*", points: 1}
`)
	dst := make([]Hit, 0, 8)
	plain := &event.Event{Type: event.PageView, URL: "https://example.com/pricing/enterprise?plan=pro#faq"}
	if n := testing.AllocsPerRun(100, func() { dst = m.Match(plain, dst[:0]) }); n != 0 || len(dst) != 1 {
		t.Errorf("plain path: %v allocations, hits %+v", n, dst)
	}
	enc := &event.Event{Type: event.PageView, Path: "/%C3%BCber/pricing"}
	if n := testing.AllocsPerRun(100, func() { dst = m.Match(enc, dst[:0]) }); n != 1 || len(dst) != 3 {
		t.Errorf("encoded path: %v allocations, hits %+v", n, dst)
	}
}

// BenchmarkMatchURLEncoded is BenchmarkMatchURL for a page whose path has
// escapes (ls.js's location.pathname of a non-ASCII path): decoded once.
func BenchmarkMatchURLEncoded(b *testing.B) {
	m := &Default().Models[0]
	e := &event.Event{Type: event.PageView, Path: "/pricing/%C3%BCbersicht"}
	dst := make([]Hit, 0, 8)
	b.ReportAllocs()
	for b.Loop() {
		dst = m.Match(e, dst[:0])
	}
	if len(dst) != 2 {
		b.Fatalf("hits = %+v", dst)
	}
}
