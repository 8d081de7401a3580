// Package notify is the notifier role: it acts on threshold crossings as
// they happen, delivering each record of the mql topic (and of the mqa topic
// once it exists) to the destinations of a YAML file (notify.config):
// signed JSON webhooks, Slack-compatible incoming webhooks and e-mail
// through SMTP, each with filters by kind, model and score.
//
// Delivery is at least once: a record's offset is committed only once the
// destination delivered it or dead-lettered it. Every destination consumes
// each topic in its own consumer group ("<notify.group-prefix>.<name>.<kind>")
// with its own bounded window of records in flight, so one slow or dead
// destination never delays the others: Kafka is its buffer. Within a
// destination records are delivered concurrently and committed at the
// lowest offset still pending (feed.go). Every request carries the record's
// id (mql_id or mqa_id) as Idempotency-Key, so a receiver drops the repeats
// that at-least-once allows (after a crash, a rebalance).
//
// Failures: 5xx, 408, 429, timeouts and connection errors (SMTP: 4xx
// replies, broken connections) are retried with exponential backoff and
// jitter; any other 4xx (SMTP 5xx) is not retried; a record not delivered
// within notify.max-age of its publication is dead-lettered with the reason,
// as is a rejected one. Every attempt is written to ClickHouse's
// notifications table (recorder.go).
//
// Metrics:
//
//	leadstream_notifier_attempts_total{destination,result}       delivered, retry, rejected, expired, interrupted
//	leadstream_notifier_deliveries_total{destination,result}     delivered, dead_letter, filtered
//	leadstream_notifier_attempt_duration_seconds{destination}
//	leadstream_notifier_delivery_delay_seconds{destination}      publication to delivery
//	leadstream_notifier_pending_records{destination}             held: in flight or waiting to retry
//	leadstream_notifier_oldest_pending_seconds{destination}      the retry age of the oldest held record
//	leadstream_notifier_lag_records{destination,kind}            records not fetched yet
//	leadstream_notifier_commit_errors_total{destination}
//	leadstream_notifier_recorded_attempts_total, leadstream_notifier_record_errors_total   ClickHouse
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/leadstream/leadstream/stream"
)

// TopicMQA is the topic suffix of account threshold crossings (published by
// the processor when accounts are scored); the notifier consumes it once it
// exists.
const TopicMQA = stream.TopicMQA

// ErrNoDestinations means the notifier was given no destination.
var ErrNoDestinations = errors.New("notifier needs at least one destination (notify.config)")

// Notifier delivers threshold crossings to destinations.
type Notifier struct {
	cfg   Config
	dests []*dest
	log   *slog.Logger
	reg   prometheus.Registerer
	m     *metrics
	rec   *recorder
	dead  *stream.Producer
	kg    *stream.KafkaGo // readers' dialer and the metadata client, with kafka.tls*/kafka.sasl.*
	ready atomic.Bool

	stopping   chan struct{} // closed when shutdown starts: fetch and retries stop
	hardStop   chan struct{} // closed when the drain time is over
	attemptCtx context.Context
	cancelAll  context.CancelFunc
	deliveries sync.WaitGroup

	mu      sync.Mutex
	feeds   []*feed
	started map[string]bool // kinds whose feeds run
}

// New builds a notifier for dests; Kafka and ClickHouse are reached in Run.
func New(cfg Config, dests []Destination, log *slog.Logger, reg prometheus.Registerer) (*Notifier, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(dests) == 0 {
		return nil, ErrNoDestinations
	}
	n := &Notifier{cfg: cfg, log: log.With("stage", "notifier"), reg: reg, m: newMetrics(reg),
		stopping: make(chan struct{}), hardStop: make(chan struct{}), started: map[string]bool{}}
	kg, err := stream.NewKafkaGo(cfg.Kafka, 10*time.Second)
	if err != nil {
		return nil, err
	}
	n.kg = kg
	n.attemptCtx, n.cancelAll = context.WithCancel(context.Background())
	names := make([]string, len(dests))
	for i := range dests {
		names[i] = dests[i].Name
	}
	n.rec = newRecorder(cfg.ClickHouse, n.log, n.m, names)
	for i := range dests {
		d := dests[i]
		n.m.init(d.Name)
		n.dests = append(n.dests, newDest(n, &d))
	}
	return n, nil
}

// Ready reports whether the notifier is running.
func (n *Notifier) Ready() bool { return n.ready.Load() }

func (n *Notifier) isStopping() bool {
	select {
	case <-n.stopping:
		return true
	default:
		return false
	}
}

// Run delivers until ctx is cancelled; then attempts in flight get
// DrainTimeout to finish, what is done is committed, and the attempts are
// written to ClickHouse before Run returns.
func (n *Notifier) Run(ctx context.Context) error {
	defer n.cancelAll()
	var err error
	kreg := n.reg
	if kreg != nil {
		kreg = prometheus.WrapRegistererWith(prometheus.Labels{"stage": "notifier"}, n.reg)
	}
	n.dead, err = stream.NewProducer(ctx, n.cfg.Kafka.Producer(stream.TopicDeadLetter), n.log, kreg)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("starting dead-letter producer: %w", err)
	}
	defer n.dead.Close()

	// One deadline for the whole stop: attempts in flight, the final
	// commits and the recorder's last writes all end DrainTimeout after the
	// signal (each given a second at least), not one after another.
	var end time.Time
	left := func() time.Duration { return max(time.Until(end), time.Second) }
	recStop := make(chan struct{})
	go n.rec.run(context.WithoutCancel(ctx), recStop, left)

	fetchCtx, stopFetch := context.WithCancel(ctx)
	var feeds sync.WaitGroup
	n.startKind(fetchCtx, &feeds, KindMQL, n.cfg.Kafka.Topic(stream.TopicMQL))
	var watch sync.WaitGroup
	watch.Go(func() { n.watch(fetchCtx, &feeds) })
	names := make([]string, len(n.dests))
	for i, d := range n.dests {
		names[i] = d.cfg.Name
	}
	n.ready.Store(true)
	n.log.Info("notifier running", "destinations", names, "max_age", n.cfg.MaxAge)

	<-ctx.Done()
	end = time.Now().Add(n.cfg.DrainTimeout)
	n.ready.Store(false)
	close(n.stopping)
	stopFetch()
	watch.Wait()
	feeds.Wait()
	drained := make(chan struct{})
	go func() { n.deliveries.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(time.Until(end)):
		n.log.Warn("attempts still in flight at the end of the drain; they are delivered again after a restart")
	}
	close(n.hardStop)
	n.cancelAll()
	<-drained

	n.mu.Lock()
	fs := slices.Clone(n.feeds)
	n.mu.Unlock()
	cctx, cancelCommits := context.WithTimeout(context.Background(), left())
	defer cancelCommits()
	var closing sync.WaitGroup
	for _, f := range fs {
		closing.Go(func() {
			f.commit(cctx)
			// Leaving the group waits for the broker: bounded, as a stop
			// must not wait for one that does not answer (the group
			// expires the member after its session timeout).
			if !stream.CloseWithin(f.reader, stream.ReaderCloseWait) {
				n.log.Warn("kafka did not answer the notifier leaving its group in time: stopping without waiting", "topic", f.topic, "waited", stream.ReaderCloseWait)
			}
		})
	}
	close(recStop) // the recorder writes what it holds meanwhile
	closing.Wait()
	<-n.rec.done
	n.log.Info("notifier stopped")
	return nil
}

// startKind starts the feeds of a topic for the destinations that want its
// kind, once.
func (n *Notifier) startKind(ctx context.Context, wg *sync.WaitGroup, kind, topic string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.started[kind] {
		return
	}
	n.started[kind] = true
	for _, d := range n.dests {
		if len(d.cfg.Kinds) > 0 && !slices.Contains(d.cfg.Kinds, kind) {
			continue
		}
		f := newFeed(d, kind, topic)
		n.feeds = append(n.feeds, f)
		n.m.lag.WithLabelValues(d.cfg.Name, kind)
		wg.Go(func() { f.run(ctx) })
		wg.Go(func() { f.commitLoop(context.WithoutCancel(ctx), ctx.Done()) })
	}
	n.log.Info("notifier consuming", "topic", topic)
}

// watch starts the mqa feeds once the mqa topic exists (account scoring
// may be switched on after the notifier started), and keeps the retry-age
// gauges current.
func (n *Notifier) watch(ctx context.Context, wg *sync.WaitGroup) {
	topic := n.cfg.Kafka.Topic(TopicMQA)
	wantMQA := false
	for _, d := range n.dests {
		if len(d.cfg.Kinds) == 0 || slices.Contains(d.cfg.Kinds, KindMQA) {
			wantMQA = true
		}
	}
	check := time.NewTicker(n.cfg.TopicCheck)
	defer check.Stop()
	gauges := time.NewTicker(time.Second)
	defer gauges.Stop()
	probe := wantMQA // at start, then every TopicCheck (not on the gauges' ticks)
	for {
		if probe && !n.kindStarted(KindMQA) {
			if ok, err := topicExists(ctx, n.kg.Client, topic); err != nil {
				n.log.Debug("looking for the mqa topic failed", "err", err)
			} else if ok {
				n.startKind(ctx, wg, KindMQA, topic)
			}
		}
		probe = false
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			probe = wantMQA
		case <-gauges.C:
			now := time.Now()
			for _, d := range n.dests {
				n.m.oldest.WithLabelValues(d.cfg.Name).Set(d.oldest(now).Seconds())
			}
		}
	}
}

func (n *Notifier) kindStarted(kind string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.started[kind]
}

// topicExists asks the brokers for every topic's metadata (asking for the
// one topic could auto-create it on brokers that do so).
func topicExists(ctx context.Context, c *kafka.Client, topic string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return false, err
	}
	for _, t := range md.Topics {
		if t.Name == topic && t.Error == nil && len(t.Partitions) > 0 {
			return true, nil
		}
	}
	return false, nil
}
