package warehouse

import (
	"errors"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
)

func TestCheckEvent(t *testing.T) {
	ok := event.Event{ID: "e1", Type: event.PageView, AnonymousID: "a", Revenue: 12.5,
		EventTime: time.Date(2025, 3, 14, 9, 26, 53, 589_000_000, time.UTC), ReceivedAt: time.Date(2025, 3, 14, 9, 26, 53, 739_000_000, time.UTC)}
	f := func(mutate func(*event.Event), wantErr bool) {
		t.Helper()
		e := ok
		mutate(&e)
		if err := CheckEvent(&e); (err != nil) != wantErr || (err != nil && !errors.Is(err, ErrUnstorable)) {
			t.Errorf("CheckEvent(%+v) = %v, want error: %v", e, err, wantErr)
		}
	}
	f(func(e *event.Event) {}, false)
	f(func(e *event.Event) { e.Revenue = 99_999_999_999_999.99 }, false)
	f(func(e *event.Event) { e.Revenue = -1e14 }, true)
	f(func(e *event.Event) { e.Revenue = 1e300 }, true)
	f(func(e *event.Event) { e.EventTime = time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC) }, true)
	f(func(e *event.Event) { e.EventTime = time.Unix(0, 0) }, false)
	f(func(e *event.Event) { e.ReceivedAt = time.Date(2106, 2, 8, 0, 0, 0, 0, time.UTC) }, true)
	// original_timestamp is optional: zero is stored as 0; set, it must fit.
	f(func(e *event.Event) { e.OriginalTimestamp = time.Time{} }, false)
	f(func(e *event.Event) { e.OriginalTimestamp = time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC) }, true)
	f(func(e *event.Event) { e.OriginalTimestamp = e.EventTime.Add(time.Hour) }, false)
}

func TestOptionalTimeColumns(t *testing.T) {
	at := time.Date(2025, 3, 14, 9, 26, 53, 589_000_000, time.UTC)
	if got := DateTime(time.Time{}); got.Unix() != 0 {
		t.Errorf("DateTime(zero) = %v, want 1970-01-01", got)
	}
	if got := DateTime(at); !got.Equal(at) {
		t.Errorf("DateTime(%v) = %v", at, got)
	}
	if got := Millis(time.Time{}); got != 0 {
		t.Errorf("Millis(zero) = %d, want 0", got)
	}
	if got := Millis(at); got != uint64(at.UnixMilli()) {
		t.Errorf("Millis(%v) = %d", at, got)
	}
}
