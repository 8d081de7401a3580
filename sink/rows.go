package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"
	"unsafe"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/warehouse"
)

// rows is one handler batch after decoding, ready to insert.
type rows struct {
	events []event.Event
	mqls   []event.MQL
	mqas   []event.MQA
}

func (r *rows) reset() {
	r.events, r.mqls, r.mqas = r.events[:0], r.mqls[:0], r.mqas[:0]
}

// writer inserts decoded batches into one database.
type writer struct {
	conn driver.Conn
	db   string
	m    *metrics
	cols eventCols // scratch for the events blocks, reused
}

func (w *writer) insertLinks(ctx context.Context, links []link) error {
	if len(links) == 0 {
		return nil
	}
	return w.insert(ctx, warehouse.TableIdentityLinks, len(links), linkColumns(links))
}

// insertMQLs inserts ms, in as many INSERTs as it takes for each to touch
// at most maxMonths months (the table is partitioned by month).
func (w *writer) insertMQLs(ctx context.Context, ms []event.MQL) error {
	return byMonths(ms, func(m *event.MQL) time.Time { return m.CrossedAt }, func(now []event.MQL) error {
		return w.insert(ctx, warehouse.TableMQL, len(now), mqlColumns(now))
	})
}

// byMonths calls insert with the items of s, in order, in as few calls as it
// takes for each to hold items of at most maxMonths months (at, UTC): the
// tables are partitioned by month, and modern ClickHouse refuses an INSERT
// touching more than 100 partitions (see maxMonths).
func byMonths[T any](s []T, at func(*T) time.Time, insert func([]T) error) error {
	var ms months
	for len(s) > 0 {
		ms.reset()
		var now, later []T
		for i := range s {
			if ms.add(at(&s[i])) {
				now = append(now, s[i])
			} else {
				later = append(later, s[i])
			}
		}
		if err := insert(now); err != nil {
			return err
		}
		s = later
	}
	return nil
}

// observe records one INSERT's outcome in the metrics.
func (w *writer) observe(table string, start time.Time, rows int, err error) {
	w.m.insertTime.WithLabelValues(table).Observe(time.Since(start).Seconds())
	if err != nil {
		w.m.insertErrors.WithLabelValues(table).Inc()
		return
	}
	w.m.rows.WithLabelValues(table).Add(float64(rows))
}

// insert sends n rows in one INSERT and records it in the metrics.
func (w *writer) insert(ctx context.Context, table string, n int, cols []warehouse.Column) error {
	start := time.Now()
	err := warehouse.Insert(ctx, w.conn, w.db, table, n, cols)
	w.observe(table, start, n, err)
	return err
}

// blockRows is the most rows one block of an events INSERT carries. A
// Kafka batch is one INSERT (ClickHouse squashes its blocks into parts, so
// large batches make few parts), streamed as blocks: ClickHouse works on one
// block while the sink decodes the next, and the column buffers of a block
// are reused by the next instead of growing to the size of the batch.
// Every INSERT's columns start empty (clickhouse-go), so they grow by
// doubling up to one block: at 8,192 rows that growth was the largest
// allocation of a one-process pipeline at 10k events/s (21 MB/s); at 2,048
// it is a quarter of it, and the sink alone inserts as fast (81.8k and
// 83.3k rows/s in one quick harness run).
const blockRows = 2048

// eventsInsert is one INSERT INTO events in progress.
type eventsInsert struct {
	w     *writer
	batch driver.Batch
	start time.Time
	rows  int
	err   error
}

func (w *writer) beginEvents(ctx context.Context) (*eventsInsert, error) {
	ins := &eventsInsert{w: w, start: time.Now()}
	batch, err := w.conn.PrepareBatch(ctx, warehouse.InsertQuery(w.db, warehouse.TableEvents, w.cols.fill(nil)))
	if err != nil {
		ins.fail(err)
		return nil, fmt.Errorf("preparing insert into %s.%s: %w", w.db, warehouse.TableEvents, err)
	}
	ins.batch = batch
	return ins, nil
}

func (ins *eventsInsert) fail(err error) {
	if ins.err == nil {
		ins.err = err
		ins.w.observe(warehouse.TableEvents, ins.start, 0, err)
	}
}

// add sends evs as one or more blocks.
func (ins *eventsInsert) add(evs []event.Event) error {
	for len(evs) > 0 {
		n := min(len(evs), blockRows)
		if err := warehouse.AppendColumns(ins.batch, warehouse.TableEvents, ins.w.cols.fill(evs[:n])); err != nil {
			ins.fail(err)
			return err
		}
		ins.w.cols.release()
		if err := ins.batch.Flush(); err != nil {
			ins.fail(err)
			return fmt.Errorf("sending a block of %d rows into %s: %w", n, warehouse.TableEvents, err)
		}
		ins.rows += n
		evs = evs[n:]
	}
	return nil
}

// send ends the INSERT: its rows are stored when send returns nil.
func (ins *eventsInsert) send() error {
	if err := ins.batch.Send(); err != nil {
		ins.fail(err)
		return fmt.Errorf("inserting %s batch of %d rows: %w", warehouse.TableEvents, ins.rows, err)
	}
	ins.w.observe(warehouse.TableEvents, ins.start, ins.rows, nil)
	return nil
}

func (ins *eventsInsert) close() { ins.batch.Close() }

// eventCols holds one block of the events table column-wise, one buffer
// per warehouse.EventColumns entry. Its slices are reused from block to
// block; ingested_at is left to its DEFAULT now(), the server's clock.
type eventCols struct {
	bufs []colBuf
	list []warehouse.Column
}

// colBuf is the values of one column; only the slice of its type is used.
type colBuf struct {
	str   []string
	times []time.Time
	ms    []uint64
	dec   []decimal.Decimal
	u8    []uint8
}

// bytesView is b as a string without copying. The column append copies the
// bytes into its own buffer at once and nothing writes to b meanwhile.
func bytesView(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// fill returns the columns holding evs (names only when evs is nil).
func (c *eventCols) fill(evs []event.Event) []warehouse.Column {
	n := len(evs)
	if c.bufs == nil {
		c.bufs = make([]colBuf, len(warehouse.EventColumns))
	}
	c.list = c.list[:0]
	for k, col := range warehouse.EventColumns {
		b, f := &c.bufs[k], col.Field
		var values any
		switch {
		case col.Millis:
			b.ms = slices.Grow(b.ms[:0], n)[:n]
			for i := range evs {
				b.ms[i] = warehouse.Millis(*f.TimeOf(&evs[i]))
			}
			values = b.ms
		case f.Kind == event.Time:
			b.times = slices.Grow(b.times[:0], n)[:n]
			for i := range evs {
				b.times[i] = warehouse.DateTime(*f.TimeOf(&evs[i]))
			}
			values = b.times
		case f.Kind == event.Number:
			b.dec = slices.Grow(b.dec[:0], n)[:n]
			for i := range evs {
				b.dec[i] = warehouse.Decimal(*f.Num(&evs[i]))
			}
			values = b.dec
		case f.Kind == event.Bool:
			b.u8 = slices.Grow(b.u8[:0], n)[:n]
			for i := range evs {
				b.u8[i] = 0
				if *f.Flag(&evs[i]) {
					b.u8[i] = 1
				}
			}
			values = b.u8
		case f.Kind == event.Object:
			b.str = slices.Grow(b.str[:0], n)[:n]
			for i := range evs {
				b.str[i] = bytesView(*f.Raw(&evs[i]))
			}
			values = b.str
		default:
			b.str = slices.Grow(b.str[:0], n)[:n]
			for i := range evs {
				b.str[i] = *f.Str(&evs[i])
			}
			values = b.str
		}
		c.list = append(c.list, warehouse.Column{Name: col.Name, Values: values})
	}
	return c.list
}

// release drops the block's strings (the columns copied them) so the scratch
// slices, kept for the next block, do not keep the events alive.
func (c *eventCols) release() {
	for k := range c.bufs {
		clear(c.bufs[k].str)
	}
}

// link is one identity_links row.
type link struct {
	anonymousID, leadID string
	linkedAt            time.Time
	eventID             string
	rec                 int // batch index of the record of eventID
}

// linkSet folds the identity links of a batch, block by block: one row per
// (anonymous id, lead id) pair the events link, keeping the earliest. Once a
// visitor is known every later event of theirs carries both ids, so without
// folding most events would add a row that merges throw away anyway.
type linkSet struct {
	out []link
	idx map[[2]string]int
}

func (ls *linkSet) reset() {
	clear(ls.idx)
	clear(ls.out)
	ls.out = ls.out[:0]
}

// add adds the links of evs; recs, when not nil, holds the batch index of
// each event's record (else link.rec is 0).
func (ls *linkSet) add(evs []event.Event, recs []int) {
	if ls.idx == nil {
		ls.idx = map[[2]string]int{}
	}
	add := func(anon, lead string, e *event.Event, rec int) {
		if anon == "" || lead == "" {
			return
		}
		k := [2]string{anon, lead}
		if i, ok := ls.idx[k]; ok {
			if e.EventTime.Before(ls.out[i].linkedAt) {
				ls.out[i].linkedAt, ls.out[i].eventID, ls.out[i].rec = e.EventTime, e.ID, rec
			}
			return
		}
		ls.idx[k] = len(ls.out)
		ls.out = append(ls.out, link{anonymousID: anon, leadID: lead, linkedAt: e.EventTime, eventID: e.ID, rec: rec})
	}
	for i := range evs {
		e := &evs[i]
		if e.Bot {
			// The processor does not link on bot traffic; neither do analytics.
			continue
		}
		rec := 0
		if recs != nil {
			rec = recs[i]
		}
		add(e.AnonymousID, e.LeadID, e, rec)
		if e.Type == event.Alias {
			add(e.PreviousID, e.LeadID, e, rec)
		}
	}
}

func linkColumns(ls []link) []warehouse.Column {
	return []warehouse.Column{
		{Name: "anonymous_id", Values: warehouse.Pluck(ls, func(l *link) string { return l.anonymousID })},
		{Name: "lead_id", Values: warehouse.Pluck(ls, func(l *link) string { return l.leadID })},
		{Name: "linked_at", Values: warehouse.Pluck(ls, func(l *link) time.Time { return l.linkedAt })},
		{Name: "event_id", Values: warehouse.Pluck(ls, func(l *link) string { return l.eventID })},
	}
}

func mqlColumns(ms []event.MQL) []warehouse.Column {
	return []warehouse.Column{
		{Name: "mql_id", Values: warehouse.Pluck(ms, func(m *event.MQL) string { return m.MQLID })},
		{Name: "lead_id", Values: warehouse.Pluck(ms, func(m *event.MQL) string { return m.LeadID })},
		{Name: "model", Values: warehouse.Pluck(ms, func(m *event.MQL) string { return m.Model })},
		{Name: "score", Values: warehouse.Pluck(ms, func(m *event.MQL) float64 { return m.Score })},
		{Name: "threshold", Values: warehouse.Pluck(ms, func(m *event.MQL) float64 { return m.Threshold })},
		{Name: "crossed_at", Values: warehouse.Pluck(ms, func(m *event.MQL) time.Time { return m.CrossedAt })},
		{Name: "crossed_at_ms", Values: warehouse.Pluck(ms, func(m *event.MQL) uint64 { return uint64(m.CrossedAt.UnixMilli()) })},
		{Name: "trigger_event_id", Values: warehouse.Pluck(ms, func(m *event.MQL) string { return m.TriggerEventID })},
		// Nested columns are inserted as their parallel arrays.
		{Name: "reasons.rule", Values: warehouse.Pluck(ms, func(m *event.MQL) []string { return warehouse.Pluck(m.Reasons, reasonRule) })},
		{Name: "reasons.points", Values: warehouse.Pluck(ms, func(m *event.MQL) []float64 { return warehouse.Pluck(m.Reasons, reasonPoints) })},
	}
}

func reasonRule(r *event.Reason) string    { return r.Rule }
func reasonPoints(r *event.Reason) float64 { return r.Points }

// decodeMQL decodes and checks one record of the mql topic.
func decodeMQL(b []byte, m *event.MQL) error {
	*m = event.MQL{}
	if err := json.Unmarshal(b, m); err != nil {
		return fmt.Errorf("decoding mql: %w", err)
	}
	switch {
	case m.MQLID == "":
		return fmt.Errorf("%w: mql_id is required", ErrInvalidMQL)
	case m.LeadID == "":
		return fmt.Errorf("%w: lead_id is required", ErrInvalidMQL)
	case m.Model == "":
		return fmt.Errorf("%w: model is required", ErrInvalidMQL)
	}
	return warehouse.CheckTime("crossed_at", m.CrossedAt)
}
