package scoring

import (
	"reflect"
	"strings"
	"testing"

	"github.com/leadstream/leadstream/event"
)

const fitRules = `
models:
  - name: m
    threshold: 100
    fit:
      - {name: senior-title, trait: title, matches: '(?i)\b(cto|vp|head|director)\b', points: 20}
      - {name: big-company, trait: employees, gte: 200, points: 10}
      - {name: mid-company, trait: employees, gte: 50, lte: 199, points: 5}
      - {name: tiny, trait: employees, lte: 5, points: -10}
      - {name: saas, trait: industry, equals: SaaS, points: 7}
      - {name: dach, trait: country, in: [DE, AT, CH], points: 3}
      - {name: paying, trait: company.plan, in: [pro, enterprise], points: 4}
      - {name: free-mail, trait: email, matches: '@(gmail|yahoo)\.com$', points: -15}
      - {name: verified, trait: verified, equals: "true", points: 1}
`

func TestFitPoints(t *testing.T) {
	m := mustModel(t, fitRules)
	f := func(traits string, wantTotal float64, want ...string) {
		t.Helper()
		tr, err := DecodeTraits([]byte(traits))
		if err != nil {
			t.Fatal(err)
		}
		total, reasons := m.FitPoints(tr)
		var got []string
		var sum float64
		for _, r := range reasons {
			got = append(got, r.Rule)
			sum += r.Points
		}
		if total != wantTotal || sum != total || strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("FitPoints(%s) = %v %v, want %v %v", traits, total, got, wantTotal, want)
		}
	}
	f(``, 0)
	f(`{}`, 0)
	f(`{"title":"VP Marketing","employees":250}`, 30, "senior-title", "big-company")
	f(`{"title":"Head of Growth","employees":"120"}`, 25, "senior-title", "mid-company") // numeric text counts
	f(`{"title":"Vice President"}`, 0)
	f(`{"title":"cto"}`, 20, "senior-title")
	f(`{"title":"Directory admin"}`, 0) // \b: whole words only
	f(`{"employees":200}`, 10, "big-company")
	f(`{"employees":199.5}`, 0) // in neither range
	f(`{"employees":5}`, -10, "tiny")
	f(`{"employees":"many"}`, 0)
	f(`{"employees":null,"title":null}`, 0)
	f(`{"employees":[300]}`, 0)
	f(`{"industry":"SaaS"}`, 7, "saas")
	f(`{"industry":"saas"}`, 0)
	f(`{"country":"AT"}`, 3, "dach")
	f(`{"country":"FR"}`, 0)
	f(`{"company":{"plan":"pro"}}`, 4, "paying")
	f(`{"company.plan":"enterprise","company":{"plan":"free"}}`, 4, "paying") // literal key first
	f(`{"company":{"plan":"free"}}`, 0)
	f(`{"company":"Acme"}`, 0)
	f(`{"email":"jo@gmail.com"}`, -15, "free-mail")
	f(`{"verified":true}`, 1, "verified") // JSON text of a bool
	f(`{"verified":"true"}`, 1, "verified")
	f(`{"title":"CTO","employees":1000,"industry":"SaaS","country":"DE","company":{"plan":"pro"}}`, 44,
		"senior-title", "big-company", "saas", "dach", "paying")

	// Default model.
	d := &Default().Models[0]
	total, reasons := d.FitPoints(map[string]any{"title": "Chief Revenue Officer", "employees": 5000.0})
	want := []event.Reason{{Rule: "senior-title", Points: 20}, {Rule: "big-company", Points: 10}}
	if total != 30 || !reflect.DeepEqual(reasons, want) {
		t.Errorf("default FitPoints = %v %+v", total, reasons)
	}
	if total, reasons := d.FitPoints(nil); total != 0 || reasons != nil {
		t.Errorf("FitPoints(nil) = %v %v", total, reasons)
	}
}

func TestDecodeTraits(t *testing.T) {
	f := func(raw string, want map[string]any, wantErr bool) {
		t.Helper()
		got, err := DecodeTraits([]byte(raw))
		if (err != nil) != wantErr || !reflect.DeepEqual(got, want) {
			t.Errorf("DecodeTraits(%q) = %#v, %v", raw, got, err)
		}
	}
	f(``, nil, false)
	f(" \n", nil, false)
	f(`null`, nil, false)
	f(`{}`, map[string]any{}, false)
	f(`{"n":200,"s":"x","b":true,"o":{"k":1}}`, map[string]any{"n": 200.0, "s": "x", "b": true, "o": map[string]any{"k": 1.0}}, false)
	f(`[1]`, nil, true)
	f(`"x"`, nil, true)
	f(`{"a":`, nil, true)
}
