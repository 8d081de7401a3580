package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/leadstream/leadstream/event"
)

// rows is one handler batch after decoding, ready to insert.
type rows struct {
	events []event.Event
	mqls   []event.MQL
}

func (r *rows) reset() {
	r.events, r.mqls = r.events[:0], r.mqls[:0]
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
	return w.insert(ctx, TableIdentityLinks, len(links), linkColumns(links))
}

func (w *writer) insertMQLs(ctx context.Context, ms []event.MQL) error {
	if len(ms) == 0 {
		return nil
	}
	return w.insert(ctx, TableMQL, len(ms), mqlColumns(ms))
}

// column is one column of an insert: its name and its values as a slice of a
// type clickhouse-go appends column-wise without boxing each value.
type column struct {
	name   string
	values any
}

// insertQuery is the INSERT statement for cols. The column list is always
// explicit: for a bare "INSERT INTO t", ClickHouse 18.16 tells clickhouse-go
// of no columns and every row is rejected ("expected 0 arguments").
func (w *writer) insertQuery(table string, cols []column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	return "INSERT INTO " + w.db + "." + table + " (" + strings.Join(names, ", ") + ")"
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

// insert sends n rows in one block.
func (w *writer) insert(ctx context.Context, table string, n int, cols []column) (err error) {
	start := time.Now()
	defer func() { w.observe(table, start, n, err) }()
	batch, err := w.conn.PrepareBatch(ctx, w.insertQuery(table, cols))
	if err != nil {
		return fmt.Errorf("preparing insert into %s.%s: %w", w.db, table, err)
	}
	defer batch.Close()
	if err := appendColumns(batch, table, cols); err != nil {
		return err
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("inserting %s batch of %d rows: %w", table, n, err)
	}
	return nil
}

func appendColumns(batch driver.Batch, table string, cols []column) error {
	for i, c := range cols {
		if err := batch.Column(i).Append(c.values); err != nil {
			return fmt.Errorf("appending column %s of %s batch: %w", c.name, table, err)
		}
	}
	return nil
}

// blockRows is the most rows one block of an events INSERT carries. A
// Kafka batch is one INSERT (ClickHouse squashes its blocks into parts, so
// large batches make few parts), streamed as blocks: ClickHouse works on one
// block while the sink decodes the next, and the column buffers of a block
// are reused by the next instead of growing to the size of the batch.
const blockRows = 8192

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
	batch, err := w.conn.PrepareBatch(ctx, w.insertQuery(TableEvents, w.cols.fill(nil)))
	if err != nil {
		ins.fail(err)
		return nil, fmt.Errorf("preparing insert into %s.%s: %w", w.db, TableEvents, err)
	}
	ins.batch = batch
	return ins, nil
}

func (ins *eventsInsert) fail(err error) {
	if ins.err == nil {
		ins.err = err
		ins.w.observe(TableEvents, ins.start, 0, err)
	}
}

// add sends evs as one or more blocks.
func (ins *eventsInsert) add(evs []event.Event) error {
	for len(evs) > 0 {
		n := min(len(evs), blockRows)
		if err := appendColumns(ins.batch, TableEvents, ins.w.cols.fill(evs[:n])); err != nil {
			ins.fail(err)
			return err
		}
		ins.w.cols.release()
		if err := ins.batch.Flush(); err != nil {
			ins.fail(err)
			return fmt.Errorf("sending a block of %d rows into %s: %w", n, TableEvents, err)
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
		return fmt.Errorf("inserting %s batch of %d rows: %w", TableEvents, ins.rows, err)
	}
	ins.w.observe(TableEvents, ins.start, ins.rows, nil)
	return nil
}

func (ins *eventsInsert) close() { ins.batch.Close() }

// eventCols holds one block of the events table column-wise. Its slices are
// reused from block to block; ingested_at is left to its DEFAULT now(), the
// server's clock.
type eventCols struct {
	str     [eventStrCols][]string
	times   [2][]time.Time
	ms      []uint64
	revenue []decimal.Decimal
	bot     []uint8
	list    []column
}

// The String columns of events, in eventCols.str order.
var eventStrNames = [...]string{"event_id", "type", "anonymous_id", "lead_id", "previous_id", "write_key_id", "campaign",
	"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "url", "path", "referrer", "title", "track",
	"properties", "traits", "currency", "ip", "user_agent", "bot_reason"}

const eventStrCols = len(eventStrNames)

// bytesView is b as a string without copying. The column append copies the
// bytes into its own buffer at once and nothing writes to b meanwhile.
func bytesView(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// fill returns the columns holding evs (names only when evs is nil).
func (c *eventCols) fill(evs []event.Event) []column {
	n := len(evs)
	for k := range c.str {
		c.str[k] = slices.Grow(c.str[k][:0], n)[:n]
	}
	for k := range c.times {
		c.times[k] = slices.Grow(c.times[k][:0], n)[:n]
	}
	c.ms = slices.Grow(c.ms[:0], n)[:n]
	c.revenue = slices.Grow(c.revenue[:0], n)[:n]
	c.bot = slices.Grow(c.bot[:0], n)[:n]
	for i := range evs {
		e := &evs[i]
		for k, v := range [eventStrCols]string{e.ID, string(e.Type), e.AnonymousID, e.LeadID, e.PreviousID, e.WriteKeyID, e.Campaign,
			e.UTMSource, e.UTMMedium, e.UTMCampaign, e.UTMTerm, e.UTMContent, e.URL, e.Path, e.Referrer, e.Title, e.Track,
			bytesView(e.Properties), bytesView(e.Traits), e.Currency, e.IP, e.UserAgent, e.BotReason} {
			c.str[k][i] = v
		}
		c.times[0][i], c.times[1][i] = e.EventTime, e.ReceivedAt
		c.ms[i] = uint64(e.EventTime.UnixMilli())
		c.revenue[i] = revenue(e.Revenue)
		c.bot[i] = 0
		if e.Bot {
			c.bot[i] = 1
		}
	}
	c.list = c.list[:0]
	for k, name := range eventStrNames {
		c.list = append(c.list, column{name, c.str[k]})
	}
	c.list = append(c.list,
		column{"event_time", c.times[0]}, column{"received_at", c.times[1]}, column{"event_time_ms", c.ms},
		column{"revenue", c.revenue}, column{"bot", c.bot})
	return c.list
}

// release drops the block's strings (the columns copied them) so the scratch
// slices, kept for the next block, do not keep the events alive.
func (c *eventCols) release() {
	for k := range c.str {
		clear(c.str[k])
	}
}

// pluck returns one field of every element of src.
func pluck[S, T any](src []S, f func(*S) T) []T {
	out := make([]T, len(src))
	for i := range src {
		out[i] = f(&src[i])
	}
	return out
}

func revenue(f float64) decimal.Decimal {
	if f == 0 {
		return decimal.Decimal{}
	}
	// Round rather than let the driver truncate 0.99995 to 0.9999.
	return decimal.NewFromFloat(f).Round(revenueScale)
}

// link is one identity_links row.
type link struct {
	anonymousID, leadID string
	linkedAt            time.Time
	eventID             string
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

func (ls *linkSet) add(evs []event.Event) {
	if ls.idx == nil {
		ls.idx = map[[2]string]int{}
	}
	add := func(anon, lead string, e *event.Event) {
		if anon == "" || lead == "" {
			return
		}
		k := [2]string{anon, lead}
		if i, ok := ls.idx[k]; ok {
			if e.EventTime.Before(ls.out[i].linkedAt) {
				ls.out[i].linkedAt, ls.out[i].eventID = e.EventTime, e.ID
			}
			return
		}
		ls.idx[k] = len(ls.out)
		ls.out = append(ls.out, link{anonymousID: anon, leadID: lead, linkedAt: e.EventTime, eventID: e.ID})
	}
	for i := range evs {
		e := &evs[i]
		if e.Bot {
			// The processor does not link on bot traffic; neither do analytics.
			continue
		}
		add(e.AnonymousID, e.LeadID, e)
		if e.Type == event.Alias {
			add(e.PreviousID, e.LeadID, e)
		}
	}
}

func linkColumns(ls []link) []column {
	return []column{
		{"anonymous_id", pluck(ls, func(l *link) string { return l.anonymousID })},
		{"lead_id", pluck(ls, func(l *link) string { return l.leadID })},
		{"linked_at", pluck(ls, func(l *link) time.Time { return l.linkedAt })},
		{"event_id", pluck(ls, func(l *link) string { return l.eventID })},
	}
}

func mqlColumns(ms []event.MQL) []column {
	return []column{
		{"mql_id", pluck(ms, func(m *event.MQL) string { return m.MQLID })},
		{"lead_id", pluck(ms, func(m *event.MQL) string { return m.LeadID })},
		{"model", pluck(ms, func(m *event.MQL) string { return m.Model })},
		{"score", pluck(ms, func(m *event.MQL) float64 { return m.Score })},
		{"threshold", pluck(ms, func(m *event.MQL) float64 { return m.Threshold })},
		{"crossed_at", pluck(ms, func(m *event.MQL) time.Time { return m.CrossedAt })},
		{"crossed_at_ms", pluck(ms, func(m *event.MQL) uint64 { return uint64(m.CrossedAt.UnixMilli()) })},
		{"trigger_event_id", pluck(ms, func(m *event.MQL) string { return m.TriggerEventID })},
		// Nested columns are inserted as their parallel arrays.
		{"reasons.rule", pluck(ms, func(m *event.MQL) []string { return pluck(m.Reasons, reasonRule) })},
		{"reasons.points", pluck(ms, func(m *event.MQL) []float64 { return pluck(m.Reasons, reasonPoints) })},
	}
}

func reasonRule(r *event.Reason) string    { return r.Rule }
func reasonPoints(r *event.Reason) float64 { return r.Points }

const revenueScale = 4 // Decimal(18, 4)

// maxRevenue is the first magnitude Decimal(18, 4) cannot hold.
var maxRevenue = math.Pow10(18 - revenueScale)

// DateTime is seconds since 1970 in a UInt32; the driver would silently wrap
// anything outside.
var (
	minDateTime = time.Unix(0, 0)
	maxDateTime = time.Unix(math.MaxUint32, 0)
)

func checkTime(field string, t time.Time) error {
	if t.Before(minDateTime) || t.After(maxDateTime) {
		return fmt.Errorf("%w: %s %s is outside DateTime's range 1970..2106", ErrUnstorable, field, t.Format(time.RFC3339))
	}
	return nil
}

// checkEvent rejects what event.Validate accepts but ClickHouse cannot store.
func checkEvent(e *event.Event) error {
	if math.Abs(e.Revenue) >= maxRevenue {
		return fmt.Errorf("%w: revenue %g does not fit Decimal(18, 4)", ErrUnstorable, e.Revenue)
	}
	return errors.Join(checkTime("event_time", e.EventTime), checkTime("received_at", e.ReceivedAt))
}

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
	return checkTime("crossed_at", m.CrossedAt)
}
