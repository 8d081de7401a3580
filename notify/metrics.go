package notify

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	attempts   *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	delay      *prometheus.HistogramVec
	pending    *prometheus.GaugeVec
	oldest     *prometheus.GaugeVec
	lag        *prometheus.GaugeVec
	commitErrs *prometheus.CounterVec
	recorded   prometheus.Counter
	recordErrs prometheus.Counter
}

// Attempt results (leadstream_notifier_attempts_total) and the status
// column of the notifications table.
const (
	attemptDelivered   = "delivered"   // 2xx, or the SMTP server accepted the message
	attemptRetry       = "retry"       // failed, will be tried again
	attemptRejected    = "rejected"    // failed for good (4xx, SMTP 5xx): dead-lettered
	attemptExpired     = "expired"     // failed, and max-age is reached: dead-lettered
	attemptInterrupted = "interrupted" // cut short by shutdown: delivered again after a restart
)

// Delivery results (leadstream_notifier_deliveries_total): what became of a record.
const (
	resultDelivered  = "delivered"
	resultDeadLetter = "dead_letter"
	resultFiltered   = "filtered" // not for this destination
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_notifier_attempts_total",
			Help: "Delivery attempts by destination and result: delivered, retry, rejected, expired, interrupted."}, []string{"destination", "result"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_notifier_deliveries_total",
			Help: "Records done with, by destination and result: delivered, dead_letter, filtered."}, []string{"destination", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "leadstream_notifier_attempt_duration_seconds",
			Help: "Duration of one delivery attempt.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}, []string{"destination"}),
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "leadstream_notifier_delivery_delay_seconds",
			Help: "From a record's publication to its delivery (retries included).", Buckets: prometheus.ExponentialBuckets(0.01, 3, 14)}, []string{"destination"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "leadstream_notifier_pending_records",
			Help: "Records a destination holds: in flight or waiting to retry."}, []string{"destination"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "leadstream_notifier_oldest_pending_seconds",
			Help: "Age (since publication) of the oldest record a destination still holds: the retry age; dead-lettered at notify.max-age."}, []string{"destination"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "leadstream_notifier_lag_records",
			Help: "Records of a topic a destination has not fetched yet."}, []string{"destination", "kind"}),
		commitErrs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_notifier_commit_errors_total",
			Help: "Failed offset commits (retried; a crash before one succeeds means redelivery)."}, []string{"destination"}),
		recorded: prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_notifier_recorded_attempts_total",
			Help: "Attempts written to the ClickHouse notifications table."}),
		recordErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_notifier_record_errors_total",
			Help: "Failed inserts into the notifications table (retried)."}),
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.deliveries, m.duration, m.delay, m.pending, m.oldest, m.lag, m.commitErrs, m.recorded, m.recordErrs)
	}
	return m
}

// init creates a destination's series, so they exist before the first record.
func (m *metrics) init(dest string) {
	for _, r := range []string{attemptDelivered, attemptRetry, attemptRejected, attemptExpired, attemptInterrupted} {
		m.attempts.WithLabelValues(dest, r)
	}
	for _, r := range []string{resultDelivered, resultDeadLetter, resultFiltered} {
		m.deliveries.WithLabelValues(dest, r)
	}
	m.pending.WithLabelValues(dest)
	m.oldest.WithLabelValues(dest)
	m.commitErrs.WithLabelValues(dest)
	m.duration.WithLabelValues(dest)
	m.delay.WithLabelValues(dest)
}
