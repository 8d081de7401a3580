package scoring

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/yamlconf"
)

// lines joins its arguments as file lines, so a case's line numbers are its
// argument positions (1-based).
func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

// base is a minimal valid file; cases append lines 8.. to it.
func base(extra ...string) string {
	return lines(append([]string{
		"models:",                  //                    1
		"  - name: m",              //                2
		"    threshold: 10",        //          3
		"    rules:",               //                 4
		"      - name: r",          //            5
		"        event: page_view", //   6
		"        points: 1",        //          7
	}, extra...)...)
}

func TestParseErrors(t *testing.T) {
	f := func(src, want string) {
		t.Helper()
		r, err := Parse("rules.yaml", []byte(src))
		if err == nil {
			t.Errorf("Parse(%q) = %+v, want error containing %q", src, r, want)
			return
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) error:\n%v\nwant it to contain %q", src, err, want)
		}
	}
	// Whole-file problems.
	f("", "rules.yaml:1: no models")
	f("# just a comment\n", "rules.yaml:1: no models")
	f("models: []\n", "rules.yaml:1: models: no models")
	f("models:\n", "rules.yaml:1: models: no models")
	f("models: 3\n", "rules.yaml:1: models: want a list, got number 3")
	f("- a\n", "rules.yaml:1: want a mapping, got a list")
	f(lines("models:", "  - name: a", "    threshold: [1"), "rules.yaml:3: invalid YAML: did not find expected ',' or ']'")
	f(lines("models:", "  - name: a", "\tthreshold: 1"), "rules.yaml:3: invalid YAML: found a tab character")
	f(lines("models:", "  - name: a", "    threshold: 1", "   rules: x"), "rules.yaml:4: invalid YAML: did not find expected '-' indicator")
	f(lines("models:", "  - name: a", "    threshold: b: c"), "rules.yaml:3: invalid YAML: mapping values are not allowed in this context")
	f(lines("models:", "  - name: a", "    threshold: [1,", "      2,", "      b: c"), "rules.yaml:5: invalid YAML: did not find expected ',' or ']'")
	f(lines("models:", "  - name: *nope"), "rules.yaml:2: invalid YAML: unknown anchor 'nope' referenced")
	f(lines("models: []", "---", "x: ["), "rules.yaml:3: invalid YAML: did not find expected node content")
	f(base("---", "models: []"), "rules.yaml:8: only one YAML document is allowed")
	f(lines("model:", "  - name: a"), `rules.yaml:1: model: unknown key (want one of models, audiences)`)

	// Unknown and duplicate keys at every level.
	f(base("    threshhold: 3"), "rules.yaml:8: models[0].threshhold: unknown key (want one of name, half_life, threshold, rearm_below, rules, fit, accounts)")
	f(base("        ponts: 3"), "rules.yaml:8: models[0].rules[0].ponts: unknown key")
	f(base("        cap: {count: 1, window: 1h, every: 2}"), "rules.yaml:8: models[0].rules[0].cap.every: unknown key (want one of count, window)")
	f(base("    fit: [{name: f, trait: t, equals: x, points: 1, weight: 2}]"), "rules.yaml:8: models[0].fit[0].weight: unknown key")
	f(base("        points: 2"), "rules.yaml:8: models[0].rules[0].points: duplicate key")

	// Names.
	f(lines("models:", "  - threshold: 10", "    rules: [{name: r, event: page_view, points: 1}]"), "rules.yaml:2: models[0].name: missing")
	f(lines("models:", "  - name: Default", "    threshold: 10"), `rules.yaml:2: models[0].name: invalid model name "Default" (want [a-z0-9_-]+)`)
	f(base("  - name: m", "    threshold: 5", "    fit: [{name: f, trait: t, equals: x, points: 1}]"), `rules.yaml:8: models[1].name: duplicate model name "m" (first at line 2)`)
	f(base("      - event: page_view", "        points: 2"), "rules.yaml:8: models[0].rules[1].name: missing")
	f(base(`      - name: ""`, "        event: page_view", "        points: 2"), "rules.yaml:8: models[0].rules[1].name: must not be empty")
	f(base("      - name: r", "        event: email_open", "        points: 2"), `rules.yaml:8: models[0].rules[1].name: duplicate rule name "r" in model (first at line 5)`)
	f(base("    fit:", "      - {name: r, trait: t, equals: x, points: 1}"), `rules.yaml:9: models[0].fit[0].name: duplicate fit rule name "r" in model (first at line 5)`)

	// Event types.
	f(base("      - name: r2", "        event: pageview", "        points: 2"),
		`rules.yaml:9: models[0].rules[1].event: unknown event type "pageview" (want one of page_view, email_open, email_click, form_submit, identify, deal_won, custom)`)
	f(base("      - name: r2", "        event: alias", "        points: 2"), `rules.yaml:9: models[0].rules[1].event: unknown event type "alias"`)
	f(base("      - name: r2", "        points: 2"), "rules.yaml:8: models[0].rules[1].event: missing (want one of page_view")
	f(base("      - name: r2", "        event: [page_view]", "        points: 2"), "rules.yaml:9: models[0].rules[1].event: want a string, got a list")

	// Model numbers and durations.
	f(base("    half_life: 720"), `rules.yaml:8: models[0].half_life: bad duration "720" (want a Go duration`)
	f(base("    half_life: 30 days"), `rules.yaml:8: models[0].half_life: bad duration "30 days"`)
	f(base("    half_life: -1h"), "rules.yaml:8: models[0].half_life: must not be negative")
	f(lines("models:", "  - name: m", "    threshold: 0", "    fit: [{name: f, trait: t, equals: x, points: 1}]"), "rules.yaml:3: models[0].threshold: must be > 0, got 0")
	f(lines("models:", "  - name: m", "    threshold: -5", "    fit: [{name: f, trait: t, equals: x, points: 1}]"), "rules.yaml:3: models[0].threshold: must be > 0, got -5")
	f(lines("models:", "  - name: m", `    threshold: "100"`, "    fit: [{name: f, trait: t, equals: x, points: 1}]"), `rules.yaml:3: models[0].threshold: want a number, got string "100"`)
	f(lines("models:", "  - name: m", "    threshold: .inf", "    fit: [{name: f, trait: t, equals: x, points: 1}]"), "rules.yaml:3: models[0].threshold: must be a finite number")
	f(lines("models:", "  - name: m", "    fit: [{name: f, trait: t, equals: x, points: 1}]"), "rules.yaml:2: models[0].threshold: missing")
	f(base("    rearm_below: 10"), "rules.yaml:8: models[0].rearm_below: must be < threshold (10), got 10")
	f(base("    rearm_below: 11.5"), "rules.yaml:8: models[0].rearm_below: must be < threshold (10), got 11.5")
	f(lines("models:", "  - name: m", "    threshold: 10"), "rules.yaml:2: models[0]: model has no rules and no fit rules")
	f(lines("models:", "  - name: m", "    threshold: 10", "    rules: {a: 1}"), "rules.yaml:4: models[0].rules: want a list, got a mapping")

	// Rule conditions.
	f(base(`        url: "pricing*"`), `rules.yaml:8: models[0].rules[0].url: bad glob "pricing*": must start with "/" or "*"`)
	f(base(`        url: "/pricing/[a-z]*"`), `rules.yaml:8: models[0].rules[0].url: bad glob "/pricing/[a-z]*": '[' is not supported`)
	f(base(`        url: "/pricing#plans"`), `rules.yaml:8: models[0].rules[0].url: bad glob "/pricing#plans": "#" never occurs`)
	f(base(`        url: "/a\tb"`), `rules.yaml:8: models[0].rules[0].url: bad glob "/a\tb": contains the control character '\t' (write it as %09`)
	f(base("        properties: {plan: [a, b]}"), "rules.yaml:8: models[0].rules[0].properties.plan: want a string, number or bool, got a list")
	f(base("        properties: {plan: null}"), "rules.yaml:8: models[0].rules[0].properties.plan: want a string, number or bool, got null")
	f(base("        properties: [plan]"), "rules.yaml:8: models[0].rules[0].properties: want a mapping, got a list")

	// Points and caps.
	f(base("      - name: r2", "        event: page_view", "        points: 0"), "rules.yaml:10: models[0].rules[1].points: must be non-zero")
	f(base("      - name: r2", "        event: page_view"), "rules.yaml:8: models[0].rules[1].points: missing")
	f(base("      - name: r2", "        event: page_view", "        points: lots"), `rules.yaml:10: models[0].rules[1].points: want a number, got string "lots"`)
	f(base("        cap: {count: 0, window: 24h}"), "rules.yaml:8: models[0].rules[0].cap.count: must be >= 1, got 0")
	f(base("        cap: {count: 1001, window: 24h}"), "rules.yaml:8: models[0].rules[0].cap.count: must be <= 1000 (each scoring hit of an open window is kept in the lead's state; leave the cap out for none), got 1001")
	f(base("        cap: {count: 1.5, window: 24h}"), "rules.yaml:8: models[0].rules[0].cap.count: want an integer >= 1, got number 1.5")
	f(base("        cap: {count: 3, window: 0s}"), "rules.yaml:8: models[0].rules[0].cap.window: must be > 0 (at least 1ms), got 0s")
	f(base("        cap: {count: 3, window: -1h}"), "rules.yaml:8: models[0].rules[0].cap.window: must be > 0")
	f(base("        cap: {count: 3, window: 1 day}"), `rules.yaml:8: models[0].rules[0].cap.window: bad duration "1 day"`)
	f(base("        cap:", "          count: 3"), "rules.yaml:9: models[0].rules[0].cap.window: missing")
	f(base("        cap: 3"), "rules.yaml:8: models[0].rules[0].cap: want a mapping, got number 3")

	// Fit rules.
	fit := func(rule string) string { return base("    fit:", "      - "+rule) } // the rule is on line 9
	f(fit("{name: f, trait: t, matches: '(cto', points: 1}"), `rules.yaml:9: models[0].fit[0].matches: bad regexp "(cto": missing closing )`)
	f(fit("{name: f, trait: t, points: 1}"), "rules.yaml:9: models[0].fit[0]: want exactly one condition of matches, equals, gte/lte, in; got 0")
	f(fit("{name: f, trait: t, equals: a, in: [a], points: 1}"), "rules.yaml:9: models[0].fit[0]: want exactly one condition of matches, equals, gte/lte, in; got 2")
	f(fit("{name: f, trait: t, gte: 10, lte: 5, points: 1}"), "rules.yaml:9: models[0].fit[0].gte: empty range: gte 10 > lte 5")
	f(fit("{name: f, trait: t, gte: ten, points: 1}"), `rules.yaml:9: models[0].fit[0].gte: want a number, got string "ten"`)
	f(fit("{name: f, trait: t, in: [], points: 1}"), "rules.yaml:9: models[0].fit[0].in: empty list")
	f(fit("{name: f, trait: t, in: [a, [b]], points: 1}"), "rules.yaml:9: models[0].fit[0].in[1]: want a string, got a list")
	f(fit("{name: f, equals: x, points: 1}"), "rules.yaml:9: models[0].fit[0].trait: missing")
	f(fit("{name: f, trait: t, equals: x, points: 0}"), "rules.yaml:9: models[0].fit[0].points: must be non-zero")
	f(fit("{trait: t, equals: x, points: 1}"), "rules.yaml:9: models[0].fit[0].name: missing")
}

// TestParseReportsEveryError checks that one pass reports all problems, in
// line order, one per line.
func TestParseReportsEveryError(t *testing.T) {
	_, err := Parse("x.yaml", []byte(lines(
		"models:",
		"  - name: m",
		"    threshold: 10",
		"    rules:",
		"      - {name: a, event: pageview, points: 1}",
		"      - {name: b, event: page_view, points: 0, extra: 1}",
	)))
	want := lines(
		`x.yaml:5: models[0].rules[0].event: unknown event type "pageview" (want one of page_view, email_open, email_click, form_submit, identify, deal_won, custom)`,
		`x.yaml:6: models[0].rules[1].extra: unknown key (want one of name, event, track, url, campaign, properties, points, cap)`,
		`x.yaml:6: models[0].rules[1].points: must be non-zero`,
	)
	if err == nil || err.Error()+"\n" != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}

	var many []string
	for range 50 {
		many = append(many, "    bad: 1")
	}
	_, err = Parse("x.yaml", []byte(base(many...)))
	if err == nil || !strings.HasSuffix(err.Error(), "x.yaml: too many errors") || strings.Count(err.Error(), "\n") != yamlconf.MaxErrors {
		t.Errorf("error list not capped:\n%v", err)
	}
}

func TestParseValues(t *testing.T) {
	r, err := Parse("ok.yaml", []byte(lines(
		"common: &common {event: custom, track: Trial Started}",
		"models:",
		"  - name: a_1",
		"    threshold: 80",
		"    rules:",
		"      - <<: *common",
		"        name: trial",
		"        campaign: 0123",
		`        url: ""`,
		"        track:",
		"        properties: {plan: pro, seats: 5, annual: true, code: '7'}",
		"        points: -2.5",
		"        cap: {count: 2, window: 90m}",
		"  - name: b",
		"    half_life: 0",
		"    threshold: 1",
		"    rearm_below: -4",
		"    fit:",
		"      - {name: r, trait: employees, gte: 10, lte: 20, points: 3}",
		"      - {name: i, trait: plan, in: [pro, '5'], points: 1}",
		"      - {name: e, trait: plan, equals: '', points: 1}",
	)))
	if err == nil || !strings.Contains(err.Error(), "ok.yaml:1: common: unknown key") {
		t.Fatalf("top-level anchors must live under a known key; got %v", err)
	}
	// The same file with the anchor defined inline parses.
	r, err = Parse("ok.yaml", []byte(lines(
		"models:",
		"  - name: a_1",
		"    threshold: 80",
		"    rules:",
		"      - &common {name: base, event: custom, track: Trial Started, points: 1}",
		"      - <<: *common",
		"        name: trial",
		"        campaign: 0123",
		`        url: ""`,
		"        track:",
		"        properties: {plan: pro, seats: 5, annual: true, code: '7'}",
		"        points: -2.5",
		"        cap: {count: 2, window: 90m}",
		"  - name: b",
		"    half_life: 0",
		"    threshold: 1",
		"    rearm_below: -4",
		"    fit:",
		"      - {name: r, trait: employees, gte: 10, lte: 20, points: 3}",
		"      - {name: i, trait: plan, in: [pro, '5'], points: 1}",
		"      - {name: e, trait: plan, equals: '', points: 1}",
	)))
	if err != nil {
		t.Fatal(err)
	}
	a, b := r.Models[0], r.Models[1]
	want := Rule{
		Name: "trial", Event: event.Custom, Track: "Trial Started", Campaign: "0123",
		Properties: map[string]any{"plan": "pro", "seats": 5.0, "annual": true, "code": "7"},
		Points:     -2.5, Cap: &Cap{Count: 2, Window: 90 * time.Minute},
	}
	if a.Name != "a_1" || a.HalfLife != 0 || a.Threshold != 80 || a.RearmBelow != 40 || len(a.Rules) != 2 {
		t.Errorf("model a = %+v", a)
	}
	// An explicit "track:" with no value overrides the merged one: absent.
	want.Track = ""
	if !reflect.DeepEqual(a.Rules[1], want) {
		t.Errorf("rule = %+v\nwant %+v", a.Rules[1], want)
	}
	if b.RearmBelow != -4 || len(b.Fit) != 3 || !b.Fit[0].hasGte || !b.Fit[0].hasLte || !b.Fit[2].hasEquals {
		t.Errorf("model b = %+v", b)
	}
}

// TestParseMergeBomb: merges that nest and share anchors must not make
// parsing exponential, and a mapping merging itself must not loop.
func TestParseMergeBomb(t *testing.T) {
	src := []string{"models:", "  - name: m", "    threshold: 1", "    rules:", "      - &a0 {name: x, event: page_view, points: 1}"}
	for i := 1; i <= 30; i++ {
		prev := fmt.Sprintf("*a%d", i-1)
		src = append(src, fmt.Sprintf("      - &a%d {<<: [%s]}", i, strings.TrimSuffix(strings.Repeat(prev+", ", 10), ", ")))
	}
	_, err := Parse("bomb.yaml", []byte(lines(src...)))
	if err == nil || !strings.Contains(err.Error(), `bomb.yaml:6: models[0].rules[1].name: duplicate rule name "x" in model (first at line 5)`) {
		t.Errorf("err = %v", err)
	}

	r, err := Parse("cycle.yaml", []byte(lines("models:", "  - &m {name: m, threshold: 1, <<: *m, fit: [{name: f, trait: t, equals: x, points: 1}]}")))
	if err != nil || r.Models[0].Name != "m" {
		t.Errorf("cyclic merge: %v", err)
	}
}

func TestDefault(t *testing.T) {
	r := Default()
	if len(r.Models) != 1 {
		t.Fatalf("models = %d", len(r.Models))
	}
	m := r.Models[0]
	if m.Name != "default" || m.HalfLife != 720*time.Hour || m.Threshold != 100 || m.RearmBelow != 50 {
		t.Errorf("model = %+v", m)
	}
	var got []string
	for _, ru := range m.Rules {
		s := string(ru.Event) + " " + ru.Name + " " + ru.URL + " " + fmt.Sprint(ru.Points)
		if ru.Cap != nil {
			s += " cap " + fmt.Sprint(ru.Cap.Count) + "/" + ru.Cap.Window.String()
		}
		got = append(got, s)
	}
	want := []string{
		"page_view page-view  5",
		"page_view pricing-page /pricing* 15",
		"email_open email-open  10 cap 3/24h0m0s",
		"email_click email-click  15",
		"form_submit form-submit  30",
		"page_view careers-page /careers* -20",
		"deal_won deal-won  50",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(m.Fit) != 2 || m.Fit[0].Name != "senior-title" || m.Fit[0].matches.String() != `(?i)\b(cto|cmo|ceo|vp|head|director|chief)\b` ||
		m.Fit[1].Name != "big-company" || m.Fit[1].gte != 200 || !m.Fit[1].hasGte || m.Fit[1].hasLte {
		t.Errorf("fit = %+v", m.Fit)
	}
	// Each call returns an independent copy.
	r.Models[0].Rules[0].Points = 99
	if Default().Models[0].Rules[0].Points != 5 {
		t.Error("Default shares state between calls")
	}
}

func TestRoundTrip(t *testing.T) {
	f := func(name string, src []byte) {
		t.Helper()
		r, err := Parse(name, src)
		if err != nil {
			t.Fatal(err)
		}
		out, err := yaml.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := Parse(name+" (marshalled)", out)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Errorf("%s: round trip changed the rules\n%s", name, out)
		}
	}
	f("default", DefaultYAML)
	f("rich", []byte(lines(
		"models:",
		"  - name: a",
		"    half_life: 90m30s",
		"    threshold: 0.5",
		"    rules:",
		"      - {name: r, event: custom, track: 'yes', campaign: '007', url: '/x?y*', properties: {n: 1.25, s: 'true', b: false}, points: -1, cap: {count: 1, window: 1500ms}}",
		"    fit:",
		"      - {name: e, trait: t, equals: '', points: 1}",
		"      - {name: m, trait: t, matches: '', points: 1}",
		"      - {name: i, trait: t, in: ['1', x], points: 1}",
		"      - {name: l, trait: t, lte: -3, points: 1}",
		"  - name: b",
		"    threshold: 1e3",
		"    fit: [{name: f, trait: company.size, gte: 1, lte: 2, points: 2}]",
	)))
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(path, DefaultYAML, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Load(path)
	if err != nil || !reflect.DeepEqual(r, Default()) {
		t.Errorf("Load = %v, %v", r, err)
	}
	if err := os.WriteFile(path, []byte("models: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.HasPrefix(err.Error(), path+":1: ") {
		t.Errorf("Load of a bad file: %v, want error prefixed with the path", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("Load of a missing file: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func FuzzParse(f *testing.F) {
	f.Add(DefaultYAML)
	f.Add([]byte(base("    fit: [{name: f, trait: t, gte: 1, points: 2}]", "        cap: {count: 1, window: 1h}")))
	f.Add([]byte("models: [{name: a, threshold: 1, rules: [{name: r, event: custom, track: x, url: '/a*?', properties: {a: 1}, points: 1}]}]"))
	f.Add([]byte("x: &a [*a]\nmodels: &m [{<<: *m}]"))
	f.Add([]byte("models:\n  - &a {name: a, <<: *a}\n"))
	e := &event.Event{Type: event.PageView, URL: "https://x.io/pricing?a=1", Properties: []byte(`{"a":1}`)}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse("f.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml:") {
				t.Fatalf("error without file name: %v", err)
			}
			return
		}
		if len(r.Models) == 0 {
			t.Fatal("no models but no error")
		}
		for i := range r.Models {
			m := &r.Models[i]
			if m.Threshold <= 0 || m.RearmBelow >= m.Threshold {
				t.Fatalf("invalid model accepted: %+v", m)
			}
			m.Match(e, nil)
			m.FitPoints(map[string]any{"t": "x"})
		}
		out, err := yaml.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := Parse("f.yaml", out)
		if err != nil {
			t.Fatalf("marshalled rules do not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed the rules\n%s", out)
		}
	})
}
