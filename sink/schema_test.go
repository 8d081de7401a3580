package sink

import (
	"context"
	"reflect"
	"testing"
)

func TestMigrateIsIdempotent(t *testing.T) {
	conn, cfg := testDB(t)
	ctx := context.Background()
	for i := range 2 {
		if err := Migrate(ctx, conn, cfg.Database); err != nil {
			t.Fatalf("migrate #%d: %v", i+1, err)
		}
	}
	if v := count(t, conn, "SELECT toUInt64(max(version)) FROM "+cfg.Database+".schema_migrations"); v != uint64(migrations[len(migrations)-1].version) {
		t.Errorf("schema version = %d, want %d", v, migrations[len(migrations)-1].version)
	}
	if n := count(t, conn, "SELECT count() FROM "+cfg.Database+".schema_migrations FINAL"); n != uint64(len(migrations)) {
		t.Errorf("schema_migrations holds %d versions, want %d", n, len(migrations))
	}

	want := map[string][]string{
		"events": {"event_id String", "type String", "event_time DateTime", "event_time_ms UInt64", "received_at DateTime",
			"anonymous_id String", "lead_id String", "previous_id String", "write_key_id String",
			"campaign String", "utm_source String", "utm_medium String", "utm_campaign String", "utm_term String", "utm_content String",
			"url String", "path String", "referrer String", "title String", "track String", "properties String", "traits String",
			"revenue Decimal(18, 4)", "currency String", "ip String", "user_agent String",
			"bot UInt8", "bot_reason String", "ingested_at DateTime"},
		"identity_links": {"anonymous_id String", "lead_id String", "linked_at DateTime", "event_id String"},
		"mql": {"mql_id String", "lead_id String", "model String", "score Float64", "threshold Float64",
			"crossed_at DateTime", "crossed_at_ms UInt64", "trigger_event_id String",
			"reasons.rule Array(String)", "reasons.points Array(Float64)"},
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
	conn, _ := testDB(t)
	for _, db := range []string{"", "a-b", "x; DROP TABLE y", "1abc", "db.t"} {
		if err := Migrate(context.Background(), conn, db); err == nil {
			t.Errorf("Migrate(%q) succeeded", db)
		}
	}
}
