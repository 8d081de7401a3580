package ingest

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Requests that waited for Kafka until the produce timeout land in a
// bucket, not in +Inf, whatever the timeout.
func TestDurationBucketsCoverTimeout(t *testing.T) {
	for _, timeout := range []time.Duration{time.Second, 5 * time.Second, 30 * time.Second} {
		b := durationBuckets(timeout)
		if last := b[len(b)-1]; last < 2*timeout.Seconds() {
			t.Errorf("timeout %s: last bucket %gs", timeout, last)
		}
		if b[0] != 0.0002 {
			t.Errorf("timeout %s: first bucket %g", timeout, b[0])
		}
	}
}

// The series an alert divides by exist at zero before the first request.
func TestMetricLabelsPreinitialised(t *testing.T) {
	reg := prometheus.NewRegistry()
	newMetrics(reg, 5*time.Second)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	has := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			has[key] = true
		}
	}
	for _, want := range []string{
		"leadstream_collector_requests_total,code=503,endpoint=/v1/batch",
		"leadstream_collector_requests_total,code=200,endpoint=/v1/track",
		"leadstream_collector_requests_total,code=401,endpoint=/f",
		"leadstream_collector_request_duration_seconds,endpoint=/o",
		"leadstream_collector_events_total,type=deal_won",
		"leadstream_collector_rejected_total,reason=unavailable",
		"leadstream_collector_bot_events_total,reason=link_burst",
		"leadstream_collector_email_requests_total,kind=click,result=invalid_token",
		"leadstream_collector_gpc_requests_total,endpoint=/v1",
		"leadstream_collector_gpc_requests_total,endpoint=/f",
	} {
		if !has[want] {
			t.Errorf("series %s not created at start", want)
		}
	}
}
