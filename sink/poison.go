package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
)

// Partitions per INSERT. The events table is partitioned by
// toYYYYMM(event_time) and mql by toYYYYMM(crossed_at); modern ClickHouse
// refuses an INSERT block that touches more than max_partitions_per_insert_block
// (default 100) partitions, and squashes the blocks of one INSERT, so a batch
// with events in 101 months — which anyone holding a write key can send —
// would be refused whole, for ever. So one INSERT touches at most maxMonths
// months (UTC); toYYYYMM uses the server's time zone, where one UTC month
// spans at most two months, so that is at most 100 partitions whatever the
// server's zone.
const maxMonths = 50

// months is the set of months (UTC) an INSERT touches.
type months struct{ set map[int]struct{} }

func (m *months) reset() { clear(m.set) }

// add adds t's month unless the set is full with other months; it reports
// whether t's month is in the set.
func (m *months) add(t time.Time) bool {
	if m.set == nil {
		m.set = map[int]struct{}{}
	}
	t = t.UTC()
	k := t.Year()*100 + int(t.Month())
	if _, ok := m.set[k]; ok {
		return true
	}
	if len(m.set) >= maxMonths {
		return false
	}
	m.set[k] = struct{}{}
	return true
}

// fit keeps the events of evs whose month fits in m, in order, and appends
// the batch indices (recs, parallel to evs) of the others to later.
func (m *months) fit(evs []event.Event, recs []int, later []int) ([]event.Event, []int) {
	kept := 0
	for j := range evs {
		if !m.add(evs[j].EventTime) {
			later = append(later, recs[j])
			continue
		}
		evs[kept] = evs[j]
		kept++
	}
	return evs[:kept], later
}

// Poison rows: ClickHouse refusing an INSERT for what a row holds
// (warehouse.Refused). The rows are bisected: each half is inserted again,
// and the halves refused are split again, down to single rows; a row refused
// alone maxRowTries times goes to the dead-letter topic with ClickHouse's
// reason, and the others are stored. k refused rows among n cost about
// 2·k·log2(n) INSERTs; rows already stored by an attempt fold with the
// copies of the next (ReplacingMergeTree). A transient error ends the search
// and the consumer retries the batch whole.
const maxRowTries = 3

// rowRetryWait is the wait before a row refused alone is tried again,
// doubled at each try. A variable so a test can shorten it.
var rowRetryWait = 100 * time.Millisecond

// isolate searches rows (indices the caller knows), whose INSERT was just
// refused with cause, for the rows refused alone; insert inserts a subset.
func isolate(ctx context.Context, rows []int, cause error, insert func([]int) error, refused func(row int, err error)) error {
	if len(rows) == 1 {
		err := cause
		for try := 1; try < maxRowTries; try++ {
			select {
			case <-ctx.Done():
				return fmt.Errorf("isolating a row clickhouse refuses: %w (last error: %v)", ctx.Err(), err)
			case <-time.After(rowRetryWait << (try - 1)):
			}
			if err = insert(rows); err == nil || !warehouse.Refused(err) {
				return err
			}
		}
		refused(rows[0], err)
		return nil
	}
	mid := len(rows) / 2
	for _, half := range [][]int{rows[:mid], rows[mid:]} {
		err := insert(half)
		if err == nil {
			continue
		}
		if !warehouse.Refused(err) {
			return err
		}
		if err := isolate(ctx, half, err, insert, refused); err != nil {
			return err
		}
	}
	return nil
}

// refusal is the dead-letter reason of a row ClickHouse refused.
func refusal(table string, err error) error {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		err = ex // the exception alone: the INSERT it failed is known
	}
	return fmt.Errorf("clickhouse refused the row of %s: %w", table, err)
}

// isolateEvents stores the decoded events of the batch but those ClickHouse
// refuses, after their INSERT was refused with cause, rejects them, and
// rebuilds the batch's identity links without them.
func (h *handler) isolateEvents(ctx context.Context, batch []stream.Message, cause error) error {
	var valid []int
	for j, i := range h.evIdx {
		if h.errs[j] == nil {
			valid = append(valid, i)
		}
	}
	// The refused INSERT may have ended before it decoded every block:
	// decode the rest now, so a record that does not decode is rejected
	// with its reason (the isolation's inserts only leave such records out).
	derrs := make([]error, len(valid))
	for lo := 0; lo < len(valid); lo += blockRows {
		hi := min(len(valid), lo+blockRows)
		h.decode(batch, valid[lo:hi], derrs[lo:hi])
	}
	kept := valid[:0]
	for j, i := range valid {
		if derrs[j] != nil {
			h.rejects = append(h.rejects, reject{i, derrs[j]})
			continue
		}
		kept = append(kept, i)
	}
	valid = kept
	h.log.Warn("clickhouse refused a batch of events: isolating the rows it refuses", "events", len(valid), "err", cause)
	bad := map[int]bool{}
	err := isolate(ctx, valid, cause,
		func(rows []int) error { return h.insertEvents(ctx, batch, rows, nil, nil) },
		func(row int, err error) {
			bad[row] = true
			h.refuse(warehouse.TableEvents, row, refusal(warehouse.TableEvents, err))
		})
	if err != nil {
		return err
	}
	h.links.reset()
	h.members.reset()
	var stored []int
	for _, i := range valid {
		if !bad[i] {
			stored = append(stored, i)
		}
	}
	for lo := 0; lo < len(stored); lo += blockRows {
		evs := h.decode(batch, stored[lo:min(len(stored), lo+blockRows)], nil)
		h.links.add(evs, h.kept)
		h.members.add(evs, h.kept)
	}
	return nil
}

// insertLinks inserts the batch's identity links; a link ClickHouse refuses
// rejects the record of its event (whose events row may be stored).
func (h *handler) insertLinks(ctx context.Context) error {
	links := h.links.out
	return insertRows(ctx, h, warehouse.TableIdentityLinks, "identity links", links, func(i int) int { return links[i].rec }, h.w.insertLinks)
}

// insertMQLs inserts the batch's MQL records; one ClickHouse refuses is
// rejected.
func (h *handler) insertMQLs(ctx context.Context) error {
	idx := h.mqlIdx
	return insertRows(ctx, h, warehouse.TableMQL, "mql records", h.rows.mqls, func(i int) int { return idx[i] }, h.w.insertMQLs)
}

// insertMembers inserts the batch's account memberships; a row ClickHouse
// refuses rejects the record of its event (whose events row may be stored).
func (h *handler) insertMembers(ctx context.Context) error {
	ms := h.members.out
	return insertRows(ctx, h, warehouse.TableAccountMembers, "account memberships", ms, func(i int) int { return ms[i].rec }, h.w.insertMembers)
}

// insertMQAs inserts the batch's MQA records; one ClickHouse refuses is
// rejected.
func (h *handler) insertMQAs(ctx context.Context) error {
	idx := h.mqaIdx
	return insertRows(ctx, h, warehouse.TableMQA, "mqa records", h.rows.mqas, func(i int) int { return idx[i] }, h.w.insertMQAs)
}

// insertRows inserts rows into table with insert, leaving out those an
// earlier attempt of the batch found refused (rejected again). When
// ClickHouse refuses the INSERT for what the rows hold, they are isolated:
// each row refused alone rejects its record (rec: a row's batch index) and
// the others are stored.
func insertRows[T any](ctx context.Context, h *handler, table, what string, rows []T, rec func(i int) int, insert func(context.Context, []T) error) error {
	if keep, ok := h.skipRefused(table, len(rows), rec); ok {
		recOf := rec
		rows, rec = pick(rows, keep), func(i int) int { return recOf(keep[i]) }
	}
	err := insert(ctx, rows)
	if err == nil || !warehouse.Refused(err) {
		return err
	}
	h.log.Warn("clickhouse refused a batch of "+what+": isolating the rows it refuses", "rows", len(rows), "err", err)
	all := make([]int, len(rows))
	for i := range all {
		all[i] = i
	}
	return isolate(ctx, all, err,
		func(r []int) error { return insert(ctx, pick(rows, r)) },
		func(row int, err error) { h.refuse(table, rec(row), refusal(table, err)) })
}

// pick returns the elements rows of s.
func pick[T any](s []T, rows []int) []T {
	out := make([]T, len(rows))
	for i, r := range rows {
		out[i] = s[r]
	}
	return out
}
