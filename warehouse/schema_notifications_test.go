package warehouse_test

import (
	"context"
	"testing"

	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// A database of schema version 3 (accounts) gets version 4, the
// notifications table, keeps its rows, and migrating again changes nothing.
func TestMigrateFromVersion3(t *testing.T) {
	conn, cfg := warehousetest.Open(t, "warehousetest")
	ctx := context.Background()
	if err := warehouse.MigrateTo(ctx, conn, cfg.Database, 3); err != nil {
		t.Fatal(err)
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM system.tables WHERE database = '"+cfg.Database+"' AND name = '"+warehouse.TableNotifications+"'"); n != 0 {
		t.Fatalf("version 3 already has %s", warehouse.TableNotifications)
	}
	if err := conn.Exec(ctx, "INSERT INTO "+cfg.Database+".mqa (mqa_id, account_id, model, score, threshold, crossed_at, crossed_at_ms) SELECT 'q1', 'acme', 'default', 160, 150, toDateTime(1700000000), 1700000000123"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := warehouse.Migrate(ctx, conn, cfg.Database); err != nil {
			t.Fatal(err)
		}
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+cfg.Database+".mqa WHERE mqa_id = 'q1'"); n != 1 {
		t.Errorf("the old mqa row: %d rows, want 1", n)
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM system.tables WHERE database = '"+cfg.Database+"' AND name = '"+warehouse.TableNotifications+"'"); n != 1 {
		t.Errorf("table %s: %d, want 1", warehouse.TableNotifications, n)
	}
	if v := warehousetest.Count(t, conn, "SELECT toUInt64(max(version)) FROM "+cfg.Database+".schema_migrations"); v != uint64(warehouse.LatestVersion()) || v < 4 {
		t.Errorf("schema version = %d, want the latest, %d (at least 4)", v, warehouse.LatestVersion())
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+cfg.Database+".schema_migrations FINAL"); n != uint64(warehouse.LatestVersion()) {
		t.Errorf("schema_migrations holds %d versions, want %d", n, warehouse.LatestVersion())
	}
}
