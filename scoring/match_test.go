package scoring

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/leadstream/leadstream/event"
)

const matchRules = `
models:
  - name: m
    threshold: 100
    rules:
      - {name: any-page, event: page_view, points: 1}
      - {name: pricing, event: page_view, url: "/pricing*", points: 10}
      - {name: careers, event: page_view, url: "/careers*", points: -20}
      - {name: doc-page, event: page_view, url: "/docs/?/*", points: 2}
      - {name: spring-open, event: email_open, campaign: spring-24, points: 3, cap: {count: 2, window: 24h}}
      - {name: any-click, event: email_click, points: 4}
      - {name: trial, event: custom, track: Trial Started, points: 25}
      - {name: trial-pro, event: custom, track: Trial Started, properties: {plan: pro, seats: 5, annual: true}, points: 5}
      - {name: demo-form, event: form_submit, properties: {form: demo}, points: 30}
      - {name: won, event: deal_won, points: 50}
      - {name: identified, event: identify, points: 1}
`

func mustModel(t testing.TB, src string) *Model {
	t.Helper()
	r, err := Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return &r.Models[0]
}

func TestMatch(t *testing.T) {
	m := mustModel(t, matchRules)
	f := func(e event.Event, want string) {
		t.Helper()
		var got []string
		var total float64
		for _, h := range m.Match(&e, nil) {
			if m.Rules[h.Rule].Name != h.Name || m.Rules[h.Rule].Points != h.Points || m.Rules[h.Rule].Cap != h.Cap {
				t.Errorf("hit %+v does not describe rule %d", h, h.Rule)
			}
			got = append(got, h.Name)
			total += h.Points
		}
		if s := strings.Join(got, " "); s != want {
			t.Errorf("Match(%+v) = %q (total %v), want %q", e, s, total, want)
		}
	}
	props := func(s string) json.RawMessage { return json.RawMessage(s) }

	// Event types and URL globs; e.Path wins over e.URL.
	f(event.Event{Type: event.PageView, Path: "/"}, "any-page")
	f(event.Event{Type: event.PageView, Path: "/pricing"}, "any-page pricing")
	f(event.Event{Type: event.PageView, Path: "/pricing/enterprise"}, "any-page pricing")
	f(event.Event{Type: event.PageView, Path: "/blog/pricing"}, "any-page")
	f(event.Event{Type: event.PageView, Path: "/careers/sre"}, "any-page careers")
	f(event.Event{Type: event.PageView, Path: "/docs/a/b", URL: "https://x.io/pricing"}, "any-page doc-page")
	f(event.Event{Type: event.PageView, Path: "/docs/ab/b"}, "any-page")
	f(event.Event{Type: event.PageView, URL: "https://x.io/pricing?plan=pro#faq"}, "any-page pricing")
	f(event.Event{Type: event.PageView, URL: "https://x.io?next=/pricing"}, "any-page")
	f(event.Event{Type: event.PageView, URL: "//x.io/careers"}, "any-page careers")
	f(event.Event{Type: event.PageView}, "any-page")
	f(event.Event{Type: event.Alias, Path: "/pricing"}, "")
	f(event.Event{Type: "bogus"}, "")

	// Campaign.
	f(event.Event{Type: event.EmailOpen, Campaign: "spring-24"}, "spring-open")
	f(event.Event{Type: event.EmailOpen, Campaign: "fall-24"}, "")
	f(event.Event{Type: event.EmailOpen}, "")
	f(event.Event{Type: event.EmailClick, Campaign: "spring-24"}, "any-click")

	// Track and properties: JSON types must agree, extra properties are fine.
	f(event.Event{Type: event.Custom, Track: "Trial Started"}, "trial")
	f(event.Event{Type: event.Custom, Track: "trial started"}, "")
	f(event.Event{Type: event.Custom, Track: "Trial Started", Properties: props(`{"plan":"pro","seats":5.0,"annual":true,"x":[1]}`)}, "trial trial-pro")
	f(event.Event{Type: event.Custom, Track: "Trial Started", Properties: props(`{"plan":"pro","seats":"5","annual":true}`)}, "trial")
	f(event.Event{Type: event.Custom, Track: "Trial Started", Properties: props(`{"plan":"pro","seats":5,"annual":"true"}`)}, "trial")
	f(event.Event{Type: event.Custom, Track: "Trial Started", Properties: props(`{"plan":"pro","seats":5}`)}, "trial")
	f(event.Event{Type: event.Custom, Track: "Trial Started", Properties: props(`{"plan":"pro",`)}, "trial")
	f(event.Event{Type: event.FormSubmit, Properties: props(`{"form":"demo"}`)}, "demo-form")
	f(event.Event{Type: event.FormSubmit, Properties: props(`{"form":"newsletter"}`)}, "")
	f(event.Event{Type: event.FormSubmit, Properties: props(`null`)}, "")
	f(event.Event{Type: event.FormSubmit}, "")

	// The rest of the types.
	f(event.Event{Type: event.DealWon}, "won")
	f(event.Event{Type: event.Identify}, "identified")
}

func TestMatchAppends(t *testing.T) {
	m := &Default().Models[0]
	e := &event.Event{Type: event.PageView, Path: "/careers"}
	dst := m.Match(e, []Hit{{Name: "keep"}})
	if len(dst) != 3 || dst[0].Name != "keep" || dst[1].Name != "page-view" || dst[2].Name != "careers-page" || dst[2].Points != -20 {
		t.Errorf("Match = %+v", dst)
	}
}

func TestMatchProgrammaticRules(t *testing.T) {
	// Rules built in Go may use integer property values.
	m := &Model{Rules: []Rule{{Name: "r", Event: event.Custom, Properties: map[string]any{"n": 3, "m": int64(4), "f": float32(0.5)}, Points: 1}}}
	e := &event.Event{Type: event.Custom, Properties: json.RawMessage(`{"n":3,"m":4,"f":0.5}`)}
	if hits := m.Match(e, nil); len(hits) != 1 {
		t.Errorf("Match = %+v", hits)
	}
}

func TestMatchAllocs(t *testing.T) {
	m := &Default().Models[0]
	e := &event.Event{Type: event.PageView, URL: "https://example.com/pricing?plan=pro"}
	dst := make([]Hit, 0, 8)
	if n := testing.AllocsPerRun(100, func() { dst = m.Match(e, dst[:0]) }); n != 0 {
		t.Errorf("Match allocates %v times per call", n)
	}
	if len(dst) != 2 {
		t.Errorf("hits = %+v", dst)
	}
}

func TestURLPath(t *testing.T) {
	f := func(u, want string) {
		t.Helper()
		if got := urlPath(u); got != want {
			t.Errorf("urlPath(%q) = %q, want %q", u, got, want)
		}
	}
	f("https://example.com/pricing?plan=pro", "/pricing")
	f("https://example.com/pricing#faq", "/pricing")
	f("https://example.com", "/")
	f("https://example.com?x=/a", "/")
	f("https://example.com#/a", "/")
	f("HTTP://user:pw@example.com:8080/a/b/", "/a/b/")
	f("git+ssh://host/repo", "/repo")
	f("//cdn.example.com/x", "/x")
	f("/docs/a?b", "/docs/a")
	f("example.com/pricing", "/pricing")
	f("localhost:8080/pricing", "/pricing")
	f("/r?u=https://x.io/y", "/r")
	f("mailto:a@b.c", "/")
	f("", "/")
	f("https://example.com/ä/ü", "/ä/ü")
}

func TestGlob(t *testing.T) {
	f := func(pattern, s string, want bool) {
		t.Helper()
		if got := matchGlob(pattern, s); got != want {
			t.Errorf("matchGlob(%q, %q) = %v, want %v", pattern, s, got, want)
		}
	}
	f("", "", true)
	f("", "/", false)
	f("*", "", true)
	f("*", "/any/thing", true)
	f("**", "/a", true)
	f("/pricing", "/pricing", true)
	f("/pricing", "/pricing/", false)
	f("/pricing", "/Pricing", false)
	f("/pricing*", "/pricing", true)
	f("/pricing*", "/pricing-old/x", true)
	f("/pricing*", "/pric", false)
	f("*/pricing", "/de/pricing", true)
	f("*/pricing", "/de/pricing/x", false)
	f("/a*b*c", "/aXXbYYc", true)
	f("/a*b*c", "/abc", true)
	f("/a*b*c", "/acb", false)
	f("/a*b*c", "/abcbc", true)
	f("/a*bc", "/abcbcbd", false)
	f("/?", "/x", true)
	f("/?", "/", false)
	f("/?", "/xy", false)
	f("/??", "/ä", false) // ? is one character, not one byte
	f("/?", "/ä", true)
	f("/*?x", "/äx", true)
	f("/*??x", "/äx", false)
	f("/ä*", "/äb", true)
	f("/ä", "/ã", false)
	f("/*/*/c", "/a/b/c", true)
	f("/*/*/c", "/a/c", false)
	f("*a*a*a*a*a*a*b", strings.Repeat("a", 200), false) // must not blow up
	f("/x*", "/x\xff", true)
	f("/x?", "/x\xff", true)
}

func TestCheckGlob(t *testing.T) {
	f := func(pattern string, ok bool) {
		t.Helper()
		if err := checkGlob(pattern); (err == nil) != ok {
			t.Errorf("checkGlob(%q) = %v, want ok=%v", pattern, err, ok)
		}
	}
	f("", true)
	f("/", true)
	f("*", true)
	f("*/pricing", true)
	f("/pricing/?/*", true)
	f("/ä", true)
	f("pricing", false)
	f("?pricing", false)
	f("/a[bc]", false)
	f("/a{b,c}", false)
	f(`/a\*`, false)
	f("/a#b", false)
	f("/a\tb", false)
	f("/a\xff", false)
}

func BenchmarkMatch(b *testing.B) {
	m := &Default().Models[0]
	e := &event.Event{Type: event.PageView, URL: "https://example.com/pricing?plan=pro", Path: "/pricing"}
	dst := make([]Hit, 0, 8)
	b.ReportAllocs()
	for b.Loop() {
		dst = m.Match(e, dst[:0])
	}
	if len(dst) != 2 {
		b.Fatalf("hits = %+v", dst)
	}
}

func BenchmarkMatchURL(b *testing.B) {
	m := &Default().Models[0]
	e := &event.Event{Type: event.PageView, URL: "https://example.com/pricing/enterprise?plan=pro#faq"}
	dst := make([]Hit, 0, 8)
	b.ReportAllocs()
	for b.Loop() {
		dst = m.Match(e, dst[:0])
	}
}

func BenchmarkMatchProperties(b *testing.B) {
	m := mustModel(b, matchRules)
	e := &event.Event{Type: event.Custom, Track: "Trial Started", Properties: json.RawMessage(`{"plan":"pro","seats":5,"annual":true}`)}
	dst := make([]Hit, 0, 8)
	b.ReportAllocs()
	for b.Loop() {
		dst = m.Match(e, dst[:0])
	}
}
