package processor

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	reg    prometheus.Registerer // for this stage's Kafka clients, labelled stage="processor"
	events *prometheus.CounterVec
	mql    prometheus.Counter
	merges prometheus.Counter
	apply  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_processor_events_total", Help: "Events handled, by result."}, []string{"result"}),
		mql:    prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_processor_mql_published_total", Help: "MQL records acknowledged by Kafka."}),
		merges: prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_processor_merges_total", Help: "Anonymous histories merged into leads."}),
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "leadstream_processor_apply_duration_seconds",
			Help:    "Time each event waited for its Redis apply: the pipelined round trips of the batch it was applied in, observed once per event (count = events applied).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17)}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.mql, m.merges, m.apply)
		m.reg = prometheus.WrapRegistererWith(prometheus.Labels{"stage": "processor"}, reg)
	}
	for _, r := range []string{"scored", "duplicate", "no_match", "dead_letter", "bot"} {
		m.events.WithLabelValues(r)
	}
	return m
}
