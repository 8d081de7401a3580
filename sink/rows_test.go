package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

func TestWriteRoundTripsAndDeduplicates(t *testing.T) {
	conn, cfg := testDB(t)
	ctx := context.Background()
	if err := warehouse.Migrate(ctx, conn, cfg.Database); err != nil {
		t.Fatal(err)
	}
	const n = 1000
	r := &rows{events: testEvents(n), mqls: testMQLs()}
	w := writer{conn: conn, db: cfg.Database, m: newMetrics(nil)}
	// A retried batch is inserted again whole.
	for range 2 {
		if err := w.write(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	db := cfg.Database
	if got := warehousetest.Count(t, conn, "SELECT count() FROM "+db+".events"); got != 2*n {
		t.Errorf("events before merge = %d, want %d (both copies)", got, 2*n)
	}
	for table, want := range map[string]uint64{"events": n, "mql": 2, "identity_links": uint64(len(identityLinks(r.events)))} {
		if got := warehousetest.Count(t, conn, "SELECT count() FROM "+db+"."+table+" FINAL"); got != want {
			t.Errorf("%s FINAL count = %d, want %d", table, got, want)
		}
	}
	// ingested_at is left to its DEFAULT now() on the server.
	if got := warehousetest.Count(t, conn, "SELECT count() FROM "+db+".events WHERE ingested_at < now() - 3600"); got != 0 {
		t.Errorf("%d rows without a fresh ingested_at", got)
	}
	stored := storedEvents(t, conn, db)
	for _, e := range r.events {
		if got := stored[e.ID]; !reflect.DeepEqual(got, asStored(e)) {
			t.Fatalf("event %s round trip:\n got %+v\nwant %+v", e.ID, got, asStored(e))
		}
	}
}

func TestIdentityLinks(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(1_700_000_000+int64(s), 0).UTC() }
	evs := []event.Event{
		{ID: "1", Type: event.PageView, AnonymousID: "a1", EventTime: at(5)},                                      // anonymous only: no link
		{ID: "2", Type: event.Identify, AnonymousID: "a1", LeadID: "L1", EventTime: at(9)},                        // link
		{ID: "3", Type: event.PageView, AnonymousID: "a1", LeadID: "L1", EventTime: at(3)},                        // same pair, earlier: wins
		{ID: "4", Type: event.Alias, PreviousID: "old", LeadID: "L1", EventTime: at(7)},                           // alias: previous -> lead
		{ID: "5", Type: event.Alias, AnonymousID: "a2", PreviousID: "old2", LeadID: "L2", EventTime: at(8)},       // both ids and alias: two links
		{ID: "6", Type: event.Alias, PreviousID: "old3", AnonymousID: "a3", EventTime: at(8)},                     // alias without lead: nothing
		{ID: "7", Type: event.FormSubmit, LeadID: "L3", EventTime: at(1), Properties: json.RawMessage(`{"x":1}`)}, // lead only: no link
		{ID: "8", Type: event.Identify, AnonymousID: "a9", LeadID: "L9", EventTime: at(2), Bot: true},             // bot traffic: no link
	}
	want := []link{
		{anonymousID: "a1", leadID: "L1", linkedAt: at(3), eventID: "3"},
		{anonymousID: "old", leadID: "L1", linkedAt: at(7), eventID: "4"},
		{anonymousID: "a2", leadID: "L2", linkedAt: at(8), eventID: "5"},
		{anonymousID: "old2", leadID: "L2", linkedAt: at(8), eventID: "5"},
	}
	if got := identityLinks(evs); !reflect.DeepEqual(got, want) {
		t.Errorf("identityLinks:\n got %+v\nwant %+v", got, want)
	}
}

func TestDecodeMQL(t *testing.T) {
	f := func(in string, wantErr error) {
		t.Helper()
		var m event.MQL
		err := decodeMQL([]byte(in), &m)
		if (wantErr == nil) != (err == nil) || (wantErr != nil && wantErr != errAny && !errors.Is(err, wantErr)) {
			t.Errorf("decodeMQL(%s) = %v, want %v", in, err, wantErr)
		}
	}
	f(`{"mql_id":"m","lead_id":"l","model":"d","crossed_at":"2025-01-01T00:00:00Z","reasons":[{"rule":"r","points":1}]}`, nil)
	f(`{"mql_id":"m","lead_id":"l","model":"d","crossed_at":"2025-01-01T00:00:00Z","new_field":1}`, nil)
	f(`{"lead_id":"l","model":"d","crossed_at":"2025-01-01T00:00:00Z"}`, ErrInvalidMQL)
	f(`{"mql_id":"m","model":"d","crossed_at":"2025-01-01T00:00:00Z"}`, ErrInvalidMQL)
	f(`{"mql_id":"m","lead_id":"l","crossed_at":"2025-01-01T00:00:00Z"}`, ErrInvalidMQL)
	f(`{"mql_id":"m","lead_id":"l","model":"d"}`, warehouse.ErrUnstorable) // zero time is before 1970
	f(`{"mql_id":"m","lead_id":"l","model":"d","crossed_at":"2025-01-01T00:00:00Z","score":"high"}`, errAny)
	f(`not json`, errAny)
}

// errAny tells a case list that any error will do.
var errAny = errors.New("any error")

func FuzzDecodeMQL(f *testing.F) {
	for _, m := range testMQLs() {
		b, _ := json.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte(`{"mql_id":"m","lead_id":"l","model":"d","crossed_at":"1900-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m event.MQL
		if err := decodeMQL(b, &m); err != nil {
			return
		}
		if m.MQLID == "" || m.LeadID == "" || m.Model == "" || warehouse.CheckTime("crossed_at", m.CrossedAt) != nil {
			t.Fatalf("accepted unstorable mql %+v", m)
		}
	})
}

func BenchmarkInsertEvents(b *testing.B) {
	conn, cfg := testDB(b)
	ctx := context.Background()
	if err := warehouse.Migrate(ctx, conn, cfg.Database); err != nil {
		b.Fatal(err)
	}
	for _, batch := range []int{10_000, 50_000, 100_000} {
		b.Run(fmt.Sprintf("rows=%d", batch), func(b *testing.B) {
			r := &rows{events: testEvents(batch)}
			var size int64
			for i := range r.events {
				j, _ := event.Marshal(&r.events[i])
				size += int64(len(j))
			}
			w := writer{conn: conn, db: cfg.Database, m: newMetrics(nil)}
			b.ReportAllocs()
			b.SetBytes(size)
			n := 0
			for b.Loop() {
				if err := w.write(ctx, r); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(n*batch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
