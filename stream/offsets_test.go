package stream

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// metricValue returns the value of the gauge or counter name whose labels
// include want, and whether it exists.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

func waitFor(t *testing.T, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, state := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached; last state: %s", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// produceKey writes n records with one key (so to one partition) and
// returns that partition.
func produceKey(ctx context.Context, t *testing.T, c *kfake.Cluster, n int) int {
	t.Helper()
	p := newTestProducer(ctx, t, c, nil)
	defer p.Close()
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Key: []byte("k"), Value: []byte(strconv.Itoa(i))}
	}
	if err := p.Produce(ctx, recs); err != nil {
		t.Fatal(err)
	}
	return p.Partition([]byte("k"))
}

// The lag gauge comes from the group's committed offset and the partition's
// high-water mark, per partition, and keeps moving while every batch fails.
func TestLagWhileBatchesFail(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newCluster(t, "t")
	part := produceKey(ctx, t, c, 10)
	reg := prometheus.NewRegistry()
	cons, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: "g", Topics: []string{"t"}, MaxWait: 10 * time.Millisecond,
		LagInterval: 50 * time.Millisecond, DrainTimeout: time.Second}, quiet, reg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = cons.Run(rctx, func(context.Context, []Message) error { return fmt.Errorf("redis is down") })
	}()
	lag := func(want int) func() (bool, string) {
		return func() (bool, string) {
			v, ok := metricValue(t, reg, "leadstream_kafka_consumer_lag_records", map[string]string{"group": "g", "topic": "t", "partition": strconv.Itoa(part)})
			return ok && v == float64(want), fmt.Sprintf("lag %v (present %v)", v, ok)
		}
	}
	waitFor(t, "lag 10 while batches fail", lag(10))
	produceKey(ctx, t, c, 5)
	waitFor(t, "lag 15 after 5 more, batches still failing", lag(15))
	// Every partition's series exists, also those without records.
	for p := range 4 {
		if _, ok := metricValue(t, reg, "leadstream_kafka_consumer_lag_records", map[string]string{"partition": strconv.Itoa(p)}); !ok {
			t.Errorf("no lag series for partition %d", p)
		}
		if _, ok := metricValue(t, reg, "leadstream_kafka_consumer_out_of_range_records_total", map[string]string{"partition": strconv.Itoa(p)}); !ok {
			t.Errorf("no out-of-range series for partition %d", p)
		}
	}
	stop()
	<-done
}

// logRecorder keeps the messages of records at error level.
type logRecorder struct {
	mu     sync.Mutex
	errors []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	if rec.Level >= slog.LevelError {
		var b strings.Builder
		b.WriteString(rec.Message)
		rec.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
		r.mu.Lock()
		r.errors = append(r.errors, b.String())
		r.mu.Unlock()
	}
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// A group whose committed offset fell behind retention resumes at the first
// record kept, and the records it never read are counted and logged as an
// error, not skipped silently. The lag is then measured from where it is.
func TestOutOfRangeIsReported(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newCluster(t, "t")
	part := produceKey(ctx, t, c, 10)

	// The group committed offset 3, then retention deleted offsets 0-7.
	client := &kafka.Client{Addr: kafka.TCP(c.ListenAddrs()...), Timeout: 10 * time.Second}
	res, err := client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: "g", GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{"t": {{Partition: part, Offset: 3}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range res.Topics {
		for _, p := range ps {
			if p.Error != nil {
				t.Fatal(p.Error)
			}
		}
	}
	kcl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer kcl.Close()
	del := kmsg.NewPtrDeleteRecordsRequest()
	dt := kmsg.NewDeleteRecordsRequestTopic()
	dt.Topic = "t"
	dp := kmsg.NewDeleteRecordsRequestTopicPartition()
	dp.Partition, dp.Offset = int32(part), 8
	dt.Partitions = append(dt.Partitions, dp)
	del.Topics = append(del.Topics, dt)
	dres, err := del.RequestWith(ctx, kcl)
	if err != nil {
		t.Fatal(err)
	}
	if code := dres.Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("delete records: error code %d", code)
	}

	reg := prometheus.NewRegistry()
	logs := &logRecorder{}
	cons, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: "g", Topics: []string{"t"}, MaxWait: 10 * time.Millisecond,
		LagInterval: 50 * time.Millisecond}, slog.New(logs), reg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	var (
		mu      sync.Mutex
		offsets []int64
	)
	done := make(chan error, 1)
	go func() {
		done <- cons.Run(rctx, func(_ context.Context, b []Message) error {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range b {
				offsets = append(offsets, m.Offset)
			}
			return nil
		})
	}()
	waitFor(t, "the two records kept are consumed", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(offsets) == 2, fmt.Sprint(offsets)
	})
	labels := map[string]string{"group": "g", "topic": "t", "partition": strconv.Itoa(part)}
	if v, _ := metricValue(t, reg, "leadstream_kafka_consumer_out_of_range_records_total", labels); v != 5 {
		t.Errorf("out-of-range records %v, want 5 (offsets 3-7)", v)
	}
	if v, _ := metricValue(t, reg, "leadstream_kafka_consumer_out_of_range_last_timestamp_seconds", map[string]string{"group": "g", "topic": "t"}); time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("out-of-range last timestamp %v, want about now", v)
	}
	logs.mu.Lock()
	if len(logs.errors) != 1 || !strings.Contains(logs.errors[0], "fell behind retention") || !strings.Contains(logs.errors[0], "records_lost=5") {
		t.Errorf("error logs %q, want one about 5 lost records", logs.errors)
	}
	logs.mu.Unlock()
	waitFor(t, "lag 0 after catching up", func() (bool, string) {
		v, ok := metricValue(t, reg, "leadstream_kafka_consumer_lag_records", labels)
		return ok && v == 0, fmt.Sprint(v)
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(offsets) != "[8 9]" {
		t.Fatalf("consumed offsets %v, want [8 9]", offsets)
	}
}

// A group that never committed starts at the first record kept: that is not
// a loss, and a restarted consumer continuing from its own commit reports
// nothing either.
func TestNoOutOfRangeForNewOrContinuingGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newCluster(t, "t")
	produceKey(ctx, t, c, 10)
	for round := range 2 {
		reg := prometheus.NewRegistry()
		logs := &logRecorder{}
		cons, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: "g", Topics: []string{"t"}, MaxWait: 10 * time.Millisecond}, slog.New(logs), reg)
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		n := 0
		done := make(chan error, 1)
		go func() {
			done <- cons.Run(rctx, func(_ context.Context, b []Message) error {
				n += len(b)
				if n >= 10 {
					stop()
				}
				return nil
			})
		}()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		stop()
		if v, _ := metricValue(t, reg, "leadstream_kafka_consumer_out_of_range_records_total", map[string]string{"group": "g"}); v != 0 || len(logs.errors) > 0 {
			t.Fatalf("round %d: out-of-range %v, error logs %q", round, v, logs.errors)
		}
		produceKey(ctx, t, c, 10)
	}
}

// Topics are created with the configured retention, and with
// min.insync.replicas 2 when they have 3 replicas.
func TestTopicSettings(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	client := &kafka.Client{Addr: kafka.TCP(c.ListenAddrs()...), Timeout: 10 * time.Second}
	f := func(cfg Config, wantISR, wantRetention string) {
		t.Helper()
		cfg.Brokers, cfg.Partitions = c.ListenAddrs(), 2
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		if err := EnsureTopics(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		res, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: cfg.Topic(TopicEvents), ConfigNames: []string{"min.insync.replicas", "retention.ms"}}}})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, r := range res.Resources {
			for _, e := range r.ConfigEntries {
				got[e.ConfigName] = e.ConfigValue
			}
		}
		if got["min.insync.replicas"] != wantISR || got["retention.ms"] != wantRetention {
			t.Errorf("%s: min.insync.replicas %q, retention.ms %q; want %q, %q", cfg.TopicPrefix, got["min.insync.replicas"], got["retention.ms"], wantISR, wantRetention)
		}
	}
	f(Config{TopicPrefix: "rf3.", ReplicationFactor: 3, Retention: DefaultRetention}, "2", "604800000")
	f(Config{TopicPrefix: "rf1.", ReplicationFactor: 1, Retention: 36 * time.Hour}, "1", "129600000")
	f(Config{TopicPrefix: "isr3.", ReplicationFactor: 3, MinInsyncReplicas: 3, Retention: DefaultRetention}, "3", "604800000")
	if err := (&Config{Brokers: []string{"x"}, Partitions: 1, ReplicationFactor: 2, MinInsyncReplicas: 3}).Validate(); err == nil {
		t.Error("min.insync.replicas above the replication factor passed Validate")
	}
}

// The lag of a group that has not joined yet is measured at once (kfake,
// like some brokers, answers GROUP_ID_NOT_FOUND for it).
func TestLagBeforeTheGroupExists(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newCluster(t, "t")
	part := produceKey(ctx, t, c, 7)
	client := &kafka.Client{Addr: kafka.TCP(c.ListenAddrs()...), Timeout: 10 * time.Second}
	reg := prometheus.NewRegistry()
	w := newOffsetWatch(client, "nobody-yet", []string{"t"}, newConsumerMetrics(reg), quiet)
	if err := w.refreshLag(ctx); err != nil {
		t.Fatal(err)
	}
	if v, ok := metricValue(t, reg, "leadstream_kafka_consumer_lag_records", map[string]string{"topic": "t", "partition": strconv.Itoa(part)}); !ok || v != 7 {
		t.Fatalf("lag %v (present %v), want 7", v, ok)
	}
}
