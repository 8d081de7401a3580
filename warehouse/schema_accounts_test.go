package warehouse_test

import (
	"context"
	"testing"

	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// A database of schema version 2 gets version 3 (the group_id column, the
// account_members and mqa tables), keeps its rows, and migrating again
// changes nothing.
func TestMigrateFromVersion2(t *testing.T) {
	conn, cfg := warehousetest.Open(t, "warehousetest")
	ctx := context.Background()
	if err := warehouse.MigrateTo(ctx, conn, cfg.Database, 2); err != nil {
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
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+cfg.Database+".events WHERE event_id = 'old' AND group_id = ''"); n != 1 {
		t.Errorf("the old row with an empty group_id: %d rows, want 1", n)
	}
	for _, table := range []string{warehouse.TableAccountMembers, warehouse.TableMQA} {
		if n := warehousetest.Count(t, conn, "SELECT count() FROM system.tables WHERE database = '"+cfg.Database+"' AND name = '"+table+"'"); n != 1 {
			t.Errorf("table %s: %d, want 1", table, n)
		}
	}
	if v := warehousetest.Count(t, conn, "SELECT toUInt64(max(version)) FROM "+cfg.Database+".schema_migrations"); v != 3 || warehouse.LatestVersion() != 3 {
		t.Errorf("schema version = %d (latest %d), want 3", v, warehouse.LatestVersion())
	}
}
