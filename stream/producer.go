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
	// Linger is how long a partition with new records may wait for more
	// before a produce request is built (then all partitions with records
	// go in it). The dispatcher ends it as soon as a whole burst is handed
	// to the client, so it is waited out only where the client itself holds
	// records back (the first burst, before the topic's partitions are
	// known). Zero means DefaultLinger; negative none, which lets the client
	// send a burst's first records before the rest are handed over (smaller
	// requests).
	Linger time.Duration
	// Compression is the codec of the record batches; empty means
	// DefaultCompression.
	Compression Compression
}

// DefaultLinger is ProducerConfig.Linger's default. The linger keeps the
// client from sending a burst's first records before the rest are handed
// over; the dispatcher ends it once they are (it used to be waited out on
// every burst: 0.2 ms of every single-event request's time).
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

// Producer writes records to one topic with acks=all and group commit:
// Produce queues its records, and a dispatcher hands everything queued to the
// client as one burst whenever fewer than burstsInFlight bursts wait for
// Kafka, so every record given while earlier bursts are in flight joins the
// next produce request (one per broker, carrying the batches of all its
// partitions). Concurrent callers therefore share Kafka round trips instead
// of paying one each, requests grow with the load, and Produce returns only
// once Kafka has acknowledged every record it was given.
//
// The Kafka client underneath is franz-go's kgo: idempotent (so records of a
// partition stay in order with several requests in flight, and a retried
// request is not written twice), a linger ended by the dispatcher once a
// burst is handed over (ProducerConfig.Linger), compression per
// ProducerConfig.Compression.
//
// Records are partitioned by murmur2 of the key (the Java client's default), so
// other Kafka clients agree on which partition a key lives in.
type Producer struct {
	cfg    ProducerConfig
	cn     *conn
	client *kgo.Client
	log    *slog.Logger
	m      *producerMetrics
	ids    []int
	queued atomic.Int64
	// waiting counts the Produce calls still waiting for their outcome: the
	// records Close flushes are theirs, or given up (see Close).
	waiting atomic.Int64
	closed  atomic.Bool
	healthy atomic.Bool
	// reachable is whether the last ping of the brokers succeeded: without
	// traffic, a lost connection shows only there.
	reachable atomic.Bool
	// stopPing cancels the context of the pings, a ping in flight
	// included: Close does not wait for a broker that does not answer.
	stopPing context.CancelFunc
	pingDone chan struct{}
	mu       sync.RWMutex // held for reading while queueing records; Close takes it for writing

	// Group commit (dispatch): Produce queues its waiter on pending; one
	// goroutine hands everything pending to the client as one burst once
	// a burst slot is free, so bursts grow with the load instead of every
	// call making its own small request.
	pendMu     sync.Mutex
	pending    []*waiter
	wake       chan struct{} // cap 1: pending is not empty
	slots      chan struct{} // bursts that may be in flight
	stop       chan struct{} // closed by Close
	dispatched chan struct{} // closed when the dispatcher has handed off everything and exited
}

// burstsInFlight is how many bursts may wait for Kafka at once. With one,
// everything that arrives during a round trip joins the next request: the
// fewest, largest requests. Two kept the connection busy while a response
// was on its way, which large batches (/v1/batch) needed while every burst
// waited out the linger; since a burst is sent as soon as it is handed over
// (handOff), one is as fast for batches (182k-184k against 172k-174k events/s
// in the harness) and for single events under wrk (26k-30k against
// 25k-33k requests/s, three interleaved pairs), with 26.5 events per produce
// request instead of 18 and 6.9-8.4 µs of broker CPU per event instead of
// 7.7-9.7.
const burstsInFlight = 1

// burst counts the records of one hand-off that still wait for an outcome.
// Promises of one client run serially, so it needs no lock.
type burst struct {
	left int
	p    *Producer
	slot bool // holds a slot of p.slots, given back when its last record has an outcome
}

// waiter completes when every record of one Produce call has an outcome.
// Promises of one client are called serially, so the fields other than
// done and state need no lock; the last one sends on done. Waiters whose
// Produce saw that send are recycled with their records.
type waiter struct {
	p      *Producer
	n      int // records of the call
	left   int
	failed int
	bytes  int64
	err    error
	done   chan struct{} // buffered; one send per use
	// state is waiting until either finish counts the outcome (finished)
	// or Produce gives up (gaveUp), whichever comes first: a record is
	// counted once, as what its caller was told.
	state   atomic.Int32
	krs     []kgo.Record
	promise func(*kgo.Record, error)
	// When the call queued its records, when the dispatcher handed them to
	// the client and when the last one had its outcome
	// (leadstream_kafka_produce_wait_seconds).
	queuedAt, handedAt, doneAt time.Time
	b                          *burst // set by the dispatcher before the records are handed off
}

func (w *waiter) onRecord(_ *kgo.Record, err error) {
	if err != nil {
		w.failed++
		if w.err == nil {
			w.err = err
		}
	}
	b := w.b // w may be recycled once finish ran
	w.left--
	if w.left == 0 {
		w.p.finish(w)
	}
	if b.left--; b.left == 0 && b.slot {
		b.p.slots <- struct{}{} // never blocks: one slot per burst that took one
	}
}

// waiter.state values.
const (
	waiting int32 = iota
	finished
	gaveUp
)

var waiters sync.Pool

func (p *Producer) getWaiter(n int, bytes int64) *waiter {
	w, _ := waiters.Get().(*waiter)
	if w == nil {
		w = &waiter{done: make(chan struct{}, 1)}
		w.promise = w.onRecord
	}
	w.p, w.n, w.left, w.failed, w.bytes, w.err = p, n, n, 0, bytes, nil
	w.state.Store(waiting)
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
	w.p, w.err, w.b = nil, nil, nil
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
		cfg:        cfg,
		cn:         cn,
		log:        log.With("topic", cfg.Topic),
		m:          newProducerMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"topic": cfg.Topic}, reg)),
		wake:       make(chan struct{}, 1),
		slots:      make(chan struct{}, burstsInFlight),
		stop:       make(chan struct{}),
		dispatched: make(chan struct{}),
	}
	for range burstsInFlight {
		p.slots <- struct{}{}
	}
	for i := range n {
		p.ids = append(p.ids, i)
	}
	p.client, err = kgo.NewClient(append(cn.kgoOpts(),
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // a 200 to the client means durably replicated
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// A burst is handed over record by record: the linger holds it
		// until handOff has given all of it, across partitions, and
		// ends the linger (one request per burst).
		kgo.ProducerLinger(max(cfg.Linger, 0)),
		// Compressing shrinks what the network and the brokers' disks
		// carry, and the broker stores batches as sent (kafka.compression).
		kgo.ProducerBatchCompression(cfg.Compression.codec()),
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
	go p.dispatch()
	p.reachable.Store(true)
	pctx, stopPing := context.WithCancel(context.Background())
	p.stopPing = stopPing
	p.pingDone = make(chan struct{})
	go p.pingLoop(pctx)
	return p, nil
}

// dispatch hands pending records to the client in bursts until Close, then
// hands off what is left and exits.
func (p *Producer) dispatch() {
	defer close(p.dispatched)
	var batch []*waiter
	for {
		select {
		case <-p.wake:
		case <-p.stop:
			for p.handOff(&batch, true) {
			}
			return
		}
		for p.handOff(&batch, false) {
		}
	}
}

// handOff waits for a free burst slot, then gives the client every pending
// record as one burst; false when nothing was pending. Waiting for the slot
// before taking the pending list is what lets a burst grow while earlier
// ones are in flight. The last hand-offs, once Close stopped the queue,
// do not wait for a slot: nothing more can join them, and with the brokers
// gone the burst in flight holds its slot until the client gives up on it
// (the Timeout), which Close would otherwise wait out.
func (p *Producer) handOff(batch *[]*waiter, final bool) bool {
	slot := true
	if !final {
		select {
		case <-p.slots:
		case <-p.stop:
			final = true
		}
	}
	if final {
		select {
		case <-p.slots:
		default:
			slot = false
		}
	}
	p.pendMu.Lock()
	*batch, p.pending = p.pending, (*batch)[:0]
	p.pendMu.Unlock()
	if len(*batch) == 0 {
		if slot {
			p.slots <- struct{}{}
		}
		return false
	}
	b := &burst{p: p, slot: slot}
	for _, w := range *batch {
		b.left += w.n
	}
	now := time.Now()
	for _, w := range *batch {
		w.b, w.handedAt = b, now
		for i := range w.krs {
			// The records outlive the caller's ctx on purpose: once
			// queued they may be written, and RecordDeliveryTimeout
			// bounds how long they wait.
			p.client.TryProduce(context.Background(), &w.krs[i], w.promise)
		}
	}
	clear(*batch)
	if p.cfg.Linger > 0 {
		// The whole burst is buffered: send it now instead of waiting
		// out the linger, which was only there to keep the client from
		// sending the first of its records alone. A Flush whose context
		// is already done stops every linger and does not wait.
		_ = p.client.Flush(doneCtx)
	}
	return true
}

// doneCtx is a context that is already done.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

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

// pingLoop keeps reachable up to date until ctx ends (Close), which also
// ends a ping in flight.
func (p *Producer) pingLoop(ctx context.Context) {
	defer close(p.pingDone)
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, pingInterval)
		err := p.client.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return // closing: the ping was cut short, not unanswered
		}
		switch was := p.reachable.Swap(err == nil); {
		case err != nil && was:
			p.log.Warn("kafka brokers unreachable: not ready until they answer", "err", p.cn.explain(p.cfg.Brokers, err))
		case err == nil && !was:
			p.log.Info("kafka brokers reachable again")
		}
	}
}

// ProduceAll produces recs in calls of at most an eighth of
// ProducerConfig.MaxQueueBytes each, one after the other, so that a list of
// any size (a large batch's dead letters) never meets ErrQueueFull as a
// whole. Like Produce, it returns once every record is acknowledged, or with
// the first error; the calls before it are written.
func (p *Producer) ProduceAll(ctx context.Context, recs []Record) error {
	limit := max(p.cfg.MaxQueueBytes/8, 1)
	for len(recs) > 0 {
		n, size := 0, int64(0)
		for n < len(recs) {
			s := int64(len(recs[n].Key) + len(recs[n].Value))
			if n > 0 && size+s > limit {
				break
			}
			size += s
			n++
		}
		if err := p.Produce(ctx, recs[:n]); err != nil {
			return err
		}
		recs = recs[n:]
	}
	return nil
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
	w.queuedAt = time.Now()
	p.waiting.Add(1)
	for i, r := range recs {
		w.krs[i] = kgo.Record{Key: r.Key, Value: r.Value, Partition: int32(p.Partition(r.Key))}
	}
	p.pendMu.Lock()
	p.pending = append(p.pending, w)
	p.pendMu.Unlock()
	p.mu.RUnlock()
	select {
	case p.wake <- struct{}{}:
	default: // already woken
	}
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
		return p.outcome(w)
	case <-timeout:
		if !p.giveUp(w) {
			<-w.done // the outcome came meanwhile
			return p.outcome(w)
		}
		p.unhealthy()
		return fmt.Errorf("%w: producing to %s: no acknowledgement within %s", ErrUnavailable, p.cfg.Topic, p.cfg.Timeout)
	case <-ctx.Done():
		if !p.giveUp(w) {
			<-w.done
			return p.outcome(w)
		}
		// The records stay queued and may still be written; the caller was
		// told nothing was, which is safe because consumers dedup by event id.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			p.unhealthy() // the caller's own deadline for Kafka passed
		}
		return fmt.Errorf("waiting for kafka acknowledgement: %w", ctx.Err())
	}
}

// outcome returns the error of the records of a waiter whose done was
// received (nil: all acknowledged) and recycles it.
func (p *Producer) outcome(w *waiter) error {
	err := w.err
	if err == nil {
		p.m.waitQueued.Observe(w.handedAt.Sub(w.queuedAt).Seconds())
		p.m.waitKafka.Observe(w.doneAt.Sub(w.handedAt).Seconds())
		p.m.waitWakeup.Observe(time.Since(w.doneAt).Seconds())
	}
	putWaiter(w)
	return err
}

// giveUp marks w's records failed when its Produce returns before they
// have an outcome: the caller is told they were not written, so they count
// in failed_records_total now, and finish does not count them as produced
// if Kafka acknowledges them later. False when finish came first: the
// outcome is known (and counted), Produce returns it.
func (p *Producer) giveUp(w *waiter) bool {
	if !w.state.CompareAndSwap(waiting, gaveUp) {
		return false
	}
	p.waiting.Add(-1)
	p.m.failed.Add(float64(w.n))
	return true
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
	if w.state.CompareAndSwap(waiting, finished) { // else counted failed by giveUp
		p.waiting.Add(-1)
		if ok := w.n - w.failed; ok > 0 {
			p.m.records.Add(float64(ok))
		}
		if w.failed > 0 {
			p.m.failed.Add(float64(w.failed))
		}
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
	w.doneAt = time.Now()
	w.done <- struct{}{} // last: Produce may recycle w right after
}

// batchHeaderBytes is the size of a v2 record batch's header, which the
// client's batch metrics leave out: with a few records per batch it is a
// noticeable part of what is sent.
const batchHeaderBytes = 61

// produceHooks feeds the producer metrics from the client.
type produceHooks struct{ m *producerMetrics }

func (h produceHooks) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, bm kgo.ProduceBatchMetrics) {
	h.m.batches.Observe(float64(bm.NumRecords))
	h.m.bytes.Add(float64(bm.CompressedBytes + batchHeaderBytes))
	h.m.rawBytes.Add(float64(bm.UncompressedBytes + batchHeaderBytes))
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

// CloseAll closes the producers (nil ones skipped) at once, each flushing
// what is queued: a stop waits for the slowest, not for their sum.
func CloseAll(ps ...*Producer) {
	var wg sync.WaitGroup
	for _, p := range ps {
		if p != nil {
			wg.Go(func() { _ = p.Close() })
		}
	}
	wg.Wait()
}

// flush waits until the client has written the records it holds, or until
// no Produce call waits for any of them: records whose callers gave up (told
// they were not written, e.g. by the Timeout while Kafka is down) need no
// flush, and waiting for them made a stop with Kafka down take the Timeout
// again (the processor's after its last batch failed: 11 s more). Closing
// the client then fails them.
func (p *Producer) flush(ctx context.Context) error {
	if p.waiting.Load() == 0 {
		return nil
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.client.Flush(fctx) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			if p.waiting.Load() == 0 {
				return nil
			}
		}
	}
}

// Close flushes what is queued for callers still waiting and stops the
// client.
func (p *Producer) Close() error {
	p.mu.Lock()
	if p.closed.Swap(true) {
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	// A ping in flight is not waited for here: against a broker that
	// accepted the connection and does not answer, the client ends it only
	// at its own read timeout (10 s), whatever the context; closing the
	// client below ends it at once.
	p.stopPing()
	close(p.stop) // no Produce queues any more; the dispatcher hands off the rest
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Timeout+time.Second)
	defer cancel()
	var err error
	select {
	case <-p.dispatched:
		err = p.flush(ctx)
	case <-ctx.Done():
		err = ctx.Err() // bursts stayed in flight until the deadline
	}
	p.client.Close()
	<-p.pingDone
	if err != nil {
		return fmt.Errorf("flushing kafka producer: %w", err)
	}
	return nil
}
