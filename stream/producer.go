package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// Record is one Kafka record to produce.
type Record struct {
	Key   []byte
	Value []byte
}

// ProducerConfig configures a Producer for one topic.
type ProducerConfig struct {
	Brokers []string
	Topic   string
	// MaxBatchBytes bounds one produce request per partition. Kafka's default
	// message.max.bytes is ~1 MiB, so stay below it.
	MaxBatchBytes int
	// MaxQueueBytes bounds what may wait for Kafka across all partitions;
	// beyond it Produce fails fast with ErrQueueFull (the collector answers 503).
	MaxQueueBytes int64
	// Timeout bounds how long Produce waits for an acknowledgement, retries included.
	Timeout time.Duration
}

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
}

// Producer writes records to one topic with acks=all and group commit: every
// record handed to Produce while a partition's previous request is in flight
// joins that partition's next request. Concurrent callers therefore share
// Kafka round trips instead of paying one each, and Produce returns only once
// Kafka has acknowledged every record it was given.
//
// Records are partitioned by murmur2 of the key (the Java client's default), so
// other Kafka clients agree on which partition a key lives in.
type Producer struct {
	cfg     ProducerConfig
	client  *kafka.Client
	log     *slog.Logger
	m       *producerMetrics
	parts   []*partQueue
	ids     []int
	queued  atomic.Int64
	closed  atomic.Bool
	wg      sync.WaitGroup
	stop    chan struct{}
	healthy atomic.Bool
}

type pending struct {
	rec Record
	w   *waiter
}

// waiter completes when every record of one Produce call has an outcome.
type waiter struct {
	left atomic.Int32
	mu   sync.Mutex
	err  error
	done chan struct{}
}

func (w *waiter) finish(err error) {
	if err != nil {
		w.mu.Lock()
		if w.err == nil {
			w.err = err
		}
		w.mu.Unlock()
	}
	if w.left.Add(-1) == 0 {
		close(w.done)
	}
}

type partQueue struct {
	id     int
	mu     sync.Mutex
	queue  []pending
	bytes  int
	notify chan struct{}
}

// NewProducer looks up the topic's partitions and starts one flusher per partition.
func NewProducer(ctx context.Context, cfg ProducerConfig, log *slog.Logger, reg prometheus.Registerer) (*Producer, error) {
	cfg.setDefaults()
	if len(cfg.Brokers) == 0 {
		return nil, ErrNoBrokers
	}
	client := newClient(cfg.Brokers, cfg.Timeout)
	n, err := partitionCount(ctx, client, cfg.Topic)
	if err != nil {
		return nil, err
	}
	p := &Producer{
		cfg:    cfg,
		client: client,
		log:    log.With("topic", cfg.Topic),
		m:      newProducerMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"topic": cfg.Topic}, reg)),
		stop:   make(chan struct{}),
	}
	p.healthy.Store(true)
	for i := range n {
		q := &partQueue{id: i, notify: make(chan struct{}, 1)}
		p.parts = append(p.parts, q)
		p.ids = append(p.ids, i)
		p.wg.Add(1)
		go p.flushLoop(q)
	}
	return p, nil
}

var balancer = kafka.Murmur2Balancer{Consistent: true}

// Partition returns the partition a key is written to.
func (p *Producer) Partition(key []byte) int {
	return balancer.Balance(kafka.Message{Key: key}, p.ids...)
}

// Healthy reports whether the last produce request succeeded.
func (p *Producer) Healthy() bool { return p.healthy.Load() && !p.closed.Load() }

// Produce enqueues recs and waits until Kafka acknowledged all of them (acks=all).
// It returns ErrQueueFull at once when the queue is over its bound, and an error
// wrapping ErrUnavailable when Kafka did not acknowledge in time; in both cases
// the caller must treat every record as not written.
func (p *Producer) Produce(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	if p.closed.Load() {
		return ErrClosed
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
	w := &waiter{done: make(chan struct{})}
	w.left.Store(int32(len(recs)))
	for _, r := range recs {
		q := p.parts[p.Partition(r.Key)]
		q.mu.Lock()
		q.queue = append(q.queue, pending{rec: r, w: w})
		q.bytes += len(r.Key) + len(r.Value)
		q.mu.Unlock()
		select {
		case q.notify <- struct{}{}:
		default:
		}
	}
	p.m.queueBytes.Set(float64(p.queued.Load()))
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		// The records stay queued and may still be written; the caller was
		// told nothing was, which is safe because consumers dedup by event id.
		return fmt.Errorf("waiting for kafka acknowledgement: %w", ctx.Err())
	}
}

func (p *Producer) flushLoop(q *partQueue) {
	defer p.wg.Done()
	for {
		select {
		case <-q.notify:
		case <-p.stop:
			// Drain what was queued before Close so no caller is left waiting.
			for p.flushOnce(q) {
			}
			return
		}
		for p.flushOnce(q) {
		}
	}
}

// flushOnce sends up to MaxBatchBytes of q's queue and reports whether it sent anything.
func (p *Producer) flushOnce(q *partQueue) bool {
	q.mu.Lock()
	if len(q.queue) == 0 {
		q.mu.Unlock()
		return false
	}
	n, bytes := 0, 0
	for n < len(q.queue) {
		sz := len(q.queue[n].rec.Key) + len(q.queue[n].rec.Value)
		if n > 0 && bytes+sz > p.cfg.MaxBatchBytes {
			break
		}
		bytes += sz
		n++
	}
	batch := make([]pending, n)
	copy(batch, q.queue[:n])
	q.queue = append(q.queue[:0], q.queue[n:]...)
	q.bytes -= bytes
	q.mu.Unlock()

	err := p.send(q.id, batch)
	p.queued.Add(-int64(bytes))
	p.m.queueBytes.Set(float64(p.queued.Load()))
	for i := range batch {
		batch[i].w.finish(err)
	}
	return true
}

// send produces one batch to a partition, retrying transient failures until the timeout.
func (p *Producer) send(partition int, batch []pending) error {
	recs := make([]kafka.Record, len(batch))
	for i := range batch {
		recs[i] = kafka.Record{Key: kafka.NewBytes(batch[i].rec.Key), Value: kafka.NewBytes(batch[i].rec.Value)}
	}
	start := time.Now()
	deadline := start.Add(p.cfg.Timeout)
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		res, err := p.client.Produce(ctx, &kafka.ProduceRequest{
			Topic:        p.cfg.Topic,
			Partition:    partition,
			RequiredAcks: kafka.RequireAll, // a 200 to the client means durably replicated
			Records:      kafka.NewRecordReader(recs...),
		})
		cancel()
		if err == nil && res != nil && res.Error != nil {
			err = res.Error
		}
		if err == nil {
			p.healthy.Store(true)
			p.m.records.Add(float64(len(batch)))
			p.m.batches.Observe(float64(len(batch)))
			p.m.latency.Observe(time.Since(start).Seconds())
			return nil
		}
		p.m.errors.Inc()
		if time.Now().Add(backoff).After(deadline) || !retriable(err) {
			p.healthy.Store(false)
			p.m.failed.Add(float64(len(batch)))
			p.log.Warn("produce failed", "partition", partition, "records", len(batch), "attempts", attempt, "err", err)
			return fmt.Errorf("%w: producing to %s/%d: %v", ErrUnavailable, p.cfg.Topic, partition, err)
		}
		// Reset record readers: a failed attempt may have consumed them.
		for i := range batch {
			recs[i] = kafka.Record{Key: kafka.NewBytes(batch[i].rec.Key), Value: kafka.NewBytes(batch[i].rec.Value)}
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, time.Second)
	}
}

func retriable(err error) bool {
	var ke kafka.Error
	if errors.As(err, &ke) {
		return ke.Temporary()
	}
	// Network errors, timeouts and connection resets: the broker may be back.
	return !errors.Is(err, context.Canceled)
}

// Close flushes what is queued and stops the flushers.
func (p *Producer) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	close(p.stop)
	p.wg.Wait()
	return nil
}
