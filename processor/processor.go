// Package processor is the scoring stage: a consumer group (default "scoring")
// on the events topic that resolves each event's identity, matches it against
// the scoring rules, applies the points to the lead's rolling score in Redis in
// one atomic step (dedup by event id included) and publishes an MQL record on
// the mql topic when a lead crosses its model's threshold.
//
// Processors are stateless: all state lives in Redis (package leadstate) and
// offsets are committed only after a batch is fully applied, so any processor
// may die at any moment and another continues where it left off. A crossing is
// written to the lead's outbox in the same script that applies the event and is
// removed only after Kafka acknowledged it, so a crash never loses one; a
// redelivered record can publish it again with the same deterministic mql_id.
//
// Metrics:
//
//	leadstream_processor_events_total{result}   scored | duplicate | no_match | dead_letter | bot
//	leadstream_processor_mql_published_total    MQL records acknowledged by Kafka
//	leadstream_processor_merges_total           anonymous histories merged into leads
//	leadstream_processor_apply_duration_seconds Redis apply time per event (pipelined)
package processor

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures the processor. Kafka settings are registered by the caller.
type Config struct {
	Kafka     stream.Config
	Group     string
	BatchSize int
	MaxWait   time.Duration
}

// RegisterFlags registers processor.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Group, "processor.group", "scoring", "Kafka consumer group of the processors")
	fs.IntVar(&c.BatchSize, "processor.batch-size", 500, "events per batch; offsets are committed per batch")
	fs.DurationVar(&c.MaxWait, "processor.max-wait", 20*time.Millisecond, "longest wait to fill a batch")
}

// Validate checks the configuration.
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
	return nil
}

// Processor scores events.
type Processor struct {
	cfg   Config
	rules *scoring.Rules
	store *leadstate.Store
	log   *slog.Logger
	m     *metrics
	names []string

	consumer *stream.Consumer
	mql      *stream.Producer
	dead     *stream.Producer

	hits []scoring.Hit // scratch, reused per event (Run is single-goroutine)
}

// New builds a processor; Kafka connections are made in Run.
func New(cfg Config, rules *scoring.Rules, store *leadstate.Store, log *slog.Logger, reg prometheus.Registerer) (*Processor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rules == nil || len(rules.Models) == 0 {
		return nil, errors.New("processor needs scoring rules with at least one model")
	}
	p := &Processor{cfg: cfg, rules: rules, store: store, log: log.With("stage", "processor"), m: newMetrics(reg)}
	for _, m := range rules.Models {
		p.names = append(p.names, m.Name)
	}
	return p, nil
}

// Run consumes until ctx is cancelled, then finishes the batch in flight.
func (p *Processor) Run(ctx context.Context) error {
	err := p.run(ctx)
	if err != nil && ctx.Err() != nil {
		// Stopped while starting (connecting to Kafka): a shutdown, not a failure.
		p.log.Info("processor stopped during start-up", "err", err)
		return nil
	}
	return err
}

func (p *Processor) run(ctx context.Context) error {
	var err error
	p.mql, err = stream.NewProducer(ctx, stream.ProducerConfig{Brokers: p.cfg.Kafka.Brokers, Topic: p.cfg.Kafka.Topic(stream.TopicMQL)}, p.log, p.m.reg)
	if err != nil {
		return fmt.Errorf("starting mql producer: %w", err)
	}
	defer p.mql.Close()
	p.dead, err = stream.NewProducer(ctx, stream.ProducerConfig{Brokers: p.cfg.Kafka.Brokers, Topic: p.cfg.Kafka.Topic(stream.TopicDeadLetter)}, p.log, p.m.reg)
	if err != nil {
		return fmt.Errorf("starting dead-letter producer: %w", err)
	}
	defer p.dead.Close()
	p.consumer, err = stream.NewConsumer(stream.ConsumerConfig{
		Brokers:        p.cfg.Kafka.Brokers,
		Group:          p.cfg.Group,
		Topics:         []string{p.cfg.Kafka.Topic(stream.TopicEvents)},
		MaxBatch:       p.cfg.BatchSize,
		MaxWait:        p.cfg.MaxWait,
		SessionTimeout: p.cfg.Kafka.SessionTimeout,
	}, p.log, p.m.reg)
	if err != nil {
		return err
	}
	p.log.Info("processor running", "group", p.cfg.Group, "models", p.names)
	return p.consumer.Run(ctx, p.handle)
}

// handle applies a batch. Redis work is pipelined: identity links are read in
// one round trip and updates are applied in one pipeline, flushed early only
// where a later event depends on an earlier one (an anonymous-to-lead merge).
// Every step either dedups or converges, so a redelivered batch changes nothing.
func (p *Processor) handle(ctx context.Context, batch []stream.Message) error {
	var dead []stream.Record
	events := make([]event.Event, 0, len(batch))
	var anons []string
	for _, msg := range batch {
		events = append(events, event.Event{})
		e := &events[len(events)-1]
		if err := event.Unmarshal(msg.Value, e); err != nil {
			events = events[:len(events)-1]
			dead = append(dead, stream.DeadLetter(msg, err.Error()))
			continue
		}
		if a := anonOf(e); a != "" {
			anons = append(anons, a)
		}
	}
	links, err := p.store.LinkedLeads(ctx, anons)
	if err != nil {
		return err
	}
	var pending []leadstate.Update
	for i := range events {
		e := &events[i]
		if e.Bot { // flagged by the collector: stored by the sink, never scored or linked
			p.m.events.WithLabelValues("bot").Inc()
			continue
		}
		subject, mergeFrom := resolve(e, links)
		if mergeFrom != "" {
			// Later events of this batch must see the merged state and the link.
			if err := p.flush(ctx, pending); err != nil {
				return err
			}
			pending = pending[:0]
			if err := p.merge(ctx, mergeFrom, subject.ID, e.ID); err != nil {
				return err
			}
			links[mergeFrom] = subject.ID
		}
		u, err := p.update(ctx, e, subject)
		if err != nil {
			return err
		}
		if len(u.Models) == 0 {
			p.m.events.WithLabelValues("no_match").Inc()
			continue
		}
		pending = append(pending, u)
	}
	if err := p.flush(ctx, pending); err != nil {
		return err
	}
	if len(dead) > 0 {
		if err := p.dead.Produce(ctx, dead); err != nil {
			return fmt.Errorf("writing %d records to the dead-letter topic: %w", len(dead), err)
		}
		p.m.events.WithLabelValues("dead_letter").Add(float64(len(dead)))
		p.log.Warn("records sent to the dead-letter topic", "count", len(dead))
	}
	return nil
}

// flush applies pending updates in one pipeline and publishes the MQL records they left in outboxes.
func (p *Processor) flush(ctx context.Context, pending []leadstate.Update) error {
	if len(pending) == 0 {
		return nil
	}
	start := time.Now()
	results, err := p.store.ApplyMany(ctx, pending)
	if err != nil {
		return err
	}
	p.m.apply.Observe(time.Since(start).Seconds() / float64(len(pending)))
	var outbox []event.MQL
	seen := map[string]bool{}
	for _, r := range results {
		if r.Applied {
			p.m.events.WithLabelValues("scored").Inc()
		} else {
			p.m.events.WithLabelValues("duplicate").Inc()
		}
		// Each result carries its lead's whole pending outbox: publish each record once.
		for _, m := range r.Outbox {
			if !seen[m.MQLID] {
				seen[m.MQLID] = true
				outbox = append(outbox, m)
			}
		}
	}
	return p.publish(ctx, outbox)
}

// anonOf is the anonymous id an event may need resolved or linked.
func anonOf(e *event.Event) string {
	if e.Type == event.Alias && e.PreviousID != "" {
		return e.PreviousID
	}
	return e.AnonymousID
}

// resolve finds whose state an event changes, given the known links, and
// whether an anonymous visitor must first be merged into the event's lead
// (the first time both ids appear together).
func resolve(e *event.Event, links map[string]string) (subject leadstate.Subject, mergeFrom string) {
	anon := anonOf(e)
	if e.LeadID == "" {
		if lead := links[anon]; lead != "" {
			return leadstate.Lead(lead), ""
		}
		return leadstate.Anon(anon), ""
	}
	if anon != "" && anon != e.LeadID && links[anon] != e.LeadID {
		return leadstate.Lead(e.LeadID), anon
	}
	return leadstate.Lead(e.LeadID), ""
}

// update builds what an event does to its subject's models; no models = no effect.
func (p *Processor) update(ctx context.Context, e *event.Event, subject leadstate.Subject) (leadstate.Update, error) {
	u := leadstate.Update{Subject: subject, DedupID: e.ID, TriggerEventID: e.ID}
	te := e.EventTime.UnixMilli()
	var traits map[string]any
	if e.Type == event.Identify && len(e.Traits) > 0 && !subject.Anonymous {
		var err error
		if traits, err = p.mergeTraits(ctx, subject.ID, e.Traits); err != nil {
			return u, err
		}
	}
	for i := range p.rules.Models {
		m := &p.rules.Models[i]
		p.hits = m.Match(e, p.hits[:0])
		mu := leadstate.ModelUpdate{Name: m.Name, HalfLife: m.HalfLife, Threshold: m.Threshold, RearmBelow: m.RearmBelow}
		for _, h := range p.hits {
			lh := leadstate.Hit{Rule: h.Name, Points: h.Points, TimeMs: te}
			if h.Cap != nil {
				lh.CapCount, lh.CapWindow = h.Cap.Count, h.Cap.Window
			}
			mu.Hits = append(mu.Hits, lh)
		}
		if traits != nil {
			fit, reasons := m.FitPoints(traits)
			mu.Fit, mu.FitReasons, mu.FitTimeMs = &fit, reasons, te
		}
		if len(mu.Hits) > 0 || mu.Fit != nil {
			u.Models = append(u.Models, mu)
		}
	}
	return u, nil
}

// merge folds an anonymous visitor's history into a lead as a sequence of
// idempotent steps, each on one hash slot: apply (dedup "merge:<anon>"), link,
// drop. A crash between steps is repaired by the redelivered event.
func (p *Processor) merge(ctx context.Context, anon, lead, trigger string) error {
	hist, seen, err := p.store.AnonymousHistory(ctx, anon, p.names)
	if err != nil {
		return err
	}
	u := leadstate.Update{Subject: leadstate.Lead(lead), DedupID: "merge:" + anon, TriggerEventID: trigger, ExtraSeen: seen}
	for i := range p.rules.Models {
		m := &p.rules.Models[i]
		if hits := hist[m.Name]; len(hits) > 0 {
			u.Models = append(u.Models, leadstate.ModelUpdate{Name: m.Name, HalfLife: m.HalfLife, Threshold: m.Threshold, RearmBelow: m.RearmBelow, Hits: hits})
		}
	}
	res, err := p.store.Apply(ctx, &u)
	if err != nil {
		return err
	}
	if err := p.publish(ctx, res.Outbox); err != nil {
		return err
	}
	if err := p.store.Link(ctx, anon, lead); err != nil {
		return err
	}
	if res.Applied {
		p.m.merges.Inc()
	}
	return p.store.DropAnonymous(ctx, anon, p.names)
}

func (p *Processor) mergeTraits(ctx context.Context, lead string, raw json.RawMessage) (map[string]any, error) {
	incoming, err := scoring.DecodeTraits(raw)
	if err != nil {
		return nil, err
	}
	traits, err := p.store.Traits(ctx, lead)
	if err != nil {
		return nil, err
	}
	if traits == nil {
		traits = make(map[string]any, len(incoming))
	}
	for k, v := range incoming {
		traits[k] = v
	}
	if err := p.store.SetTraits(ctx, lead, traits); err != nil {
		return nil, err
	}
	return traits, nil
}

// publish writes pending MQL records and clears them from the outbox once Kafka acknowledged them.
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
	for _, m := range outbox {
		if err := p.store.AckOutbox(ctx, m.LeadID, m.MQLID); err != nil {
			return err
		}
		p.log.Info("lead became MQL", "model", m.Model, "score", m.Score, "mql_id", m.MQLID)
	}
	return nil
}
