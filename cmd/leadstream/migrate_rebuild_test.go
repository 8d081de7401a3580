package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// `leadstream migrate` warns about an events table of an older release and
// leaves it alone; `leadstream migrate -rebuild-events` rebuilds it, after
// which a resent event is one row; LEADSTREAM_REBUILD_EVENTS is ignored.
func TestMigrateRebuildEvents(t *testing.T) {
	settle := warehouse.RebuildSettle
	warehouse.RebuildSettle = 0
	t.Cleanup(func() { warehouse.RebuildSettle = settle })
	conn, cfg := warehousetest.Migrated(t, "clirebuild")
	ctx := context.Background()
	db := cfg.Database
	for _, q := range []string{
		"CREATE TABLE " + db + ".events_v1 AS " + db + ".events ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(event_time) ORDER BY (type, event_time, event_id)",
		"DROP TABLE " + db + ".events",
		"RENAME TABLE " + db + ".events_v1 TO " + db + ".events",
		// One event and its resend, 30 ms later across a second's edge.
		"INSERT INTO " + db + ".events (event_id, type, event_time, event_time_ms) SELECT 'e1', 'page_view', toDateTime(1768471200), 1768471200990",
		"INSERT INTO " + db + ".events (event_id, type, event_time, event_time_ms) SELECT 'e1', 'page_view', toDateTime(1768471201), 1768471201020",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	rows := func() uint64 { return warehousetest.Count(t, conn, "SELECT count() FROM "+db+".events FINAL") }
	args := []string{"-clickhouse.addr", cfg.Addr, "-clickhouse.database", db}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	t.Setenv("LEADSTREAM_REBUILD_EVENTS", "true")
	if err := runMigrate(ctx, args, log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "migrate -rebuild-events") {
		t.Errorf("migrate did not warn about the old sort key:\n%s", logs.String())
	}
	if n := rows(); n != 2 {
		t.Errorf("after migrate without -rebuild-events: %d rows, want the table untouched (2)", n)
	}

	logs.Reset()
	if err := runMigrate(ctx, append(args, "-rebuild-events"), log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "events rebuilt") || !strings.Contains(logs.String(), "DROP TABLE "+db+"."+warehouse.TableEventsOldSortKey) {
		t.Errorf("migrate -rebuild-events logs:\n%s", logs.String())
	}
	if n := rows(); n != 1 {
		t.Errorf("after the rebuild: %d rows, want the resend folded (1)", n)
	}
	logs.Reset()
	if err := runMigrate(ctx, args, log); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("migrate still warns after the rebuild:\n%s", logs.String())
	}
}
