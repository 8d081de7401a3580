package warehouse

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/shopspring/decimal"

	"github.com/leadstream/leadstream/event"
)

// EventColumn is one column of the events table that holds an event field.
type EventColumn struct {
	Name  string       // column name
	Type  string       // its ClickHouse type
	Field *event.Field // the field of event.Fields it holds
	// Millis: the column holds Field's time as Unix milliseconds, which
	// DateTime (seconds) drops; History reads the time from it.
	Millis bool
}

// millisColumns are the time fields whose milliseconds events also keeps,
// in a "<name>_ms UInt64" column beside the DateTime one.
var millisColumns = map[string]bool{"event_time": true, "original_timestamp": true}

// columnType is the ClickHouse type of each kind of event field.
var columnType = [...]string{
	event.String: "String",
	event.Time:   "DateTime",
	event.Object: "String",
	event.Number: "Decimal(18, 4)",
	event.Bool:   "UInt8",
}

// EventColumns are the columns of events that hold event fields, in the
// order of event.Fields; the table also has ingested_at, the server's clock
// at insert (DEFAULT now()). A test holds the schema to this list.
var EventColumns = func() []EventColumn {
	var out []EventColumn
	for i := range event.Fields {
		f := &event.Fields[i]
		out = append(out, EventColumn{Name: f.Name, Type: columnType[f.Kind], Field: f})
		if millisColumns[f.Name] {
			out = append(out, EventColumn{Name: f.Name + "_ms", Type: "UInt64", Field: f, Millis: true})
		}
	}
	return out
}()

// ErrUnstorable means a record holds a value ClickHouse cannot store (a time
// outside DateTime's range, revenue beyond Decimal(18,4)); the sink sends
// such records to the dead-letter topic.
var ErrUnstorable = errors.New("value cannot be stored in clickhouse")

const revenueScale = 4 // Decimal(18, 4)

// maxRevenue is the first magnitude Decimal(18, 4) cannot hold.
var maxRevenue = math.Pow10(18 - revenueScale)

// DateTime is seconds since 1970 in a UInt32; the driver would silently wrap
// anything outside.
var (
	minDateTime = time.Unix(0, 0)
	maxDateTime = time.Unix(math.MaxUint32, 0)
)

// DateTime is t as the events table stores a time field: an optional time
// (event.Field.Always unset) that is zero is stored as 0, 1970-01-01 00:00:00,
// which History reads back as zero.
func DateTime(t time.Time) time.Time {
	if t.IsZero() {
		return minDateTime
	}
	return t
}

// Millis is t as a "<name>_ms" column stores it: Unix milliseconds, 0 for zero.
func Millis(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixMilli())
}

// CheckTime returns ErrUnstorable when t is outside DateTime's range.
func CheckTime(field string, t time.Time) error {
	if t.Before(minDateTime) || t.After(maxDateTime) {
		return fmt.Errorf("%w: %s %s is outside DateTime's range 1970..2106", ErrUnstorable, field, t.Format(time.RFC3339))
	}
	return nil
}

// CheckEvent rejects what event.Validate accepts but ClickHouse cannot store.
func CheckEvent(e *event.Event) error {
	var errs []error
	for i := range event.Fields {
		f := &event.Fields[i]
		switch f.Kind {
		case event.Time:
			if t := *f.TimeOf(e); f.Always || !t.IsZero() {
				errs = append(errs, CheckTime(f.Name, t))
			}
		case event.Number:
			if v := *f.Num(e); math.Abs(v) >= maxRevenue {
				errs = append(errs, fmt.Errorf("%w: %s %g does not fit Decimal(18, 4)", ErrUnstorable, f.Name, v))
			}
		}
	}
	return errors.Join(errs...)
}

// Decimal is f as a Decimal(18, 4) value, rounded rather than truncated by
// the driver (0.99995 is 1.0000, not 0.9999).
func Decimal(f float64) decimal.Decimal {
	if f == 0 {
		return decimal.Decimal{}
	}
	return decimal.NewFromFloat(f).Round(revenueScale)
}
