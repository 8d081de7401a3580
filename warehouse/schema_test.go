package warehouse_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"

	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

func TestMigrateIsIdempotent(t *testing.T) {
	conn, cfg := warehousetest.Open(t, "warehousetest")
	ctx := context.Background()
	for i := range 2 {
		if err := warehouse.Migrate(ctx, conn, cfg.Database); err != nil {
			t.Fatalf("migrate #%d: %v", i+1, err)
		}
	}
	if v := warehousetest.Count(t, conn, "SELECT toUInt64(max(version)) FROM "+cfg.Database+".schema_migrations"); v != uint64(warehouse.LatestVersion()) {
		t.Errorf("schema version = %d, want %d", v, warehouse.LatestVersion())
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+cfg.Database+".schema_migrations FINAL"); n != uint64(warehouse.NumVersions()) {
		t.Errorf("schema_migrations holds %d versions, want %d", n, warehouse.NumVersions())
	}

	want := map[string][]string{
		"events": {"event_id String", "type String", "event_time DateTime", "event_time_ms UInt64", "received_at DateTime",
			"anonymous_id String", "lead_id String", "previous_id String", "write_key_id String",
			"campaign String", "utm_source String", "utm_medium String", "utm_campaign String", "utm_term String", "utm_content String",
			"url String", "path String", "referrer String", "title String", "track String", "properties String", "traits String",
			"revenue Decimal(18, 4)", "currency String", "ip String", "user_agent String",
			"bot UInt8", "bot_reason String", "ingested_at DateTime",
			"original_timestamp DateTime", "original_timestamp_ms UInt64", "context String", "integrations String", "group_id String"},
		"identity_links": {"anonymous_id String", "lead_id String", "linked_at DateTime", "event_id String"},
		"mql": {"mql_id String", "lead_id String", "model String", "score Float64", "threshold Float64",
			"crossed_at DateTime", "crossed_at_ms UInt64", "trigger_event_id String",
			"reasons.rule Array(String)", "reasons.points Array(Float64)"},
		"account_members": {"account_id String", "lead_id String", "anonymous_id String", "source String",
			"joined_at DateTime", "joined_at_ms UInt64", "event_id String"},
		"mqa": {"mqa_id String", "account_id String", "model String", "score Float64", "threshold Float64",
			"crossed_at DateTime", "crossed_at_ms UInt64", "trigger_event_id String", "engaged_members UInt32",
			"reasons.rule Array(String)", "reasons.points Array(Float64)", "top_members.lead_id Array(String)", "top_members.points Array(Float64)"},
		"campaign_costs":    {"campaign String", "day Date", "channel String", "cost Decimal(18, 4)", "currency String", "imported_at DateTime"},
		"schema_migrations": {"version UInt32", "applied_at DateTime"},
	}
	rs, err := conn.Query(ctx, "SELECT table, name, type FROM system.columns WHERE database = ?", cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	got := map[string][]string{}
	for rs.Next() {
		var table, name, typ string
		if err := rs.Scan(&table, &name, &typ); err != nil {
			t.Fatal(err)
		}
		got[table] = append(got[table], name+" "+typ)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("columns:\n got %v\nwant %v", got, want)
	}
}

func TestMigrateRejectsBadDatabaseName(t *testing.T) {
	conn, _ := warehousetest.Open(t, "warehousetest")
	for _, db := range []string{"", "a-b", "x; DROP TABLE y", "1abc", "db.t"} {
		if err := warehouse.Migrate(context.Background(), conn, db); err == nil {
			t.Errorf("warehouse.Migrate(%q) succeeded", db)
		}
	}
}

// TestSchemaMatchesEventFields holds the events table, as the migrations
// leave it, to the one table of event fields: the columns the sink writes
// and History reads are exactly the table's, with the types its kinds map
// to, plus ingested_at.
func TestSchemaMatchesEventFields(t *testing.T) {
	conn, cfg := warehousetest.Migrated(t, "warehousetest")
	rs, err := conn.Query(context.Background(), "SELECT name, type FROM system.columns WHERE database = ? AND table = 'events'", cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	got := map[string]string{}
	for rs.Next() {
		var name, typ string
		if err := rs.Scan(&name, &typ); err != nil {
			t.Fatal(err)
		}
		got[name] = typ
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"ingested_at": "DateTime"}
	for _, c := range warehouse.EventColumns {
		want[c.Name] = c.Type
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events columns in ClickHouse:\n got %v\nfrom event.Fields %v", got, want)
	}
}

// A database an older release made (schema version 1) gets the columns of
// version 2 added, keeps its rows, and migrating again changes nothing.
func TestMigrateFromVersion1(t *testing.T) {
	conn, cfg := warehousetest.Open(t, "warehousetest")
	ctx := context.Background()
	if err := warehouse.MigrateTo(ctx, conn, cfg.Database, 1); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "INSERT INTO "+cfg.Database+".events (event_id, type, event_time, event_time_ms, received_at, lead_id) SELECT 'old', 'custom', toDateTime(1700000000), 1700000000123, toDateTime(1700000001), 'l'"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := warehouse.Migrate(ctx, conn, cfg.Database); err != nil {
			t.Fatal(err)
		}
	}
	if v := warehousetest.Count(t, conn, "SELECT toUInt64(max(version)) FROM "+cfg.Database+".schema_migrations"); v != uint64(warehouse.LatestVersion()) {
		t.Errorf("schema version = %d, want %d", v, warehouse.LatestVersion())
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+cfg.Database+".events WHERE event_id = 'old' AND original_timestamp_ms = 0 AND context = '' AND integrations = '' AND toUnixTimestamp(original_timestamp) = 0"); n != 1 {
		t.Errorf("the old row with the new columns' defaults: %d rows, want 1", n)
	}
	// History reads the old row with empty new fields, and a new row with them.
	if err := conn.Exec(ctx, "INSERT INTO "+cfg.Database+`.events (event_id, type, event_time, event_time_ms, received_at, lead_id, original_timestamp, original_timestamp_ms, context, integrations)
		SELECT 'new', 'custom', toDateTime(1700000100), 1700000100456, toDateTime(1700000101), 'l', toDateTime(1700003700), 1700003700789, '{"library":{"name":"analytics-go"}}', '{"All":false}'`); err != nil {
		t.Fatal(err)
	}
	got := map[string]event.Event{}
	if err := warehouse.History(ctx, conn, cfg.Database, func(e *event.Event) error { got[e.ID] = *e; return nil }); err != nil {
		t.Fatal(err)
	}
	want := map[string]event.Event{
		"old": {ID: "old", Type: event.Custom, EventTime: time.UnixMilli(1700000000123).UTC(), ReceivedAt: time.Unix(1700000001, 0).UTC(), LeadID: "l"},
		"new": {ID: "new", Type: event.Custom, EventTime: time.UnixMilli(1700000100456).UTC(), ReceivedAt: time.Unix(1700000101, 0).UTC(), LeadID: "l",
			OriginalTimestamp: time.UnixMilli(1700003700789).UTC(), Context: json.RawMessage(`{"library":{"name":"analytics-go"}}`), Integrations: json.RawMessage(`{"All":false}`)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("History:\n got %+v\nwant %+v", got, want)
	}
}
