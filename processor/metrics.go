package processor

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	reg    prometheus.Registerer // for this stage's Kafka clients, labelled stage="processor"
	events *prometheus.CounterVec
	mql    prometheus.Counter
	mqa    prometheus.Counter
	merges prometheus.Counter
	// conflicts counts compare-and-sets lost to a concurrent change.
	conflicts prometheus.Counter
	apply     prometheus.Histogram
	delay     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_processor_events_total", Help: "Events handled, by result."}, []string{"result"}),
		mql:    prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_processor_mql_published_total", Help: "MQL records acknowledged by Kafka."}),
		mqa:    prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_processor_mqa_published_total", Help: "MQA (account) records acknowledged by Kafka."}),
		merges: prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_processor_merges_total", Help: "Histories merged: visitors into the leads they became, leads into leads (alias)."}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_processor_commit_conflicts_total",
			Help: "Compare-and-sets of a lead's state lost to a concurrent change by another processor; the batch is planned again."}),
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "leadstream_processor_apply_duration_seconds",
			Help:    "Time each event waited for its batch to be planned and stored in Redis (read, plan, compare-and-sets), observed once per event scored or merge completed.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17)}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "leadstream_processor_score_delay_seconds",
			Help:    "Time from the collector accepting an event (its received_at) to the end of the processor's handling of its batch (score applied in Redis): the accept-to-score latency, Kafka and consumer lag included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18)}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.mql, m.mqa, m.merges, m.conflicts, m.apply, m.delay)
		m.reg = prometheus.WrapRegistererWith(prometheus.Labels{"stage": "processor"}, reg)
	}
	for _, r := range []string{"scored", "duplicate", "no_match", "late", "stale", "dead_letter", "bot"} {
		m.events.WithLabelValues(r)
	}
	return m
}
