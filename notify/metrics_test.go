package notify

import (
	"maps"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The notifier exports, from the start and per destination, the series the
// dashboard's Notifications row queries (deploy/grafana/leadstream.json;
// deploy's dashboard test lists them as pending while the notifier is not in
// the deployed stack), with the labels the queries use.
func TestMetricsTheDashboardUses(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	m.init("crm")
	m.lag.WithLabelValues("crm", KindMQL) // set by the feed once it runs
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]bool{}
	for _, mf := range mfs {
		labels := map[string]bool{}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		got[mf.GetName()] = labels
	}
	want := map[string][]string{
		"leadstream_notifier_deliveries_total":         {"destination", "result"},
		"leadstream_notifier_attempts_total":           {"destination", "result"},
		"leadstream_notifier_oldest_pending_seconds":   {"destination"},
		"leadstream_notifier_pending_records":          {"destination"},
		"leadstream_notifier_delivery_delay_seconds":   {"destination"},
		"leadstream_notifier_attempt_duration_seconds": {"destination"},
		"leadstream_notifier_lag_records":              {"destination", "kind"},
	}
	for name, labels := range want {
		have, ok := got[name]
		if !ok {
			t.Errorf("%s not exported (have %v)", name, slices.Sorted(maps.Keys(got)))
			continue
		}
		for _, l := range labels {
			if !have[l] {
				t.Errorf("%s without label %s", name, l)
			}
		}
	}
}
