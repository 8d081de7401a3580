package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	Brokers []string
	Group   string
	Topics  []string
	// MaxBatch and MaxWait bound a batch: whichever is reached first closes it.
	MaxBatch int
	MaxWait  time.Duration
	// DrainTimeout bounds how long a batch in flight at shutdown may take to finish.
	DrainTimeout time.Duration
	// SessionTimeout: see Config.SessionTimeout (default 10s).
	SessionTimeout time.Duration
}

// Consumer reads its topics in a consumer group and feeds batches to a Handler.
// Offsets are committed only after the handler returned nil for the batch that
// holds them, so everything up to a committed offset is done.
type Consumer struct {
	cfg    ConsumerConfig
	reader *kafka.Reader
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
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     cfg.Brokers,
		GroupID:     cfg.Group,
		GroupTopics: cfg.Topics,
		MinBytes:    1,
		MaxBytes:    8 << 20,
		// Short broker-side wait: latency from accept to score matters more
		// than a few extra fetch requests.
		MaxWait:        50 * time.Millisecond,
		QueueCapacity:  cfg.MaxBatch,
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
		ErrorLogger:       kafka.LoggerFunc(func(msg string, args ...any) { log.Warn(fmt.Sprintf(msg, args...)) }),
	})
	return &Consumer{
		cfg:    cfg,
		reader: r,
		log:    log.With("group", cfg.Group),
		m:      newConsumerMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"group": cfg.Group}, reg)),
	}, nil
}

// Run consumes until ctx is cancelled. A batch in flight when ctx ends is
// finished (bounded by DrainTimeout) and committed before Run returns.
func (c *Consumer) Run(ctx context.Context, h Handler) error {
	defer c.reader.Close()
	batch := make([]Message, 0, c.cfg.MaxBatch)
	raw := make([]kafka.Message, 0, c.cfg.MaxBatch)
	for {
		batch, raw = batch[:0], raw[:0]
		m, err := c.reader.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fetching from kafka: %w", err)
		}
		raw = append(raw, m)
		wctx, cancel := context.WithTimeout(ctx, c.cfg.MaxWait)
		for len(raw) < c.cfg.MaxBatch {
			m, err := c.reader.FetchMessage(wctx)
			if err != nil {
				break
			}
			raw = append(raw, m)
		}
		cancel()
		for _, m := range raw {
			batch = append(batch, Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Time})
		}
		// Finish the batch even when shutdown starts meanwhile: its offsets
		// are committed below, so the next owner does not redo the work.
		hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.DrainTimeout)
		err = c.handle(hctx, ctx, h, batch)
		if err == nil {
			if cerr := c.reader.CommitMessages(hctx, raw...); cerr != nil {
				// Not fatal: the batch is redelivered and deduplicated.
				c.m.commitErrors.Inc()
				c.log.Warn("committing offsets failed", "err", cerr)
			}
		}
		hcancel()
		if err != nil {
			return err
		}
		c.m.records.Add(float64(len(batch)))
		c.m.batches.Inc()
		c.m.lag.Set(float64(c.reader.Stats().Lag))
		if ctx.Err() != nil {
			return nil
		}
	}
}

// handle retries h until it succeeds. Retrying stops only when the drain
// deadline passes after shutdown began; the batch is then left uncommitted.
func (c *Consumer) handle(hctx, runCtx context.Context, h Handler, batch []Message) error {
	backoff := 50 * time.Millisecond
	for {
		err := h(hctx, batch)
		if err == nil {
			return nil
		}
		c.m.handlerErrors.Inc()
		c.log.Warn("batch failed, retrying", "records", len(batch), "err", err)
		select {
		case <-hctx.Done():
			return fmt.Errorf("batch of %d records not finished: %w", len(batch), err)
		case <-time.After(backoff):
		}
		if runCtx.Err() != nil && hctx.Err() != nil {
			return fmt.Errorf("batch of %d records not finished: %w", len(batch), err)
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
