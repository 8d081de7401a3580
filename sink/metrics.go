package sink

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadstream/leadstream/warehouse"
)

type metrics struct {
	rows         *prometheus.CounterVec
	insertTime   *prometheus.HistogramVec
	insertErrors *prometheus.CounterVec
	deadLetters  *prometheus.CounterVec
	lastDead     *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_sink_rows_total",
			Help: "Rows inserted into ClickHouse, by table; a retried batch counts again."}, []string{"table"}),
		insertTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "leadstream_sink_insert_duration_seconds",
			Help:    "Time to insert one batch into one table, failed attempts included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}, []string{"table"}),
		insertErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_sink_insert_errors_total",
			Help: "Failed inserts, by table; the whole batch is retried."}, []string{"table"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_sink_deadletter_total",
			Help: "Records sent to the dead-letter topic because they could not be decoded or stored, by source topic."}, []string{"topic"}),
		// For alerting: a time tells "recently" after a gap in scraping and
		// from a process that dead-lettered before its first scrape.
		lastDead: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "leadstream_sink_deadletter_last_timestamp_seconds",
			Help: "Unix time of this sink's last record sent to the dead-letter topic, by source topic; 0 until then."}, []string{"topic"}),
	}
	if reg != nil {
		reg.MustRegister(m.rows, m.insertTime, m.insertErrors, m.deadLetters, m.lastDead)
	}
	for _, t := range []string{warehouse.TableEvents, warehouse.TableIdentityLinks, warehouse.TableMQL, warehouse.TableAccountMembers, warehouse.TableMQA} {
		m.rows.WithLabelValues(t)
		m.insertTime.WithLabelValues(t)
		m.insertErrors.WithLabelValues(t)
	}
	return m
}
