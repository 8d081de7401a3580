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
//	leadstream_processor_apply_duration_seconds time each event waited for its Redis apply (one observation per event)
package processor

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"sync"
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

	hits []scoring.Hit // scratch, reused per event (handle runs on one goroutine)

	// Of the last batch handled (handle only): its merges, and whether it
	// took several attempts. The next batch's links, read ahead, lack the
	// former and cannot be trusted after the latter.
	prevMerges  []merge
	prevRetried bool
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
	p.mql, err = stream.NewProducer(ctx, stream.ProducerConfig{Brokers: p.cfg.Kafka.Brokers, Security: p.cfg.Kafka.Security, Topic: p.cfg.Kafka.Topic(stream.TopicMQL)}, p.log, p.m.reg)
	if err != nil {
		return fmt.Errorf("starting mql producer: %w", err)
	}
	defer p.mql.Close()
	p.dead, err = stream.NewProducer(ctx, stream.ProducerConfig{Brokers: p.cfg.Kafka.Brokers, Security: p.cfg.Kafka.Security, Topic: p.cfg.Kafka.Topic(stream.TopicDeadLetter)}, p.log, p.m.reg)
	if err != nil {
		return fmt.Errorf("starting dead-letter producer: %w", err)
	}
	defer p.dead.Close()
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
	p.log.Info("processor running", "group", p.cfg.Group, "models", p.names)
	return p.consumer.RunPrepared(ctx, p.prepare, p.handle)
}

// prepared is a decoded batch and the identity links of its anonymous ids.
type prepared struct {
	events []event.Event
	dead   []stream.Record
	anons  []string
	links  map[string]string
	err    error // reading the links failed
}

// prepare decodes a batch and reads its identity links (one pipeline). The
// consumer runs it on the next batch while the current one is handled, so the
// links it reads may miss what the current batch links: handle adds those.
func (p *Processor) prepare(ctx context.Context, batch []stream.Message) any {
	pb := &prepared{events: make([]event.Event, 0, len(batch))}
	for _, msg := range batch {
		pb.events = append(pb.events, event.Event{})
		e := &pb.events[len(pb.events)-1]
		if err := event.Unmarshal(msg.Value, e); err != nil {
			pb.events = pb.events[:len(pb.events)-1]
			pb.dead = append(pb.dead, stream.DeadLetter(msg, err.Error()))
			continue
		}
		if a := anonOf(e); a != "" {
			pb.anons = append(pb.anons, a)
		}
	}
	pb.links, pb.err = p.store.LinkedLeads(ctx, pb.anons)
	return pb
}

// handle applies a batch in a fixed number of Redis round trips, however many
// merges and identifies it holds:
//
//  1. the identity links of the batch's anonymous ids (one pipeline, done by
//     prepare while the previous batch was handled);
//  2. in memory, in batch order: each event's subject, and the visitors to
//     merge into a lead (an anonymous id seen with a lead it is not linked to);
//  3. the updates of visitors about to be merged, so that their history is
//     complete, alongside the stored traits of leads that identify;
//  4. the merged visitors' histories, alongside the leads' merged traits
//     (written before any fit they give is applied);
//  5. every other update in batch order, each merge just before the event
//     that triggered it (pipelines of apply scripts);
//  6. the MQL records left in outboxes published, then cleared (one pipeline);
//  7. the merged visitors linked to their leads and their state dropped.
//
// Every step either dedups or converges, so a batch retried whole after an
// error or a crash at any point changes nothing more. pb is what prepare made
// of the batch ahead of time, or nil (a retry): then handle prepares it now.
func (p *Processor) handle(ctx context.Context, batch []stream.Message, pb any) error {
	ahead, _ := pb.(*prepared)
	b := ahead
	if b == nil {
		b = p.prepare(ctx, batch).(*prepared)
	} else if b.err != nil || p.prevRetried {
		// The links read ahead are unusable, or the previous batch took
		// several attempts (a failed one may have linked visitors that the
		// successful one then no longer merged): read them again.
		b.links, b.err = p.store.LinkedLeads(ctx, b.anons)
	} else {
		// Read ahead while the previous batch was handled: add its links.
		for _, m := range p.prevMerges {
			if _, ok := b.links[m.anon]; ok {
				b.links[m.anon] = m.lead
			}
		}
	}
	if b.err != nil {
		return b.err
	}
	events, dead, links := b.events, b.dead, b.links
	var err error

	// Subjects and merges, in batch order.
	type item struct {
		e       *event.Event
		subject leadstate.Subject
		merge   int // index in merges of the merge this event triggers, -1 = none
	}
	items := make([]item, 0, len(events))
	var merges []merge
	merging := map[string]bool{} // visitors merged in this batch
	var identifying []string     // leads whose traits an identify changes
	for i := range events {
		e := &events[i]
		if e.Bot { // flagged by the collector: stored by the sink, never scored or linked
			p.m.events.WithLabelValues("bot").Inc()
			continue
		}
		subject, mergeFrom := resolve(e, links)
		it := item{e: e, subject: subject, merge: -1}
		if mergeFrom != "" {
			// A visitor merged a second time (into another lead) has no
			// state left: the first merge dropped it.
			it.merge = len(merges)
			merges = append(merges, merge{anon: mergeFrom, lead: subject.ID, trigger: e.ID, again: merging[mergeFrom]})
			merging[mergeFrom] = true
			links[mergeFrom] = subject.ID // later events of the batch score on the lead
		}
		if hasTraits(e, subject) {
			identifying = append(identifying, subject.ID)
		}
		items = append(items, it)
	}

	// Updates of visitors merged below go first: their history must hold
	// them. Such events all come before the merge (later ones resolve to the
	// lead), and no other update touches a visitor's keys.
	var first []leadstate.Update
	if len(merges) > 0 {
		for _, it := range items {
			if it.subject.Anonymous && merging[it.subject.ID] {
				if u := p.update(it.e, it.subject, nil); len(u.Models) > 0 {
					first = append(first, u)
				} else {
					p.m.events.WithLabelValues("no_match").Inc()
				}
			}
		}
	}
	var stored map[string]map[string]any
	err = concurrently(func() error {
		return p.apply(ctx, first, nil)
	}, func() error {
		var err error
		stored, err = p.store.TraitsMany(ctx, identifying)
		return err
	})
	if err != nil {
		return err
	}

	// Identify events merge their traits into the lead's, in batch order.
	traits := make(map[string]map[string]any, len(identifying))
	var fitTraits []map[string]any // per item; nil = no identify
	if len(identifying) > 0 {
		fitTraits = make([]map[string]any, len(items))
		for i, it := range items {
			if !hasTraits(it.e, it.subject) {
				continue
			}
			incoming, err := scoring.DecodeTraits(it.e.Traits)
			if err != nil {
				return err
			}
			t := traits[it.subject.ID]
			if t == nil {
				if t = stored[it.subject.ID]; t == nil {
					t = make(map[string]any, len(incoming))
				}
				traits[it.subject.ID] = t
			}
			for k, v := range incoming {
				t[k] = v
			}
			fitTraits[i] = maps.Clone(t) // as of this identify
		}
	}
	var hist []leadstate.History
	err = concurrently(func() error {
		todo := make([]string, 0, len(merges))
		for _, m := range merges {
			if !m.again {
				todo = append(todo, m.anon)
			}
		}
		h, err := p.store.AnonymousHistories(ctx, todo, p.names)
		hist = h
		return err
	}, func() error {
		return p.store.SetTraitsMany(ctx, traits)
	})
	if err != nil {
		return err
	}

	// Everything else, in batch order, each merge before its trigger.
	pending := make([]leadstate.Update, 0, len(items)+len(merges))
	kinds := make([]int, 0, cap(pending)) // per pending update: -1 = event, else index in merges
	h := 0
	for i, it := range items {
		if it.merge >= 0 {
			m := &merges[it.merge]
			u := leadstate.Update{Subject: leadstate.Lead(m.lead), DedupID: "merge:" + m.anon, TriggerEventID: m.trigger}
			if !m.again {
				u.ExtraSeen = hist[h].Seen
				for j := range p.rules.Models {
					md := &p.rules.Models[j]
					if hits := hist[h].Hits[md.Name]; len(hits) > 0 {
						u.Models = append(u.Models, leadstate.ModelUpdate{Name: md.Name, HalfLife: md.HalfLife, Threshold: md.Threshold, RearmBelow: md.RearmBelow, Hits: hits})
					}
				}
				h++
			}
			pending = append(pending, u)
			kinds = append(kinds, it.merge)
		}
		if it.subject.Anonymous && merging[it.subject.ID] {
			continue // applied above
		}
		var ft map[string]any
		if fitTraits != nil {
			ft = fitTraits[i]
		}
		u := p.update(it.e, it.subject, ft)
		if len(u.Models) == 0 {
			p.m.events.WithLabelValues("no_match").Inc()
			continue
		}
		pending = append(pending, u)
		kinds = append(kinds, -1)
	}
	if err := p.apply(ctx, pending, kinds); err != nil {
		return err
	}
	ms := make([]leadstate.Merged, len(merges))
	for i, m := range merges {
		ms[i] = leadstate.Merged{Anon: m.anon, Lead: m.lead}
	}
	if err := p.store.LinkMerged(ctx, ms, p.names); err != nil {
		return err
	}
	if len(dead) > 0 {
		if err := p.dead.Produce(ctx, dead); err != nil {
			return fmt.Errorf("writing %d records to the dead-letter topic: %w", len(dead), err)
		}
		p.m.events.WithLabelValues("dead_letter").Add(float64(len(dead)))
		p.log.Warn("records sent to the dead-letter topic", "count", len(dead))
	}
	p.prevMerges, p.prevRetried = merges, ahead == nil
	return nil
}

// merge is an anonymous visitor's history to fold into a lead, as a sequence
// of idempotent steps, each on one hash slot: apply (dedup "merge:<anon>",
// the visitor's event ids as ExtraSeen), link, drop. A crash between steps is
// repaired by the redelivered event.
type merge struct {
	anon, lead, trigger string
	again               bool // merged earlier in the same batch: its state is gone
}

// concurrently runs f and g at once (two Redis round trips in parallel).
func concurrently(f, g func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- g() }()
	err := f()
	return errors.Join(err, <-errc)
}

// apply applies updates in one pipeline and publishes the MQL records they
// left in outboxes. kinds says which updates are merges (see handle); nil =
// all are events.
func (p *Processor) apply(ctx context.Context, pending []leadstate.Update, kinds []int) error {
	if len(pending) == 0 {
		return nil
	}
	start := time.Now()
	results, err := p.applyMany(ctx, pending)
	if err != nil {
		return err
	}
	// Each event waited for the whole pipelined apply: observe that once per event.
	d := time.Since(start).Seconds()
	for range pending {
		p.m.apply.Observe(d)
	}
	var outbox []event.MQL
	seen := map[string]bool{}
	for i, r := range results {
		switch {
		case kinds != nil && kinds[i] >= 0:
			if r.Applied {
				p.m.merges.Inc()
			}
		case r.Applied:
			p.m.events.WithLabelValues("scored").Inc()
		default:
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

// applyPipelines is how many apply pipelines a batch's updates are spread
// over, and minPerPipeline the fewest updates worth a pipeline of their own.
const (
	applyPipelines = 4
	minPerPipeline = 32
)

// applyMany runs updates as ApplyMany does, spread over concurrent pipelines
// by subject: one subject's updates stay in one pipeline, in their order, so
// each subject sees exactly the sequence it would in a single pipeline (no
// script touches two subjects). While Redis runs one pipeline's scripts the
// next one is encoded and sent, and the replies of the last decoded. Results
// are in the order of us.
func (p *Processor) applyMany(ctx context.Context, us []leadstate.Update) ([]leadstate.Result, error) {
	n := min(applyPipelines, len(us)/minPerPipeline)
	if n <= 1 {
		return p.store.ApplyMany(ctx, us)
	}
	idx := make([][]int, n)
	for i := range us {
		g := subjectGroup(us[i].Subject, n)
		idx[g] = append(idx[g], i)
	}
	results := make([]leadstate.Result, len(us))
	errs := make([]error, n)
	var wg sync.WaitGroup
	for g := range n {
		if len(idx[g]) == 0 {
			continue
		}
		wg.Go(func() {
			part := make([]leadstate.Update, len(idx[g]))
			for j, i := range idx[g] {
				part[j] = us[i]
			}
			res, err := p.store.ApplyMany(ctx, part)
			if err != nil {
				errs[g] = err
				return
			}
			for j, i := range idx[g] {
				results[i] = res[j]
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return results, nil
}

// subjectGroup spreads subjects over n groups (FNV-1a of the id).
func subjectGroup(s leadstate.Subject, n int) int {
	h := uint32(2166136261)
	if s.Anonymous {
		h = (h ^ 'a') * 16777619
	}
	for i := 0; i < len(s.ID); i++ {
		h = (h ^ uint32(s.ID[i])) * 16777619
	}
	return int(h % uint32(n))
}

// hasTraits says whether e changes its subject's traits (an identify of a lead).
func hasTraits(e *event.Event, subject leadstate.Subject) bool {
	return e.Type == event.Identify && len(e.Traits) > 0 && !subject.Anonymous
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

// update builds what an event does to its subject's models; no models = no
// effect. traits are the lead's merged traits as of an identify (nil = none).
func (p *Processor) update(e *event.Event, subject leadstate.Subject, traits map[string]any) leadstate.Update {
	return BuildUpdate(p.rules, e, subject, traits, &p.hits)
}

// BuildUpdate is the update the processor applies for e to subject under
// rules: every model's matching hits (with their caps) and, given the lead's
// merged traits, its fit. hits is scratch space reused across calls. The
// benchmark harness builds its Redis ceiling's updates with it.
func BuildUpdate(rules *scoring.Rules, e *event.Event, subject leadstate.Subject, traits map[string]any, hits *[]scoring.Hit) leadstate.Update {
	u := leadstate.Update{Subject: subject, DedupID: e.ID, TriggerEventID: e.ID}
	te := e.EventTime.UnixMilli()
	for i := range rules.Models {
		m := &rules.Models[i]
		*hits = m.Match(e, (*hits)[:0])
		mu := leadstate.ModelUpdate{Name: m.Name, HalfLife: m.HalfLife, Threshold: m.Threshold, RearmBelow: m.RearmBelow}
		for _, h := range *hits {
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
	return u
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
	if err := p.store.AckOutboxMany(ctx, outbox); err != nil {
		return err
	}
	for _, m := range outbox {
		p.log.Info("lead became MQL", "model", m.Model, "score", m.Score, "mql_id", m.MQLID)
	}
	return nil
}
