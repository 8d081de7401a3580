package ingest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/leadstream/leadstream/audience"
	"github.com/leadstream/leadstream/scoring"
)

// members lists the series of leadstream_collector_audience_members_total
// by audience, without creating any.
func members(t *testing.T, c *Collector) map[string]float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 64)
	c.am.members.Collect(ch)
	close(ch)
	out := map[string]float64{}
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "audience" {
				out[l.GetValue()] = d.GetCounter().GetValue()
			}
		}
	}
	return out
}

// The audiences of the rules file are label values known in advance: each
// has its members series from the start, at 0 (README, Metrics), so a rate
// or a ratio of an audience works before its first member.
func TestAudienceMembersAtZero(t *testing.T) {
	rules, err := scoring.Parse("rules.yaml", []byte(`
models:
  - {name: m, threshold: 10, rules: [{name: f, event: form_submit, points: 1}]}
audiences:
  - {name: pricing-returner, event: page_view, url: "/pricing*", count: 3, window: 7d}
  - {name: warm, model: m, score_gte: 5}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, nil)
	s.c.SetAudiences(audience.New(nil, rules))
	got := members(t, s.c)
	if len(got) != 2 || got["pricing-returner"] != 0 || got["warm"] != 0 {
		t.Fatalf("members series before any lookup: %v, want pricing-returner and warm at 0", got)
	}
}
