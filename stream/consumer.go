package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// Message is one consumed record.
type Message struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Time      time.Time
}

// Handler processes one batch. It returns nil only when every message's work is
// complete (written, or routed to the dead-letter topic); any error makes the
// consumer retry the same batch, so a handler must be idempotent.
type Handler func(ctx context.Context, batch []Message) error

// ConsumerConfig configures a Consumer.
type ConsumerConfig struct {
	Brokers  []string
	Security Security
	Group    string
	Topics   []string
	// MaxBatch, MaxBatchBytes and MaxWait bound a batch: whichever is
	// reached first closes it (a batch holds one record at least, however
	// large). MaxBatchBytes counts keys and values (default 64 MiB), so a
	// backlog of large records cannot make a batch of MaxBatch of them.
	MaxBatch      int
	MaxBatchBytes int
	MaxWait       time.Duration
	// DrainTimeout bounds each attempt at handling a batch (failed attempts
	// are retried until shutdown) and the offset commits still running at
	// shutdown.
	DrainTimeout time.Duration
	// StopGrace is how long a batch in flight at shutdown may still take
	// (default DefaultStopGrace, at most DrainTimeout): then its context is
	// cancelled and, unfinished, it is left uncommitted for the next owner.
	// A healthy Redis, ClickHouse or Kafka finishes a batch well within it;
	// a hung one (a stopped process, a network dropping packets) would hold
	// the stop until its clients' own timeouts and retries ran out.
	StopGrace time.Duration
	// SessionTimeout: see Config.SessionTimeout (default 10s).
	SessionTimeout time.Duration
	// LagInterval is how often the group's lag is read from the brokers
	// (default DefaultLagInterval).
	LagInterval time.Duration
}

// DefaultStopGrace is ConsumerConfig.StopGrace's default.
const DefaultStopGrace = 5 * time.Second

// Consumer reads its topics in a consumer group and feeds batches to a Handler.
// Offsets are committed only after the handler returned nil for the batch that
// holds them, so everything up to a committed offset is done.
type Consumer struct {
	cfg    ConsumerConfig
	reader *kafka.Reader
	client *kafka.Client // offsets and metadata for watch
	watch  *offsetWatch
	log    *slog.Logger
	m      *consumerMetrics
}

// NewConsumer joins the group lazily on the first Run.
func NewConsumer(cfg ConsumerConfig, log *slog.Logger, reg prometheus.Registerer) (*Consumer, error) {
	if len(cfg.Brokers) == 0 {
		return nil, ErrNoBrokers
	}
	if cfg.Group == "" || len(cfg.Topics) == 0 {
		return nil, errors.New("consumer needs a group and at least one topic")
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1000
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 100 * time.Millisecond
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	cfg.StopGrace = min(cfg.StopGrace, cfg.DrainTimeout)
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	if cfg.LagInterval <= 0 {
		cfg.LagInterval = DefaultLagInterval
	}
	cn, err := cfg.Security.build()
	if err != nil {
		return nil, err
	}
	client := newClient(cfg.Brokers, cn, 10*time.Second)
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     cfg.Brokers,
		Dialer:      cn.dialer(),
		GroupID:     cfg.Group,
		GroupTopics: cfg.Topics,
		MinBytes:    1,
		MaxBytes:    8 << 20,
		// How long a fetch of an idle partition waits: the broker answers as
		// soon as a record arrives (MinBytes 1), so this adds no latency. The
		// reader gives the answer a quarter of it as round-trip margin: at
		// 50 ms that was 12.5 ms, which a TLS round trip to a managed cluster
		// (or a busy broker) misses, and each miss re-dials the broker (TLS
		// handshake and SASL again). A fetch in flight also delays a
		// rebalance or Close by up to this.
		MaxWait: 500 * time.Millisecond,
		// Records fetched ahead of the batch being built: bounded by count
		// only, so not more than a batch's worth and at most queueCapacity.
		QueueCapacity:  min(cfg.MaxBatch, queueCapacity),
		CommitInterval: 0,                 // synchronous commits of completed work only
		StartOffset:    kafka.FirstOffset, // a new group processes all history: nothing accepted is skipped
		// A crashed member is noticed after SessionTimeout (kafka-go's 30 s
		// default would stall its partitions that long); a rebalance waits as
		// long for members to rejoin. Redelivered records are deduplicated downstream.
		SessionTimeout:    cfg.SessionTimeout,
		HeartbeatInterval: cfg.SessionTimeout / 3,
		RebalanceTimeout:  cfg.SessionTimeout,
		ReadBackoffMin:    10 * time.Millisecond,
		ReadBackoffMax:    200 * time.Millisecond,
		ErrorLogger:       kafka.LoggerFunc(groupErrorLogger(log, cfg.SessionTimeout)),
	})
	c := &Consumer{
		cfg:    cfg,
		reader: r,
		client: client,
		log:    log.With("group", cfg.Group),
		m:      newConsumerMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"group": cfg.Group}, reg)),
	}
	c.watch = newOffsetWatch(client, cfg.Group, cfg.Topics, c.m, c.log)
	for _, t := range cfg.Topics {
		c.m.outOfRangeLast.WithLabelValues(t) // 0: never
	}
	return c, nil
}

// groupErrorLogger logs kafka-go's errors as warnings, and the one error an
// operator must act on as such: a session timeout the broker refuses (below
// its group.min.session.timeout.ms, 6 s on Kafka by default), with which the
// group never joins and nothing is consumed — kafka-go retries for ever.
func groupErrorLogger(log *slog.Logger, session time.Duration) func(string, ...any) {
	var told atomic.Bool
	return func(msg string, args ...any) {
		for _, a := range args {
			if err, ok := a.(error); ok && errors.Is(err, kafka.InvalidSessionTimeout) {
				if !told.Swap(true) {
					log.Error("the kafka broker refuses the consumer group's session timeout: the group cannot join and consumes nothing until kafka.session-timeout is within the broker's group.min/max.session.timeout.ms (Kafka's default minimum is 6s)",
						"session_timeout", session)
				}
				return
			}
		}
		log.Warn(fmt.Sprintf(msg, args...))
	}
}

// startWatch reads the group's lag in the background until the returned
// function is called.
func (c *Consumer) startWatch(ctx context.Context) (stop func()) {
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.watch.run(wctx, c.cfg.LagInterval)
	}()
	return func() {
		cancel()
		<-done
		closeClient(c.client)
	}
}

// Run consumes until ctx is cancelled. A batch in flight when ctx ends is
// finished (bounded by DrainTimeout) and committed before Run returns.
func (c *Consumer) Run(ctx context.Context, h Handler) error {
	defer c.closeReader()
	defer c.startWatch(ctx)()
	// One batch at a time: its slices are reused by the next (a sink's
	// batch is up to 50,000 records; allocating it afresh every flush was
	// the largest allocation of the process). Cleared after each batch so
	// they do not keep the records' bytes alive.
	var (
		raw   []kafka.Message
		batch []Message
	)
	for {
		clear(raw)
		clear(batch)
		var err error
		raw, err = c.fetchBatch(ctx, raw[:0])
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		batch = appendMessages(batch[:0], raw)
		c.watch.checkContinuity(ctx, batch)
		// Finish the batch even when shutdown starts meanwhile (within
		// StopGrace): its offsets are committed below, so the next owner
		// does not redo the work.
		hctx, hcancel := c.drainCtx(ctx, c.cfg.StopGrace)
		dctx, dcancel := c.drainCtx(ctx, c.cfg.DrainTimeout)
		err = c.handle(hctx, ctx, h, batch)
		hcancel()
		if err == nil {
			cctx, ccancel := context.WithTimeout(dctx, c.cfg.DrainTimeout)
			c.commit(cctx, raw)
			ccancel()
		}
		dcancel()
		if err != nil {
			return err
		}
		c.done(batch)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// PreparedHandler processes one batch like a Handler. prepared is what the
// prepare function of RunPrepared returned for this batch, or nil on a retry
// of the batch: prepared work may be stale after a failed attempt, so the
// handler then does it again itself.
type PreparedHandler func(ctx context.Context, batch []Message, prepared any) error

// RunPrepared consumes like Run, with the next batch's fetching and the
// previous batch's offset commit overlapping the handling of a batch:
//
//   - while batch N is handled, batch N+1 is fetched and prepare runs on it
//     (from the moment N's handling starts, so after N-1's handling ended);
//     prepare must not rely on the effects of the batch being handled;
//   - batch N's offsets are committed while N+1 is handled; N+1's commit waits
//     for N's, so commits stay in order.
//
// Batches are still handled one at a time, in order, and a batch's offsets
// are committed only after it was handled, so everything up to a committed
// offset is done. A batch fetched ahead when shutdown starts is dropped
// uncommitted (it is redelivered to the next owner).
func (c *Consumer) RunPrepared(ctx context.Context, prepare func(ctx context.Context, batch []Message) any, h PreparedHandler) error {
	defer c.closeReader()
	defer c.startWatch(ctx)()
	type fetched struct {
		raw      []kafka.Message
		batch    []Message
		prepared any
		err      error
	}
	// The fetch ahead has its own context: Run may return (a batch that
	// failed for DrainTimeout) while it waits for records on an idle topic.
	fctx, fcancel := context.WithCancel(ctx)
	next := make(chan fetched, 1)
	ahead := false // a fetchAhead whose result was not taken yet
	fetchAhead := func() {
		raw, err := c.fetchBatch(fctx, nil)
		if err != nil {
			next <- fetched{err: err}
			return
		}
		batch := appendMessages(nil, raw)
		next <- fetched{raw: raw, batch: batch, prepared: prepare(fctx, batch)}
	}
	// Commits run beside the handling of the next batch: each is bounded by
	// DrainTimeout, and all of them end DrainTimeout after ctx does — with
	// the batch in flight, so a stop while Kafka does not answer commits
	// takes DrainTimeout once, not once per commit waited for.
	drain, stopDrain := c.drainCtx(ctx, c.cfg.DrainTimeout)
	defer stopDrain()
	var committing chan struct{} // closed when the previous batch's commit ended
	waitCommit := func() {
		if committing != nil {
			<-committing
			committing = nil
		}
	}
	defer func() {
		fcancel()
		if ahead {
			<-next
		}
		waitCommit()
	}()
	ahead = true
	go fetchAhead()
	for {
		f := <-next
		ahead = false
		if f.err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return f.err
		}
		ahead = true
		go fetchAhead()
		c.watch.checkContinuity(ctx, f.batch)
		// Finish the batch even when shutdown starts meanwhile (within
		// StopGrace): its offsets are committed below, so the next owner
		// does not redo the work.
		hctx, hcancel := c.drainCtx(ctx, c.cfg.StopGrace)
		prepared := f.prepared
		err := c.handle(hctx, ctx, func(ctx context.Context, batch []Message) error {
			p := prepared
			prepared = nil // a retry prepares afresh
			return h(ctx, batch, p)
		}, f.batch)
		hcancel()
		if err != nil {
			return err
		}
		waitCommit()
		done := make(chan struct{})
		committing = done
		go func() {
			defer close(done)
			cctx, ccancel := context.WithTimeout(drain, c.cfg.DrainTimeout)
			defer ccancel()
			c.commit(cctx, f.raw)
		}()
		c.done(f.batch)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// ReaderCloseWait bounds how long a stop waits for kafka-go's reader to
// close, which is mostly leaving the group: with brokers that do not answer
// (a black-holed host) that takes the reader 5 s and more, and a stop must
// stay prompt. The member is expired by the group after the session timeout
// anyway. Offsets are not at stake: Run and RunPrepared have awaited every
// commit before they close the reader.
const ReaderCloseWait = time.Second

// closeReader closes the reader, waiting for it at most ReaderCloseWait; a
// close that takes longer goes on in the background.
func (c *Consumer) closeReader() {
	if !CloseWithin(c.reader, ReaderCloseWait) {
		c.log.Warn("kafka did not answer the consumer leaving its group in time: stopping without waiting, the group expires this member after its session timeout",
			"waited", ReaderCloseWait, "session_timeout", c.cfg.SessionTimeout)
	}
}

// CloseWithin closes r (a kafka-go Reader: leaving its group), waiting for
// it at most wait, and reports whether it closed in time; a close that takes
// longer goes on in the background. A broker that accepted the connection
// and does not answer holds a Reader's Close until its own timeouts run out.
func CloseWithin(r io.Closer, wait time.Duration) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Close()
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// fetchBatch waits for a first message, then takes more until MaxBatch or
// MaxWait after the first, whichever comes first. It appends them to raw
// (nil: a new slice).
//
// A failed fetch (brokers unreachable, a partition leader moving) is retried
// with backoff until ctx ends: the reader reconnects on its own, and a role
// that lost Kafka stays up, unready, rather than exiting.
func (c *Consumer) fetchBatch(ctx context.Context, raw []kafka.Message) ([]kafka.Message, error) {
	m, err := c.fetchFirst(ctx)
	if err != nil {
		return raw, err
	}
	if raw == nil {
		// Grown as records come: a batch is often far below MaxBatch.
		raw = make([]kafka.Message, 0, min(c.cfg.MaxBatch, 1024))
	}
	raw = append(raw, m)
	size := len(m.Key) + len(m.Value)
	wctx, cancel := context.WithTimeout(ctx, c.cfg.MaxWait)
	defer cancel()
	for len(raw) < c.cfg.MaxBatch && size < c.cfg.MaxBatchBytes {
		m, err := c.reader.FetchMessage(wctx)
		if err != nil {
			break
		}
		raw = append(raw, m)
		size += len(m.Key) + len(m.Value)
	}
	return raw, nil
}

// DefaultMaxBatchBytes is ConsumerConfig.MaxBatchBytes's default.
const DefaultMaxBatchBytes = 64 << 20

// queueCapacity bounds the records kafka-go's reader holds fetched ahead of
// the batch being built. 4,096 instead of the sink's 50,000 took its peak RSS
// from 210 to 148 MB with the same rows/s (three pairs of quick runs).
const queueCapacity = 4096

// fetchFirst waits for the next message, retrying failed fetches.
func (c *Consumer) fetchFirst(ctx context.Context) (kafka.Message, error) {
	backoff := 100 * time.Millisecond
	failing := false
	for {
		m, err := c.reader.FetchMessage(ctx)
		switch {
		case err == nil:
			if failing {
				c.log.Info("fetching from kafka works again")
			}
			return m, nil
		case ctx.Err() != nil:
			return m, fmt.Errorf("fetching from kafka: %w", err)
		}
		c.m.fetchErrors.Inc()
		if !failing {
			c.log.Warn("fetching from kafka failed; retrying until it works", "err", err)
			failing = true
		}
		select {
		case <-ctx.Done():
			return m, fmt.Errorf("fetching from kafka: %w", err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// appendMessages appends raw's records to batch.
func appendMessages(batch []Message, raw []kafka.Message) []Message {
	batch = slices.Grow(batch, len(raw))
	for _, m := range raw {
		batch = append(batch, Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Time})
	}
	return batch
}

// commit commits a handled batch's offsets. A failure is not fatal: the
// batch is redelivered and deduplicated.
func (c *Consumer) commit(ctx context.Context, raw []kafka.Message) {
	if err := c.reader.CommitMessages(ctx, raw...); err != nil {
		c.m.commitErrors.Inc()
		c.log.Warn("committing offsets failed", "err", err)
	}
}

// done counts a handled batch.
func (c *Consumer) done(batch []Message) {
	c.m.records.Add(float64(len(batch)))
	c.m.batches.Inc()
}

// drainCtx is the context a batch is handled (grace StopGrace) or its
// offsets committed in (grace DrainTimeout): not cancelled with ctx, so work
// in flight at shutdown is finished, but done grace after ctx ends. Until
// shutdown it has no deadline: a batch is retried for as long as Redis,
// ClickHouse or Kafka is down.
func (c *Consumer) drainCtx(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var (
		mu    sync.Mutex
		timer *time.Timer
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		timer = time.AfterFunc(grace, cancel)
		mu.Unlock()
	})
	return hctx, func() {
		stop()
		cancel()
		mu.Lock()
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
	}
}

// handle retries h until it succeeds; each attempt is bounded by
// DrainTimeout, so one hung call does not stall the batch. Once shutdown
// began (runCtx done) a failed attempt is not repeated: the batch is left
// uncommitted for the next owner, so a stop ends the role within the
// attempt in flight (at most StopGrace, hctx's bound) even while Redis or
// ClickHouse is down or hung and the batch was being retried.
func (c *Consumer) handle(hctx, runCtx context.Context, h Handler, batch []Message) error {
	backoff := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(hctx, c.cfg.DrainTimeout)
		err := h(actx, batch)
		cancel()
		if err == nil {
			return nil
		}
		c.m.handlerErrors.Inc()
		if runCtx.Err() != nil {
			return fmt.Errorf("batch of %d records not finished at shutdown: %w", len(batch), err)
		}
		c.log.Warn("batch failed, retrying", "records", len(batch), "err", err)
		select {
		case <-runCtx.Done():
			return fmt.Errorf("batch of %d records not finished at shutdown: %w", len(batch), err)
		case <-hctx.Done():
			return fmt.Errorf("batch of %d records not finished: %w", len(batch), err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
