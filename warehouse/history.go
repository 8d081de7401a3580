package warehouse

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/leadstream/leadstream/event"
)

// historyColumns are the columns History reads: one per event field, the
// millisecond column for a time that has one.
var historyColumns = func() []EventColumn {
	var out []EventColumn
	for _, c := range EventColumns {
		if c.Millis {
			out[len(out)-1] = c // the DateTime column of the same field precedes it
			continue
		}
		out = append(out, c)
	}
	return out
}()

// History streams every stored event that can score (bot flag unset) to fn,
// deduplicated (FINAL) and in event-time order: the input of a rescore.
// fn must not keep e, which is reused.
func History(ctx context.Context, conn driver.Conn, database string, fn func(e *event.Event) error) error {
	if err := CheckDatabase(database); err != nil {
		return err
	}
	names := make([]string, len(historyColumns))
	for i, c := range historyColumns {
		names[i] = c.Name
	}
	// Sorted outside the FINAL: over a Distributed table ClickHouse 18.16
	// refuses FINAL and ORDER BY in one query when the sort key has an
	// expression (toDate(event_time)).
	cols := strings.Join(names, ", ")
	rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT %s FROM (
SELECT %s
FROM %s.events FINAL
WHERE bot = 0)
ORDER BY event_time_ms, event_id`, cols, cols, database))
	if err != nil {
		return fmt.Errorf("reading event history: %w", err)
	}
	defer rows.Close()
	var (
		e    event.Event
		dest = make([]any, len(historyColumns))
		strs = make([]string, len(historyColumns))
		ms   = make([]uint64, len(historyColumns))
		ts   = make([]time.Time, len(historyColumns))
		decs = make([]decimal.Decimal, len(historyColumns))
		u8s  = make([]uint8, len(historyColumns))
	)
	for i, c := range historyColumns {
		switch {
		case c.Millis:
			dest[i] = &ms[i]
		case c.Field.Kind == event.Time:
			dest[i] = &ts[i]
		case c.Field.Kind == event.Number:
			dest[i] = &decs[i]
		case c.Field.Kind == event.Bool:
			dest[i] = &u8s[i]
		default: // String, Object
			dest[i] = &strs[i]
		}
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("reading event history: %w", err)
		}
		e = event.Event{}
		for i, c := range historyColumns {
			f := c.Field
			switch {
			case c.Millis:
				if ms[i] != 0 || f.Always { // 0: an optional time that was zero (DateTime, Millis)
					*f.TimeOf(&e) = time.UnixMilli(int64(ms[i])).UTC()
				}
			case f.Kind == event.Time:
				if ts[i].Unix() != 0 || f.Always {
					*f.TimeOf(&e) = ts[i].UTC()
				}
			case f.Kind == event.Number:
				*f.Num(&e) = decs[i].InexactFloat64()
			case f.Kind == event.Bool:
				*f.Flag(&e) = u8s[i] != 0
			case f.Kind == event.Object:
				if strs[i] != "" {
					*f.Raw(&e) = []byte(strs[i])
				}
			default:
				*f.Str(&e) = strs[i]
			}
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading event history: %w", err)
	}
	return nil
}
