package stream

import "github.com/prometheus/client_golang/prometheus"

type producerMetrics struct {
	records, failed, rejected, errors prometheus.Counter
	bytes, rawBytes                   prometheus.Counter
	batches, latency                  prometheus.Histogram
	queueBytes                        prometheus.Gauge
	// wait splits the time of a Produce call that Kafka acknowledged:
	// waitQueued, waitKafka and waitWakeup observe its three phases.
	wait                              *prometheus.HistogramVec // phase
	waitQueued, waitKafka, waitWakeup prometheus.Observer
}

func newProducerMetrics(reg prometheus.Registerer) *producerMetrics {
	m := &producerMetrics{
		records:  prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_kafka_produced_records_total", Help: "Records acknowledged by Kafka (acks=all)."}),
		failed:   prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_kafka_produce_failed_records_total", Help: "Records Kafka did not acknowledge in time; their callers got an error."}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_kafka_produce_rejected_records_total", Help: "Records refused because the produce queue was full."}),
		errors:   prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_kafka_produce_errors_total", Help: "Failed produce requests, retries included."}),
		bytes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_kafka_produced_bytes_total", Help: "Bytes of the record batches written (61-byte batch headers included), as sent (compressed): what the network and the broker's disk carry."}),
		rawBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_kafka_produced_uncompressed_bytes_total", Help: "Bytes of the record batches written (61-byte batch headers included), before compression."}),
		batches: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "leadstream_kafka_produce_batch_records", Help: "Records per partition batch of a produce request (one request carries a batch per partition).",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8)}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "leadstream_kafka_produce_duration_seconds", Help: "Time from sending a produce request to its acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		queueBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "leadstream_kafka_produce_queue_bytes", Help: "Bytes waiting for Kafka."}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "leadstream_kafka_produce_wait_seconds",
			Help:    "Where the time of an acknowledged produce call goes, per call: phase=queued until its records were handed to the Kafka client (the burst in flight not yet acknowledged), kafka until the last one was acknowledged (request built and sent, broker, response), wakeup until the caller ran again (waiting for a CPU).",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 17)}, []string{"phase"}),
	}
	m.waitQueued, m.waitKafka, m.waitWakeup = m.wait.WithLabelValues("queued"), m.wait.WithLabelValues("kafka"), m.wait.WithLabelValues("wakeup")
	if reg != nil {
		reg.MustRegister(m.records, m.failed, m.rejected, m.errors, m.bytes, m.rawBytes, m.batches, m.latency, m.queueBytes, m.wait)
	}
	return m
}

type consumerMetrics struct {
	records, batches, handlerErrors, commitErrors, fetchErrors prometheus.Counter
	lag                                                        *prometheus.GaugeVec   // topic, partition
	outOfRange                                                 *prometheus.CounterVec // topic, partition
	outOfRangeLast                                             *prometheus.GaugeVec   // topic
}

func newConsumerMetrics(reg prometheus.Registerer) *consumerMetrics {
	m := &consumerMetrics{
		records:       prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_kafka_consumed_records_total", Help: "Records whose batch was handled."}),
		batches:       prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_kafka_consume_batches_total", Help: "Batches handled."}),
		handlerErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_kafka_handler_errors_total", Help: "Handler failures; the batch is retried."}),
		commitErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_kafka_commit_errors_total", Help: "Offset commits that failed; the batch will be redelivered."}),
		fetchErrors:   prometheus.NewCounter(prometheus.CounterOpts{Name: "leadstream_kafka_fetch_errors_total", Help: "Failed fetches (brokers unreachable); retried with backoff."}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "leadstream_kafka_consumer_lag_records",
			Help: "Records between the group's committed offset and the end of the partition (high-water mark), read from the brokers every few seconds, also while batches fail."}, []string{"topic", "partition"}),
		outOfRange: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_kafka_consumer_out_of_range_records_total",
			Help: "Records deleted by retention before the group read them: its committed offset fell out of range and consuming resumed at the first record kept. Never processed."}, []string{"topic", "partition"}),
		// A time, not a count, for alerting: it tells "recently" after a gap
		// in scraping, and from a process whose first batch already skipped,
		// where increase() of the counter sees nothing.
		outOfRangeLast: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "leadstream_kafka_consumer_out_of_range_last_timestamp_seconds",
			Help: "Unix time at which this consumer last found the group's committed offset of a partition of the topic out of range (records skipped); 0 until then."}, []string{"topic"}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.batches, m.handlerErrors, m.commitErrors, m.fetchErrors, m.lag, m.outOfRange, m.outOfRangeLast)
	}
	return m
}
