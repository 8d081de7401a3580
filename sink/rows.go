package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

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
}

// write inserts the batch into every table it touches. On error some tables
// may hold the batch already; a retry inserts it again and ReplacingMergeTree
// folds the copies, because every row's sort key is derived from the record.
func (w *writer) write(ctx context.Context, r *rows) error {
	if len(r.events) > 0 {
		if err := w.insert(ctx, TableEvents, len(r.events), eventColumns(r.events)); err != nil {
			return err
		}
		if links := identityLinks(r.events); len(links) > 0 {
			if err := w.insert(ctx, TableIdentityLinks, len(links), linkColumns(links)); err != nil {
				return err
			}
		}
	}
	if len(r.mqls) > 0 {
		if err := w.insert(ctx, TableMQL, len(r.mqls), mqlColumns(r.mqls)); err != nil {
			return err
		}
	}
	return nil
}

// column is one column of an insert: its name and its values as a slice of a
// type clickhouse-go appends column-wise without boxing each value.
type column struct {
	name   string
	values any
}

// insert sends n rows in one block. The column list is always explicit: for
// a bare "INSERT INTO t", ClickHouse 18.16 tells clickhouse-go of no columns
// and every row is rejected ("expected 0 arguments").
func (w *writer) insert(ctx context.Context, table string, n int, cols []column) (err error) {
	start := time.Now()
	defer func() {
		w.m.insertTime.WithLabelValues(table).Observe(time.Since(start).Seconds())
		if err != nil {
			w.m.insertErrors.WithLabelValues(table).Inc()
			return
		}
		w.m.rows.WithLabelValues(table).Add(float64(n))
	}()
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	q := "INSERT INTO " + w.db + "." + table + " (" + strings.Join(names, ", ") + ")"
	batch, err := w.conn.PrepareBatch(ctx, q)
	if err != nil {
		return fmt.Errorf("preparing insert into %s.%s: %w", w.db, table, err)
	}
	defer batch.Close()
	for i, c := range cols {
		if err := batch.Column(i).Append(c.values); err != nil {
			return fmt.Errorf("appending column %s of %s batch: %w", c.name, table, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("inserting %s batch of %d rows: %w", table, n, err)
	}
	return nil
}

// pluck returns one field of every element of src.
func pluck[S, T any](src []S, f func(*S) T) []T {
	out := make([]T, len(src))
	for i := range src {
		out[i] = f(&src[i])
	}
	return out
}

// eventColumns leaves ingested_at to its DEFAULT now(), the server's clock.
func eventColumns(evs []event.Event) []column {
	str := func(f func(*event.Event) string) []string { return pluck(evs, f) }
	return []column{
		{"event_id", str(func(e *event.Event) string { return e.ID })},
		{"type", str(func(e *event.Event) string { return string(e.Type) })},
		{"event_time", pluck(evs, func(e *event.Event) time.Time { return e.EventTime })},
		{"event_time_ms", pluck(evs, func(e *event.Event) uint64 { return uint64(e.EventTime.UnixMilli()) })},
		{"received_at", pluck(evs, func(e *event.Event) time.Time { return e.ReceivedAt })},
		{"anonymous_id", str(func(e *event.Event) string { return e.AnonymousID })},
		{"lead_id", str(func(e *event.Event) string { return e.LeadID })},
		{"previous_id", str(func(e *event.Event) string { return e.PreviousID })},
		{"write_key_id", str(func(e *event.Event) string { return e.WriteKeyID })},
		{"campaign", str(func(e *event.Event) string { return e.Campaign })},
		{"utm_source", str(func(e *event.Event) string { return e.UTMSource })},
		{"utm_medium", str(func(e *event.Event) string { return e.UTMMedium })},
		{"utm_campaign", str(func(e *event.Event) string { return e.UTMCampaign })},
		{"utm_term", str(func(e *event.Event) string { return e.UTMTerm })},
		{"utm_content", str(func(e *event.Event) string { return e.UTMContent })},
		{"url", str(func(e *event.Event) string { return e.URL })},
		{"path", str(func(e *event.Event) string { return e.Path })},
		{"referrer", str(func(e *event.Event) string { return e.Referrer })},
		{"title", str(func(e *event.Event) string { return e.Title })},
		{"track", str(func(e *event.Event) string { return e.Track })},
		{"properties", pluck(evs, func(e *event.Event) json.RawMessage { return e.Properties })},
		{"traits", pluck(evs, func(e *event.Event) json.RawMessage { return e.Traits })},
		{"revenue", pluck(evs, func(e *event.Event) decimal.Decimal { return revenue(e.Revenue) })},
		{"currency", str(func(e *event.Event) string { return e.Currency })},
		{"ip", str(func(e *event.Event) string { return e.IP })},
		{"user_agent", str(func(e *event.Event) string { return e.UserAgent })},
		{"bot", pluck(evs, func(e *event.Event) uint8 {
			if e.Bot {
				return 1
			}
			return 0
		})},
		{"bot_reason", str(func(e *event.Event) string { return e.BotReason })},
	}
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

// identityLinks returns one row per (anonymous id, lead id) pair the events
// link, keeping the earliest. Once a visitor is known every later event of
// theirs carries both ids, so without folding most events would add a row
// that merges throw away anyway.
func identityLinks(evs []event.Event) []link {
	var out []link
	idx := map[[2]string]int{}
	add := func(anon, lead string, e *event.Event) {
		if anon == "" || lead == "" {
			return
		}
		k := [2]string{anon, lead}
		if i, ok := idx[k]; ok {
			if e.EventTime.Before(out[i].linkedAt) {
				out[i].linkedAt, out[i].eventID = e.EventTime, e.ID
			}
			return
		}
		idx[k] = len(out)
		out = append(out, link{anonymousID: anon, leadID: lead, linkedAt: e.EventTime, eventID: e.ID})
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
	return out
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
