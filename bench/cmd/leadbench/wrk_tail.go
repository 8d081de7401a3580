package main

import (
	"context"
	"slices"
	"time"

	"github.com/leadstream/leadstream/stream"
	"github.com/segmentio/kafka-go"
)

// tailFacts locate a run's latency tail, from the children's own histograms
// over the measured window (bucket bounds, so coarse): the collector's
// handler time (Kafka acknowledgement included) and its produce requests'
// round trips, how long the collector's and the broker's goroutines waited
// for a CPU, and their GC pauses.
type tailFacts struct {
	HandlerP99Ms     float64 `json:"collector_handler_p99_ms"`
	HandlerP999Ms    float64 `json:"collector_handler_p999_ms"`
	ProduceP99Ms     float64 `json:"produce_request_p99_ms"`
	ProduceP999Ms    float64 `json:"produce_request_p999_ms"`
	ColSchedOver1ms  float64 `json:"collector_sched_waits_over_1ms"` // share of goroutine waits for a CPU above 0.92 ms
	ColSchedOver10ms float64 `json:"collector_sched_waits_over_10ms"`
	BrkSchedOver1ms  float64 `json:"broker_sched_waits_over_1ms"`
	BrkSchedOver10ms float64 `json:"broker_sched_waits_over_10ms"`
	ColGCCycles      float64 `json:"collector_gc_cycles"`
	BrkGCCycles      float64 `json:"broker_gc_cycles"`
	ColGCPauseMaxMs  float64 `json:"collector_gc_pause_max_bucket_ms"`
	BrkGCPauseMaxMs  float64 `json:"broker_gc_pause_max_bucket_ms"`
	// The broker probe: a metadata request every probeEvery from the
	// harness. kfake serves every request in one loop, so the probe waits
	// as long as a produce request arriving at the same moment would.
	ProbeP50Ms  float64 `json:"broker_probe_p50_ms"`
	ProbeP99Ms  float64 `json:"broker_probe_p99_ms"`
	ProbeMaxMs  float64 `json:"broker_probe_max_ms"`
	ProbeOver25 int     `json:"broker_probe_over_25ms"`
	Probes      int     `json:"broker_probes"`
	// Waiting for a CPU, from the kernel: the average number of the
	// process's threads that were runnable but not running, and the share
	// of the window in which some task on the machine waited (PSI "some").
	ColRunQueue float64 `json:"collector_threads_waiting_for_cpu"`
	BrkRunQueue float64 `json:"broker_threads_waiting_for_cpu"`
	CPUPressure float64 `json:"machine_cpu_pressure_some"`
	// Where a request's time goes, means over the window: the collector's
	// handler (from the request read to the answer, Kafka acknowledgement
	// included) and the three phases of its produce call
	// (leadstream_kafka_produce_wait_seconds); zero for a build without
	// that metric.
	HandlerMeanMs float64 `json:"collector_handler_mean_ms"`
	QueuedMeanMs  float64 `json:"produce_queued_mean_ms"`
	KafkaMeanMs   float64 `json:"produce_kafka_mean_ms"`
	WakeupMeanMs  float64 `json:"produce_wakeup_mean_ms"`
	QueuedP99Ms   float64 `json:"produce_queued_p99_ms"`
	KafkaP99Ms    float64 `json:"produce_kafka_p99_ms"`
	WakeupP99Ms   float64 `json:"produce_wakeup_p99_ms"`
}

const probeEvery = 5 * time.Millisecond

// probeBroker sends a metadata request to b every probeEvery until stop and
// records each round trip.
func probeBroker(ctx context.Context, b *broker, stop <-chan struct{}) <-chan []int64 {
	out := make(chan []int64, 1)
	go func() {
		var lat []int64
		t := time.NewTicker(probeEvery)
		defer t.Stop()
		topic := b.topic(stream.TopicEvents)
		for {
			select {
			case <-stop:
				out <- lat
				return
			case <-ctx.Done():
				out <- lat
				return
			case <-t.C:
			}
			t0 := time.Now()
			if _, err := b.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}}); err == nil {
				lat = append(lat, int64(time.Since(t0)))
			}
		}
	}()
	return out
}

func (t *tailFacts) addProbes(lat []int64) {
	slices.Sort(lat)
	t.Probes = len(lat)
	t.ProbeP50Ms, t.ProbeP99Ms = pctMs(lat, 0.5), pctMs(lat, 0.99)
	if len(lat) > 0 {
		t.ProbeMaxMs = float64(lat[len(lat)-1]) / 1e6
	}
	for _, l := range lat {
		if l > int64(25*time.Millisecond) {
			t.ProbeOver25++
		}
	}
}

// Bounds of the runtime's scheduling-latency histogram buckets.
const (
	sched1ms  = 0.0009175039999999999
	sched10ms = 0.010485759999999998
)

func tailOf(col0, col1, brk0, brk1 promText, endpoint string) tailFacts {
	handler := hist(col0, col1, "leadstream_collector_request_duration_seconds", `endpoint="`+endpoint+`"`)
	produce := hist(col0, col1, "leadstream_kafka_produce_duration_seconds")
	cs, bs := hist(col0, col1, "go_sched_latencies_seconds"), hist(brk0, brk1, "go_sched_latencies_seconds")
	mean := func(name string, labels ...string) float64 {
		n := col1.sum(name+"_count", labels...) - col0.sum(name+"_count", labels...)
		if n <= 0 {
			return 0
		}
		return 1000 * (col1.sum(name+"_sum", labels...) - col0.sum(name+"_sum", labels...)) / n
	}
	const wait = "leadstream_kafka_produce_wait_seconds"
	phase := func(p string) string { return `phase="` + p + `"` }
	return tailFacts{
		HandlerMeanMs: mean("leadstream_collector_request_duration_seconds", `endpoint="`+endpoint+`"`),
		QueuedMeanMs:  mean(wait, phase("queued")), KafkaMeanMs: mean(wait, phase("kafka")), WakeupMeanMs: mean(wait, phase("wakeup")),
		QueuedP99Ms:  1000 * histQuantile(hist(col0, col1, wait, phase("queued")), 0.99),
		KafkaP99Ms:   1000 * histQuantile(hist(col0, col1, wait, phase("kafka")), 0.99),
		WakeupP99Ms:  1000 * histQuantile(hist(col0, col1, wait, phase("wakeup")), 0.99),
		HandlerP99Ms: 1000 * histQuantile(handler, 0.99), HandlerP999Ms: 1000 * histQuantile(handler, 0.999),
		ProduceP99Ms: 1000 * histQuantile(produce, 0.99), ProduceP999Ms: 1000 * histQuantile(produce, 0.999),
		ColSchedOver1ms: histOver(cs, sched1ms), ColSchedOver10ms: histOver(cs, sched10ms),
		BrkSchedOver1ms: histOver(bs, sched1ms), BrkSchedOver10ms: histOver(bs, sched10ms),
		ColGCCycles:     col1.sum("go_gc_cycles_total_gc_cycles_total") - col0.sum("go_gc_cycles_total_gc_cycles_total"),
		BrkGCCycles:     brk1.sum("go_gc_cycles_total_gc_cycles_total") - brk0.sum("go_gc_cycles_total_gc_cycles_total"),
		ColGCPauseMaxMs: 1000 * histQuantile(hist(col0, col1, "go_sched_pauses_total_gc_seconds"), 1),
		BrkGCPauseMaxMs: 1000 * histQuantile(hist(brk0, brk1, "go_sched_pauses_total_gc_seconds"), 1),
	}
}
