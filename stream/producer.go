package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Record is one Kafka record to produce.
type Record struct {
	Key   []byte
	Value []byte
}

// ProducerConfig configures a Producer for one topic.
type ProducerConfig struct {
	Brokers  []string
	Security Security
	Topic    string
	// MaxBatchBytes bounds one partition's batch in a produce request.
	// Kafka's default message.max.bytes is ~1 MiB, so stay below it.
	MaxBatchBytes int
	// MaxQueueBytes bounds what may wait for Kafka across all partitions;
	// beyond it Produce fails fast with ErrQueueFull (the collector answers 503).
	MaxQueueBytes int64
	// Timeout bounds how long Produce waits for an acknowledgement, retries included.
	Timeout time.Duration
	// Linger is how long a partition with new records waits for more before
	// a produce request is built (then all partitions with records go in
	// it). Zero means DefaultLinger, negative none.
	Linger time.Duration
}

// DefaultLinger is ProducerConfig.Linger's default. Under load it makes
// produce requests several times larger (fewer requests for the broker and
// the client to handle) for a fraction of a millisecond of latency; without
// it, group commit alone batches only what arrives during a round trip.
const DefaultLinger = 200 * time.Microsecond

func (c *ProducerConfig) setDefaults() {
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 900 << 10
	}
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = 64 << 20
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
}

// Producer writes records to one topic with acks=all and group commit: every
// record handed to Produce while a broker's previous requests are in flight
// joins that broker's next produce request, which carries the batches of all
// its partitions. Concurrent callers therefore share Kafka round trips
// instead of paying one each, and Produce returns only once Kafka has
// acknowledged every record it was given.
//
// The Kafka client underneath is franz-go's kgo: idempotent (so records of a
// partition stay in order with several requests in flight, and a retried
// request is not written twice), a short linger (ProducerConfig.Linger), no
// compression.
//
// Records are partitioned by murmur2 of the key (the Java client's default), so
// other Kafka clients agree on which partition a key lives in.
type Producer struct {
	cfg     ProducerConfig
	cn      *conn
	client  *kgo.Client
	log     *slog.Logger
	m       *producerMetrics
	ids     []int
	queued  atomic.Int64
	closed  atomic.Bool
	healthy atomic.Bool
	// reachable is whether the last ping of the brokers succeeded: without
	// traffic, a lost connection shows only there.
	reachable atomic.Bool
	stopPing  chan struct{}
	pingDone  chan struct{}
	mu        sync.RWMutex // held for reading while handing records to the client; Close takes it for writing
}

// waiter completes when every record of one Produce call has an outcome.
// Promises of one client are called serially, so the fields other than
// done need no lock; the last one sends on done. Waiters whose Produce saw
// that send are recycled with their records.
type waiter struct {
	p       *Producer
	n       int // records of the call
	left    int
	failed  int
	bytes   int64
	err     error
	done    chan struct{} // buffered; one send per use
	krs     []kgo.Record
	promise func(*kgo.Record, error)
}

func (w *waiter) onRecord(_ *kgo.Record, err error) {
	if err != nil {
		w.failed++
		if w.err == nil {
			w.err = err
		}
	}
	w.left--
	if w.left == 0 {
		w.p.finish(w)
	}
}

var waiters sync.Pool

func (p *Producer) getWaiter(n int, bytes int64) *waiter {
	w, _ := waiters.Get().(*waiter)
	if w == nil {
		w = &waiter{done: make(chan struct{}, 1)}
		w.promise = w.onRecord
	}
	w.p, w.n, w.left, w.failed, w.bytes, w.err = p, n, n, 0, bytes, nil
	if cap(w.krs) < n {
		w.krs = make([]kgo.Record, n)
	}
	w.krs = w.krs[:n]
	return w
}

// putWaiter recycles a waiter after its Produce received from done: the
// client holds none of its records any more.
func putWaiter(w *waiter) {
	if cap(w.krs) > 4096 {
		return
	}
	clear(w.krs)
	w.p, w.err = nil, nil
	waiters.Put(w)
}

// NewProducer looks up the topic's partitions and connects a client.
func NewProducer(ctx context.Context, cfg ProducerConfig, log *slog.Logger, reg prometheus.Registerer) (*Producer, error) {
	cfg.setDefaults()
	if len(cfg.Brokers) == 0 {
		return nil, ErrNoBrokers
	}
	cn, err := cfg.Security.build()
	if err != nil {
		return nil, err
	}
	client := newClient(cfg.Brokers, cn, cfg.Timeout)
	n, err := partitionCount(ctx, client, cn, cfg.Topic)
	closeClient(client)
	if err != nil {
		return nil, cn.explain(cfg.Brokers, err)
	}
	p := &Producer{
		cfg: cfg,
		cn:  cn,
		log: log.With("topic", cfg.Topic),
		m:   newProducerMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"topic": cfg.Topic}, reg)),
	}
	for i := range n {
		p.ids = append(p.ids, i)
	}
	p.client, err = kgo.NewClient(append(cn.kgoOpts(),
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // a 200 to the client means durably replicated
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// Group commit: what arrives while requests are in flight goes into
		// the next one, which waits up to Linger for more.
		kgo.ProducerLinger(max(cfg.Linger, 0)),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(int32(cfg.MaxBatchBytes)),
		// The queue is bounded in bytes by Produce; the client must never block.
		kgo.MaxBufferedRecords(math.MaxInt32),
		// The client allows no record timeout under 1s; Produce enforces a
		// shorter Timeout itself.
		kgo.RecordDeliveryTimeout(max(cfg.Timeout, time.Second)),
		kgo.ProduceRequestTimeout(max(cfg.Timeout, time.Second)),
		kgo.MetadataMinAge(time.Second),
		kgo.MetadataMaxAge(time.Minute),
		kgo.WithHooks(produceHooks{p.m}),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer for %s: %w", cfg.Topic, err)
	}
	// The producing client authenticates on its own connections: check
	// them too, so a wrong setting fails here and not at the first event.
	pctx, cancel := context.WithTimeout(ctx, checkTimeout)
	err = p.client.Ping(pctx)
	cancel()
	if err != nil {
		p.client.Close()
		return nil, cn.explain(cfg.Brokers, err)
	}
	p.healthy.Store(true)
	p.reachable.Store(true)
	p.stopPing = make(chan struct{})
	p.pingDone = make(chan struct{})
	go p.pingLoop()
	return p, nil
}

var balancer = kafka.Murmur2Balancer{Consistent: true}

// Partition returns the partition a key is written to.
func (p *Producer) Partition(key []byte) int {
	return balancer.Balance(kafka.Message{Key: key}, p.ids...)
}

// Healthy reports whether the last produce request succeeded and the
// brokers answered the last ping.
func (p *Producer) Healthy() bool {
	return p.healthy.Load() && p.reachable.Load() && !p.closed.Load()
}

// pingInterval is how often an idle producer checks its brokers.
const pingInterval = 5 * time.Second

// pingLoop keeps reachable up to date until Close.
func (p *Producer) pingLoop() {
	defer close(p.pingDone)
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stopPing:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), pingInterval)
		err := p.client.Ping(ctx)
		cancel()
		switch was := p.reachable.Swap(err == nil); {
		case err != nil && was:
			p.log.Warn("kafka brokers unreachable: not ready until they answer", "err", p.cn.explain(p.cfg.Brokers, err))
		case err == nil && !was:
			p.log.Info("kafka brokers reachable again")
		}
	}
}

// Produce enqueues recs and waits until Kafka acknowledged all of them (acks=all).
// It returns ErrQueueFull at once when the queue is over its bound, and an error
// wrapping ErrUnavailable when Kafka did not acknowledge in time; in both cases
// the caller must treat every record as not written.
func (p *Producer) Produce(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	var size int64
	for i := range recs {
		size += int64(len(recs[i].Key) + len(recs[i].Value))
	}
	if p.queued.Add(size) > p.cfg.MaxQueueBytes {
		p.queued.Add(-size)
		p.m.rejected.Add(float64(len(recs)))
		return ErrQueueFull
	}
	p.mu.RLock()
	if p.closed.Load() {
		p.mu.RUnlock()
		p.queued.Add(-size)
		return ErrClosed
	}
	w := p.getWaiter(len(recs), size)
	for i, r := range recs {
		kr := &w.krs[i]
		*kr = kgo.Record{Key: r.Key, Value: r.Value, Partition: int32(p.Partition(r.Key))}
		// The records outlive ctx on purpose: once queued they may be
		// written, and RecordDeliveryTimeout bounds how long they wait.
		p.client.TryProduce(context.Background(), kr, w.promise)
	}
	p.mu.RUnlock()
	p.m.queueBytes.Set(float64(p.queued.Load()))
	// Timeout is enforced here: an idempotent client never fails a request
	// whose outcome it does not know, so against a broker that accepts
	// requests and never answers, its own delivery timeout does not fire.
	// A caller whose own deadline comes first (the collector's) needs no timer.
	var timeout <-chan time.Time
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > p.cfg.Timeout {
		t := time.NewTimer(p.cfg.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-w.done:
		err := w.err
		putWaiter(w)
		return err
	case <-timeout:
		p.unhealthy()
		return fmt.Errorf("%w: producing to %s: no acknowledgement within %s", ErrUnavailable, p.cfg.Topic, p.cfg.Timeout)
	case <-ctx.Done():
		// The records stay queued and may still be written; the caller was
		// told nothing was, which is safe because consumers dedup by event id.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			p.unhealthy() // the caller's own deadline for Kafka passed
		}
		return fmt.Errorf("waiting for kafka acknowledgement: %w", ctx.Err())
	}
}

// unhealthy marks the producer not ready until the next acknowledgement.
func (p *Producer) unhealthy() {
	if p.healthy.Swap(false) {
		p.log.Warn("kafka did not acknowledge in time: not ready until it does")
	}
}

// finish runs once per Produce call, when its last record has an outcome.
func (p *Producer) finish(w *waiter) {
	p.queued.Add(-w.bytes)
	p.m.queueBytes.Set(float64(p.queued.Load()))
	if ok := w.n - w.failed; ok > 0 {
		p.m.records.Add(float64(ok))
	}
	if w.failed > 0 {
		p.m.failed.Add(float64(w.failed))
	}
	if w.err == nil {
		if !p.healthy.Load() {
			p.healthy.Store(true)
			p.log.Info("produce recovered")
		}
	} else {
		switch {
		case errors.Is(w.err, kgo.ErrClientClosed):
			w.err = ErrClosed
		case errors.Is(w.err, kgo.ErrMaxBuffered):
			w.err = ErrQueueFull
		default:
			if p.healthy.Swap(false) {
				p.log.Warn("produce failed", "records", w.failed, "err", w.err)
			}
			w.err = fmt.Errorf("%w: producing to %s: %v", ErrUnavailable, p.cfg.Topic, w.err)
		}
	}
	w.done <- struct{}{} // last: Produce may recycle w right after
}

// produceHooks feeds the producer metrics from the client.
type produceHooks struct{ m *producerMetrics }

func (h produceHooks) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, bm kgo.ProduceBatchMetrics) {
	h.m.batches.Observe(float64(bm.NumRecords))
}

func (h produceHooks) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	if key != 0 { // produce requests only
		return
	}
	if e2e.Err() != nil {
		h.m.errors.Inc()
		return
	}
	h.m.latency.Observe(e2e.DurationE2E().Seconds())
}

// Close flushes what is queued and stops the client.
func (p *Producer) Close() error {
	p.mu.Lock()
	if p.closed.Swap(true) {
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	close(p.stopPing)
	<-p.pingDone
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Timeout+time.Second)
	defer cancel()
	err := p.client.Flush(ctx)
	p.client.Close()
	if err != nil {
		return fmt.Errorf("flushing kafka producer: %w", err)
	}
	return nil
}
