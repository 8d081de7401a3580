// Package processor is the scoring stage: a consumer group (default "scoring")
// on the events topic that resolves each event's identity, applies it to the
// lead's rolling scores and publishes an MQL record on the mql topic when a
// lead crosses its model's threshold.
//
// The scoring itself is scoring.Core, the same code `leadstream rescore`
// replays history with. A batch is planned in memory (Core.Plan) over states
// read from Redis, then each changed subject is stored with one
// compare-and-set (leadstate.Store.Commit) that also records the applied
// event ids and the new MQL records, and fails when another processor
// changed the subject meanwhile or an id was applied already: the batch is
// then planned again with what was learned. Merges (a visitor identifying, an
// alias of two leads) are a few such steps, each idempotent.
//
// Processors are stateless: all state lives in Redis and offsets are
// committed only after a batch is fully stored, so any processor may die at
// any moment and another continues where it left off. A crossing is written
// to the lead's outbox in the same compare-and-set that stores it and is
// removed only after Kafka acknowledged it, so a crash never loses one; a
// redelivered record publishes it again with the same deterministic mql_id.
//
// Accounts (B2B, from Segment group calls) are subjects of their own: a
// member's update and its account's are separate compare-and-sets of one
// batch, the account's last; the account's MQA records wait in its outbox and
// are published on the mqa topic, keyed by account id, the same way.
//
// Metrics:
//
//	leadstream_processor_events_total{result}    scored | duplicate | no_match | late | stale | dead_letter | bot
//	leadstream_processor_mql_published_total     MQL records acknowledged by Kafka
//	leadstream_processor_mqa_published_total     MQA (account) records acknowledged by Kafka
//	leadstream_processor_merges_total            histories merged (visitors into leads, leads into leads)
//	leadstream_processor_commit_conflicts_total  compare-and-sets lost to a concurrent change (the batch is planned again)
//	leadstream_processor_apply_duration_seconds  time each event waited for its batch's Redis work (once per event scored or merge)
//	leadstream_processor_score_delay_seconds     accept-to-score latency: received_at to batch handled
package processor

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
)

// Config configures the processor. Kafka settings are registered by the caller.
type Config struct {
	Kafka        stream.Config
	Group        string
	BatchSize    int
	MaxWait      time.Duration
	DedupWindow  time.Duration
	AnonymousTTL time.Duration
	StateCache   int
	// FromEmailDomain: leads without a group call join the account of
	// their e-mail domain (never a free-mail one).
	FromEmailDomain bool
}

// RegisterFlags registers processor.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Group, "processor.group", "scoring", "Kafka consumer group of the processors")
	fs.IntVar(&c.BatchSize, "processor.batch-size", 500, "events per batch; offsets are committed per batch")
	fs.DurationVar(&c.MaxWait, "processor.max-wait", 20*time.Millisecond, "longest wait to fill a batch")
	fs.DurationVar(&c.DedupWindow, "processor.dedup-window", scoring.DefaultDedupWindow, "an event id is never scored twice within this window; an event whose event time is more than this before its receipt is stored but not scored (raise it to score a historical import)")
	fs.DurationVar(&c.AnonymousTTL, "processor.anonymous-ttl", scoring.DefaultAnonymousTTL, "an anonymous visitor's state (or its link to a lead) is deleted this long after its last event")
	fs.BoolVar(&c.FromEmailDomain, "accounts.from-email-domain", false, "a lead without a group call joins the account of its e-mail domain (identify traits.email), never of a free-mail domain")
	fs.IntVar(&c.StateCache, "processor.state-cache", 5_000, "lead and visitor states kept in memory between batches (up to twice this many), so they need not be read from Redis again; a stale one only costs a retry; 0 = off")
}

// Validate checks the configuration.
// ValidateWindows checks processor.dedup-window and processor.anonymous-ttl,
// for the processors and for rescore, which writes states as they do.
func ValidateWindows(dedup, anonTTL time.Duration) error {
	if dedup < time.Second {
		return fmt.Errorf("processor.dedup-window must be at least 1s, got %s", dedup)
	}
	if anonTTL < time.Second {
		return fmt.Errorf("processor.anonymous-ttl must be at least 1s, got %s", anonTTL)
	}
	return nil
}

func (c *Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if c.Group == "" {
		return errors.New("processor.group must not be empty")
	}
	if c.BatchSize < 1 {
		return fmt.Errorf("processor.batch-size must be >= 1, got %d", c.BatchSize)
	}
	if err := ValidateWindows(c.DedupWindow, c.AnonymousTTL); err != nil {
		return err
	}
	if c.StateCache < 0 {
		return fmt.Errorf("processor.state-cache must be >= 0, got %d", c.StateCache)
	}
	return nil
}

// Processor scores events.
type Processor struct {
	cfg  Config
	core *scoring.Core
	// prep is core's clone for prepare, which runs beside handle.
	prep  *scoring.Core
	store *leadstate.Store
	log   *slog.Logger
	m     *metrics

	scorer   *Scorer
	consumer *stream.Consumer
	mql      *stream.Producer
	mqa      *stream.Producer
	dead     *stream.Producer

	cache *stateCache // nil when processor.state-cache is 0

	// poison holds, across the attempts of one batch, the dead-letter reason
	// of each record isolate confirmed can never be scored, so an attempt
	// cut short by its time bound is not lost work (handle, isolate only).
	poison map[poisonKey]string

	// running is set once Run's Kafka clients are up and it consumes.
	running atomic.Bool
}

// Running reports whether the processor consumes: its producers and
// consumer are up. Until then /readyz says it is starting.
func (p *Processor) Running() bool { return p.running.Load() }

// poisonKey is a record of the events topic.
type poisonKey struct {
	partition int
	offset    int64
}

// New builds a processor; Kafka connections are made in Run.
func New(cfg Config, rules *scoring.Rules, store *leadstate.Store, log *slog.Logger, reg prometheus.Registerer) (*Processor, error) {
	if cfg.DedupWindow == 0 {
		cfg.DedupWindow = scoring.DefaultDedupWindow
	}
	if cfg.AnonymousTTL == 0 {
		cfg.AnonymousTTL = scoring.DefaultAnonymousTTL
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rules == nil || len(rules.Models) == 0 {
		return nil, errors.New("processor needs scoring rules with at least one model")
	}
	core := scoring.NewCore(rules, cfg.DedupWindow)
	core.SetFromEmailDomain(cfg.FromEmailDomain)
	cache := newStateCache(cfg.StateCache)
	sc := NewScorer(core, store, cfg.AnonymousTTL)
	sc.cache = cache
	return &Processor{cfg: cfg, core: core, prep: core.Clone(), store: store, scorer: sc, cache: cache,
		log: log.With("stage", "processor"), m: newMetrics(reg)}, nil
}

// Run consumes until ctx is cancelled, then finishes the batch in flight.
func (p *Processor) Run(ctx context.Context) error {
	err := p.run(ctx)
	if err != nil && ctx.Err() != nil {
		// Stopped while starting (connecting to Kafka), or with a batch that
		// could not be finished in time (a service down): a shutdown, not a
		// failure; nothing of it was committed.
		p.log.Info("processor stopped with work unfinished (left uncommitted: the next owner of its partitions redoes it)", "err", err)
		return nil
	}
	return err
}

func (p *Processor) run(ctx context.Context) error {
	var err error
	p.checkEviction(ctx)
	// Closed together: each may wait for Kafka (a flush, a ping in flight),
	// and a stop while Kafka is away should wait that once, not three times.
	var producers []*stream.Producer
	defer func() { stream.CloseAll(producers...) }()
	p.mql, err = stream.NewProducer(ctx, p.cfg.Kafka.Producer(stream.TopicMQL), p.log, p.m.reg)
	if err != nil {
		return fmt.Errorf("starting mql producer: %w", err)
	}
	producers = append(producers, p.mql)
	p.mqa, err = stream.NewProducer(ctx, p.cfg.Kafka.Producer(stream.TopicMQA), p.log, p.m.reg)
	if err != nil {
		return fmt.Errorf("starting mqa producer: %w", err)
	}
	producers = append(producers, p.mqa)
	p.dead, err = stream.NewProducer(ctx, p.cfg.Kafka.Producer(stream.TopicDeadLetter), p.log, p.m.reg)
	if err != nil {
		return fmt.Errorf("starting dead-letter producer: %w", err)
	}
	producers = append(producers, p.dead)
	p.consumer, err = stream.NewConsumer(stream.ConsumerConfig{
		Brokers:        p.cfg.Kafka.Brokers,
		Security:       p.cfg.Kafka.Security,
		Group:          p.cfg.Group,
		Topics:         []string{p.cfg.Kafka.Topic(stream.TopicEvents)},
		MaxBatch:       p.cfg.BatchSize,
		MaxWait:        p.cfg.MaxWait,
		SessionTimeout: p.cfg.Kafka.SessionTimeout,
	}, p.log, p.m.reg)
	if err != nil {
		return err
	}
	names := make([]string, len(p.core.Rules().Models))
	for i, m := range p.core.Rules().Models {
		names[i] = m.Name
	}
	p.log.Info("processor running", "group", p.cfg.Group, "models", names, "dedup_window", p.cfg.DedupWindow)
	p.running.Store(true)
	defer p.running.Store(false)
	return p.consumer.RunPrepared(ctx, p.prepare, p.handle)
}

// evictionCheckTimeout bounds the start's look at Redis's memory settings.
const evictionCheckTimeout = 5 * time.Second

// checkEviction warns when Redis may evict leadstream's keys (a
// maxmemory-policy other than noeviction): scores, dedup and crossings would
// then be lost without an error. An ACL user without +info cannot look: that
// is said at info level.
func (p *Processor) checkEviction(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, evictionCheckTimeout)
	defer cancel()
	evs, err := p.store.Evictions(ctx)
	if err != nil {
		p.log.Info("could not check redis's maxmemory-policy (it must be noeviction)", "err", err)
		return
	}
	for _, e := range evs {
		if e.Evicts() {
			p.log.Warn("redis may evict leadstream's keys when it is full, losing scores, dedup (events counted twice) and MQL records: set maxmemory-policy noeviction",
				"addr", e.Addr, "maxmemory_policy", e.Policy, "maxmemory", e.MaxMemory)
		}
	}
}

// prepared is a decoded batch and the states it starts from.
type prepared struct {
	events []*event.Event
	msgs   []*stream.Message // the record of each event
	dead   []stream.Record   // records that do not decode
	recs   map[scoring.Subject]leadstate.Record
	err    error // reading the states failed
}

// prepare decodes a batch and reads the states of the subjects its events
// name, following merges to their survivors (one pipeline per step). The
// consumer runs it on the next batch while the current one is handled.
func (p *Processor) prepare(ctx context.Context, batch []stream.Message) any {
	pb := &prepared{events: make([]*event.Event, 0, len(batch)), recs: map[scoring.Subject]leadstate.Record{}}
	// A clone per call: prepare runs in the consumer's fetch-ahead and, on a
	// retry, in handle at the same time, and Relevant keeps scratch slices.
	core := p.prep.Clone()
	evs := make([]event.Event, len(batch))
	var want []scoring.Subject
	for i := range batch {
		e := &evs[i]
		if err := event.Unmarshal(batch[i].Value, e); err != nil {
			pb.dead = append(pb.dead, stream.DeadLetter(batch[i], err.Error()))
			continue
		}
		if n := len(e.LeadID) + len(e.AnonymousID) + len(e.PreviousID) + len(e.GroupID); n > maxIDBytes {
			// Not from the collector (32 KB per event): its MQL record, which
			// repeats the lead id, could exceed what Kafka takes, and the
			// publish would fail for ever.
			pb.dead = append(pb.dead, stream.DeadLetter(batch[i], fmt.Sprintf("the event's ids take %d bytes, over the %d a processor accepts (the collector accepts 32 KB per event)", n, maxIDBytes)))
			continue
		}
		pb.events = append(pb.events, e)
		pb.msgs = append(pb.msgs, &batch[i])
		if e.Bot || !core.Relevant(e) {
			continue // scored by no rule: no state to read
		}
		want = append(want, subjectsOf(e)...)
		if e.Type == event.Group && e.GroupID != "" {
			want = append(want, scoring.Account(e.GroupID))
		}
	}
	pb.err = p.scorer.read(ctx, pb.recs, want)
	return pb
}

// maxIDBytes bounds the ids of an event the processor scores (lead,
// anonymous, previous and group id together): above the collector's 32 KB
// per event, far below Kafka's record limit for the MQL records it makes.
const maxIDBytes = 64 << 10

// subjectsOf lists the subjects an event may need the state of.
func subjectsOf(e *event.Event) []scoring.Subject {
	var out []scoring.Subject
	if e.LeadID != "" {
		out = append(out, scoring.Lead(e.LeadID))
	}
	if e.AnonymousID != "" {
		out = append(out, scoring.Anon(e.AnonymousID))
	}
	if e.Type == event.Alias && e.PreviousID != "" {
		out = append(out, scoring.Anon(e.PreviousID), scoring.Lead(e.PreviousID))
	}
	return out
}

// handle scores one batch (Scorer.Score), then dead-letters what can never
// be applied and publishes the MQL records left in outboxes, clearing them
// once Kafka acknowledged them. Every step either dedups or converges, so a
// batch retried whole after an error or a crash at any point changes
// nothing more. pb is what prepare made of the batch ahead of time, or nil
// (a retry): then handle prepares it now. A batch that fails for a reason
// retrying cannot fix is scored event by event (isolate), so one poison
// record is dead-lettered and the rest of its batch goes on.
func (p *Processor) handle(ctx context.Context, batch []stream.Message, pb any) error {
	b, _ := pb.(*prepared)
	if b == nil {
		b = p.prepare(ctx, batch).(*prepared)
	} else {
		for s := range b.recs {
			if r, ok := p.cache.get(s); ok {
				b.recs[s] = r // stored by the batch handled while this one was read
			}
		}
	}
	err := b.err
	if err == nil {
		err = p.score(ctx, b)
	}
	if poisoned(err) {
		err = p.isolate(ctx, b, err)
	}
	if err == nil {
		clear(p.poison) // the batch is done: its records will not come again
	}
	return err
}

// score scores a prepared batch (Scorer.Score), dead-letters what can never
// be applied and publishes the MQL records left in outboxes.
func (p *Processor) score(ctx context.Context, b *prepared) error {
	start := time.Now()
	res, err := p.scorer.Score(ctx, b.events, b.recs)
	if err != nil {
		return err
	}
	// Each event waited for the batch's whole Redis work: observe it once
	// per event scored and per merge completed.
	d := time.Since(start).Seconds()
	for _, o := range res.Outcomes {
		if o == scoring.Scored {
			p.m.apply.Observe(d)
		}
	}
	for range res.Merges {
		p.m.apply.Observe(d)
	}
	p.m.conflicts.Add(float64(res.Conflicts))
	if err := p.deadLetters(ctx, b, res); err != nil {
		return err
	}
	if err := p.publish(ctx, res.Outbox); err != nil {
		return err
	}
	if err := p.publishMQA(ctx, res.OutboxMQA); err != nil {
		return err
	}
	p.count(b, res)
	return nil
}

// deadLetters sends the records that do not decode, or that can never be
// applied, to the dead-letter topic with their reason.
func (p *Processor) deadLetters(ctx context.Context, b *prepared, res *Scored) error {
	dead := b.dead
	for i, o := range res.Outcomes {
		if o == scoring.Dead {
			dead = append(dead, stream.DeadLetter(*b.msgs[i], res.Errors[i].Error()))
		}
	}
	if len(dead) == 0 {
		return nil
	}
	if err := p.dead.ProduceAll(ctx, dead); err != nil {
		return fmt.Errorf("writing %d records to the dead-letter topic: %w", len(dead), err)
	}
	p.m.events.WithLabelValues("dead_letter").Add(float64(len(b.dead)))
	p.log.Warn("records sent to the dead-letter topic", "count", len(dead))
	return nil
}

// count records a handled batch's outcomes in the metrics.
func (p *Processor) count(b *prepared, res *Scored) {
	now := time.Now()
	for i, o := range res.Outcomes {
		p.m.events.WithLabelValues(o.String()).Inc()
		if o != scoring.Bot {
			p.m.delay.Observe(max(now.Sub(b.events[i].ReceivedAt).Seconds(), 0))
		}
	}
	p.m.merges.Add(float64(res.Merges))
}

// publish writes pending MQL records and clears them from the outbox once
// Kafka acknowledged them.
func (p *Processor) publish(ctx context.Context, outbox []event.MQL) error {
	if len(outbox) == 0 {
		return nil
	}
	recs := make([]stream.Record, len(outbox))
	for i := range outbox {
		b, err := json.Marshal(&outbox[i])
		if err != nil {
			return fmt.Errorf("encoding mql record: %w", err)
		}
		recs[i] = stream.Record{Key: []byte(outbox[i].LeadID), Value: b}
	}
	if err := p.mql.Produce(ctx, recs); err != nil {
		return fmt.Errorf("publishing %d mql records: %w", len(recs), err)
	}
	p.m.mql.Add(float64(len(outbox)))
	if err := p.store.AckOutbox(ctx, outbox); err != nil {
		return err
	}
	for _, m := range outbox {
		p.log.Info("lead became MQL", "model", m.Model, "score", m.Score, "mql_id", m.MQLID)
	}
	return nil
}

// publishMQA writes pending MQA records and clears them from the accounts'
// outboxes once Kafka acknowledged them.
func (p *Processor) publishMQA(ctx context.Context, outbox []event.MQA) error {
	if len(outbox) == 0 {
		return nil
	}
	recs := make([]stream.Record, len(outbox))
	for i := range outbox {
		b, err := json.Marshal(&outbox[i])
		if err != nil {
			return fmt.Errorf("encoding mqa record: %w", err)
		}
		recs[i] = stream.Record{Key: []byte(outbox[i].AccountID), Value: b}
	}
	if err := p.mqa.Produce(ctx, recs); err != nil {
		return fmt.Errorf("publishing %d mqa records: %w", len(recs), err)
	}
	p.m.mqa.Add(float64(len(outbox)))
	if err := p.store.AckOutboxMQA(ctx, outbox); err != nil {
		return err
	}
	for _, m := range outbox {
		p.log.Info("account became MQA", "model", m.Model, "score", m.Score, "mqa_id", m.MQAID, "engaged_members", m.EngagedMembers)
	}
	return nil
}
