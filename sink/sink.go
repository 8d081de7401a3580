package sink

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
)

const (
	// pingInterval is how often Run checks ClickHouse while batches are idle.
	pingInterval = 5 * time.Second
	// readyWindow is how recent the last good contact with ClickHouse must be
	// for Ready: a few missed pings, not one, make the sink unready.
	readyWindow = 3 * pingInterval
)

// Sink consumes the events and mql topics and inserts them into ClickHouse.
type Sink struct {
	cfg    Config
	log    *slog.Logger
	reg    prometheus.Registerer
	m      *metrics
	ran    atomic.Bool
	lastOK atomic.Int64 // UnixNano of the last successful ping or insert
	// running is set once Run's Kafka clients are up and it consumes.
	running atomic.Bool
}

// New validates cfg and prepares a Sink; nothing connects before Run.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sink config: %w", err)
	}
	return &Sink{cfg: cfg, log: log.With("stage", "sink"), reg: reg, m: newMetrics(reg)}, nil
}

// Ready reports whether ClickHouse answered recently.
func (s *Sink) Ready() bool {
	last := s.lastOK.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < readyWindow
}

func (s *Sink) markOK() { s.lastOK.Store(time.Now().UnixNano()) }

// Running reports whether the sink consumes: its dead-letter producer and
// consumer are up. Until then /readyz says it is starting.
func (s *Sink) Running() bool { return s.running.Load() }

// Run connects to ClickHouse, migrates the schema and consumes until ctx is
// cancelled; the batch in flight then is finished before Run returns nil.
// It returns an error when ClickHouse or Kafka cannot be set up, or when a
// batch could not be written before shutdown. Run may be called once.
func (s *Sink) Run(ctx context.Context) error {
	if s.ran.Swap(true) {
		return ErrAlreadyRun
	}
	err := s.run(ctx)
	if err != nil && ctx.Err() != nil {
		// Stopped while starting (connecting, migrating), or with a batch that
		// could not be finished in time (a service down): a shutdown, not a
		// failure; nothing of it was committed.
		s.log.Info("sink stopped with work unfinished (left uncommitted: the next owner of its partitions redoes it)", "err", err)
		return nil
	}
	return err
}

func (s *Sink) run(ctx context.Context) error {
	conn, err := warehouse.Open(ctx, s.cfg.ClickHouse)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer s.lastOK.Store(0) // a stopped sink is not ready
	db := s.cfg.ClickHouse.Database
	if err := warehouse.MigrateCluster(ctx, conn, db, s.cfg.ClickHouse.Cluster); err != nil {
		return err
	}
	if err := warehouse.WarnOutdatedEventsKey(ctx, conn, db, s.cfg.ClickHouse.Cluster, s.log); err != nil {
		s.log.Warn("could not read the events table's sort key", "err", err)
	}
	s.markOK()

	// The dead-letter topic must exist before its producer can start. Not
	// fatal: where the sink may not create topics, an operator already has.
	if err := stream.EnsureTopics(ctx, s.cfg.Kafka); err != nil {
		s.log.Warn("ensuring kafka topics failed", "err", err)
	}
	dlq, err := stream.NewProducer(ctx, s.cfg.Kafka.Producer(stream.TopicDeadLetter), s.log, s.kafkaReg())
	if err != nil {
		return fmt.Errorf("starting dead-letter producer: %w", err)
	}
	defer dlq.Close()

	pingCtx, stopPing := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.pingLoop(pingCtx, conn) })
	defer wg.Wait()
	defer stopPing()

	h := &handler{
		w:           writer{conn: conn, db: db, m: s.m},
		dlq:         dlq,
		log:         s.log,
		eventsTopic: s.cfg.Kafka.Topic(stream.TopicEvents),
		mqlTopic:    s.cfg.Kafka.Topic(stream.TopicMQL),
		mqaTopic:    s.cfg.Kafka.Topic(stream.TopicMQA),
		ok:          s.markOK,
	}
	for _, t := range []string{h.eventsTopic, h.mqlTopic, h.mqaTopic} {
		s.m.deadLetters.WithLabelValues(t)
		s.m.lastDead.WithLabelValues(t) // 0: never
	}
	h.members.fromDomain = s.cfg.FromEmailDomain
	// Created last: a kafka-go group reader joins its group at once, and
	// must not hold partitions while ClickHouse or the producer is not ready.
	consumer, err := stream.NewConsumer(stream.ConsumerConfig{
		Brokers:  s.cfg.Kafka.Brokers,
		Security: s.cfg.Kafka.Security,
		Group:    s.cfg.Group,
		Topics:   []string{h.eventsTopic, h.mqlTopic, h.mqaTopic},
		MaxBatch: s.cfg.BatchSize,
		MaxWait:  s.cfg.FlushInterval,
		// kafka.session-timeout, as the processor and the notifier use it.
		SessionTimeout: s.cfg.Kafka.SessionTimeout,
	}, s.log, s.kafkaReg())
	if err != nil {
		return fmt.Errorf("creating sink consumer: %w", err)
	}
	s.log.Info("sink running", "database", db, "group", s.cfg.Group)
	s.running.Store(true)
	defer s.running.Store(false)
	if err := consumer.Run(ctx, h.handle); err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	return nil
}

// kafkaReg labels the metrics of this stage's Kafka clients with stage="sink",
// so they do not collide with other stages' clients in one process (dev mode).
func (s *Sink) kafkaReg() prometheus.Registerer {
	if s.reg == nil {
		return nil
	}
	return prometheus.WrapRegistererWith(prometheus.Labels{"stage": "sink"}, s.reg)
}

func (s *Sink) pingLoop(ctx context.Context, conn driver.Conn) {
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, pingInterval)
		err := conn.Ping(pctx)
		cancel()
		switch {
		case err == nil:
			s.markOK()
			if failing {
				s.log.Info("clickhouse reachable again")
			}
			failing = false
		case ctx.Err() != nil:
			return
		case !failing:
			// Log the transition only; Ready and the insert errors tell the rest.
			s.log.Warn("clickhouse ping failed", "err", err)
			failing = true
		}
	}
}

// handler turns one consumed batch into inserts and dead letters. The
// consumer calls it from one goroutine, so its scratch rows are reused.
type handler struct {
	w                     writer
	dlq                   *stream.Producer
	log                   *slog.Logger
	eventsTopic, mqlTopic string
	mqaTopic              string
	ok                    func()
	rows                  rows
	evIdx                 []int     // scratch: batch index of each events-topic record
	errs                  []error   // scratch: decode result of each
	kept                  []int     // scratch: batch index of each event of a decoded block
	links                 linkSet   // scratch: the batch's identity links
	members               memberSet // scratch: the batch's account memberships
	mqlIdx                []int     // scratch: batch index of each decoded mql record
	mqaIdx                []int     // scratch: batch index of each decoded mqa record
	months                months    // scratch: the months of one INSERT
	errs2                 []error   // scratch: decode results of records that decoded before
	rejects               []reject
	batch                 []stream.Message // the batch being handled
	// refused remembers, across the attempts of one batch, the rows
	// ClickHouse refused alone (isolate): a later attempt rejects them at
	// once instead of searching again, so an attempt cut short by its time
	// bound is not lost work and a batch with many such rows still ends.
	// Cleared when a batch is handled: at most a batch's records per table.
	refused map[refusedKey]error
}

// refusedKey is a row ClickHouse refused alone: its table and its record.
type refusedKey struct {
	table, topic string
	partition    int
	offset       int64
}

// refuse records that ClickHouse refused the row of table made from record
// rec of the batch, and rejects the record.
func (h *handler) refuse(table string, rec int, err error) {
	if h.refused == nil {
		h.refused = map[refusedKey]error{}
	}
	m := &h.batch[rec]
	h.refused[refusedKey{table, m.Topic, m.Partition, m.Offset}] = err
	h.rejects = append(h.rejects, reject{rec, err})
}

// skipRefused returns the positions in 0..n-1 whose record (rec(i), a batch
// index) an earlier attempt of this batch found refused in table, rejecting
// each such record once, and the positions to insert.
func (h *handler) skipRefused(table string, n int, rec func(int) int) (keep []int, skipped bool) {
	if len(h.refused) == 0 {
		return nil, false
	}
	rejected := map[int]bool{}
	for i := range n {
		r := rec(i)
		m := &h.batch[r]
		err, ok := h.refused[refusedKey{table, m.Topic, m.Partition, m.Offset}]
		if !ok {
			keep = append(keep, i)
			continue
		}
		skipped = true
		if !rejected[r] {
			rejected[r] = true
			h.rejects = append(h.rejects, reject{r, err})
		}
	}
	return keep, skipped
}

// reject is a record of the batch that goes to the dead-letter topic.
type reject struct {
	rec int // batch index
	err error
}

// yieldEvery is how many records the sink decodes between yields to the
// Go scheduler. A batch is a second of traffic handled at once; where the
// sink shares a process with the collector and processors (leadstream dev,
// one-binary deployments), its decoding and column building would hold the
// cores for their 10 ms preemption slices while requests and scoring
// batches queue behind it: yielding lets them run first.
const yieldEvery = 256

// minChunk is the fewest records worth a goroutine of their own.
const minChunk = 256

// parallel calls f over [0, n) split into one chunk per CPU, when n is large
// enough to make that worthwhile, and returns when all are done.
func parallel(n int, f func(lo, hi int)) {
	k := min(runtime.GOMAXPROCS(0), n/minChunk)
	if k <= 1 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	for c := range k {
		lo, hi := c*n/k, (c+1)*n/k
		if c == k-1 {
			f(lo, hi) // the last chunk on this goroutine
			break
		}
		wg.Go(func() { f(lo, hi) })
	}
	wg.Wait()
}

// handle inserts one batch into every table it touches. On error some tables
// may hold part of the batch already; the consumer retries the whole batch
// and ReplacingMergeTree folds the copies, because every row's sort key is
// derived from the record. Records that do not decode, and rows ClickHouse
// refuses for what they hold (warehouse.Refused; found by isolate), go to
// the dead-letter topic and the rest of the batch is stored.
func (h *handler) handle(ctx context.Context, batch []stream.Message) error {
	err := h.handle1(ctx, batch)
	if err == nil {
		clear(h.refused)
	}
	h.batch = nil
	return err
}

func (h *handler) handle1(ctx context.Context, batch []stream.Message) error {
	h.batch = batch
	r := &h.rows
	r.reset()
	h.links.reset()
	h.members.reset()
	h.rejects = h.rejects[:0]
	h.evIdx, h.mqlIdx, h.mqaIdx = h.evIdx[:0], h.mqlIdx[:0], h.mqaIdx[:0]
	for i := range batch {
		m := &batch[i]
		switch m.Topic {
		case h.eventsTopic:
			h.evIdx = append(h.evIdx, i)
		case h.mqlTopic:
			r.mqls = append(r.mqls, event.MQL{})
			if err := decodeMQL(m.Value, &r.mqls[len(r.mqls)-1]); err != nil {
				r.mqls = r.mqls[:len(r.mqls)-1]
				h.rejects = append(h.rejects, reject{i, err})
				continue
			}
			h.mqlIdx = append(h.mqlIdx, i)
		case h.mqaTopic:
			r.mqas = append(r.mqas, event.MQA{})
			if err := decodeMQA(m.Value, &r.mqas[len(r.mqas)-1]); err != nil {
				r.mqas = r.mqas[:len(r.mqas)-1]
				h.rejects = append(h.rejects, reject{i, err})
				continue
			}
			h.mqaIdx = append(h.mqaIdx, i)
		default:
			h.rejects = append(h.rejects, reject{i, fmt.Errorf("unexpected topic %q", m.Topic)})
		}
	}
	if keep, ok := h.skipRefused(warehouse.TableEvents, len(h.evIdx), func(i int) int { return h.evIdx[i] }); ok {
		for j, i := range keep {
			h.evIdx[j] = h.evIdx[i]
		}
		h.evIdx = h.evIdx[:len(keep)]
	}
	n := len(h.evIdx)
	h.errs = slices.Grow(h.errs[:0], n)[:n]
	clear(h.errs) // a refused INSERT may end before every block was decoded
	err := h.insertEvents(ctx, batch, h.evIdx, h.errs, &h.links)
	if err != nil && !warehouse.Refused(err) {
		return err
	}
	for j, derr := range h.errs {
		if derr != nil {
			h.rejects = append(h.rejects, reject{h.evIdx[j], derr})
		}
	}
	if err != nil {
		if err := h.isolateEvents(ctx, batch, err); err != nil {
			return err
		}
	}
	if err := h.insertLinks(ctx); err != nil {
		return err
	}
	if err := h.insertMQLs(ctx); err != nil {
		return err
	}
	if err := h.insertMembers(ctx); err != nil {
		return err
	}
	if err := h.insertMQAs(ctx); err != nil {
		return err
	}
	h.ok()
	// After the inserts, so a ClickHouse failure (the likely one) does not
	// put the same dead letters on the topic once per retry.
	return h.deadLetters(ctx, batch)
}

// deadLetters sends the batch's rejected records to the dead-letter topic.
func (h *handler) deadLetters(ctx context.Context, batch []stream.Message) error {
	if len(h.rejects) == 0 {
		return nil
	}
	dead := make([]stream.Record, len(h.rejects))
	for i, rj := range h.rejects {
		dead[i] = stream.DeadLetter(batch[rj.rec], rj.err.Error())
	}
	if err := h.dlq.ProduceAll(ctx, dead); err != nil {
		return fmt.Errorf("producing %d dead letters: %w", len(dead), err)
	}
	for _, rj := range h.rejects {
		h.w.m.deadLetters.WithLabelValues(batch[rj.rec].Topic).Inc()
		h.w.m.lastDead.WithLabelValues(batch[rj.rec].Topic).SetToCurrentTime()
	}
	h.log.Warn("records sent to dead-letter topic", "count", len(dead), "first_reason", h.rejects[0].err.Error())
	return nil
}

// insertEvents inserts the events-topic records idx of batch into events,
// decoding them block by block on all cores while ClickHouse takes the block
// before. A record that does not decode (or cannot be stored, see
// warehouse.CheckEvent) is left out with its error in errs (parallel to
// idx). links, unless nil, gets the identity links of the others (and
// h.members their account memberships). One INSERT
// touches at most maxMonths months: the records of further months go into
// the next INSERT.
func (h *handler) insertEvents(ctx context.Context, batch []stream.Message, idx []int, errs []error, links *linkSet) error {
	for len(idx) > 0 {
		later, err := h.insertEventsOnce(ctx, batch, idx, errs, links)
		if err != nil {
			return err
		}
		// The records left for later decoded, and their links are in.
		idx, errs, links = later, nil, nil
	}
	return nil
}

// insertEventsOnce is one INSERT of insertEvents; it returns the records
// whose month did not fit in it.
func (h *handler) insertEventsOnce(ctx context.Context, batch []stream.Message, idx []int, errs []error, links *linkSet) ([]int, error) {
	var (
		ins   *eventsInsert
		later []int
	)
	defer func() {
		if ins != nil {
			ins.close()
		}
	}()
	h.months.reset()
	for lo := 0; lo < len(idx); lo += blockRows {
		hi := min(len(idx), lo+blockRows)
		var berrs []error
		if errs != nil {
			berrs = errs[lo:hi]
		}
		evs := h.decode(batch, idx[lo:hi], berrs)
		if links != nil {
			links.add(evs, h.kept)
			h.members.add(evs, h.kept)
		}
		evs, later = h.months.fit(evs, h.kept, later)
		if len(evs) == 0 {
			continue
		}
		if ins == nil {
			var err error
			if ins, err = h.w.beginEvents(ctx); err != nil {
				return nil, err
			}
		}
		if err := ins.add(evs); err != nil {
			return nil, err
		}
	}
	if ins != nil {
		if err := ins.send(); err != nil {
			return nil, err
		}
	}
	return later, nil
}

// decode decodes the events-topic records idx of batch on all cores and
// returns the valid ones in batch order, their batch indices in h.kept; the
// errors go to errs (parallel to idx), or when errs is nil (records that
// decoded before) a record that fails is only left out.
func (h *handler) decode(batch []stream.Message, idx []int, errs []error) []event.Event {
	r := &h.rows
	n := len(idx)
	r.events = slices.Grow(r.events[:0], n)[:n]
	if errs == nil {
		h.errs2 = slices.Grow(h.errs2[:0], n)[:n]
		errs = h.errs2
	}
	parallel(n, func(a, b int) {
		for j := a; j < b; j++ {
			if (j-a)%yieldEvery == yieldEvery-1 {
				runtime.Gosched()
			}
			e := &r.events[j]
			err := event.Unmarshal(batch[idx[j]].Value, e)
			if err == nil {
				err = warehouse.CheckEvent(e)
			}
			errs[j] = err
		}
	})
	kept := 0
	h.kept = h.kept[:0]
	for j := range n {
		if errs[j] == nil {
			r.events[kept] = r.events[j]
			h.kept = append(h.kept, idx[j])
			kept++
		}
	}
	r.events = r.events[:kept]
	return r.events
}
