package warehouse_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// notifications (partitioned by toYYYYMM(attempted_at)) loses its old months
// with the other monthly tables.
func TestRetentionDropsNotifications(t *testing.T) {
	conn, cfg := warehousetest.Migrated(t, "retention_notif")
	ctx := context.Background()
	db := cfg.Database
	now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)
	if err := warehouse.Insert(ctx, conn, db, warehouse.TableNotifications, 2, []warehouse.Column{
		{Name: "destination", Values: []string{"crm", "crm"}},
		{Name: "kind", Values: []string{"mql", "mql"}},
		{Name: "mql_id", Values: []string{"old", "new"}},
		{Name: "subject_id", Values: []string{"jane@example.com", "bob@example.com"}},
		{Name: "attempted_at", Values: []time.Time{now.AddDate(0, -5, 0), now}}}); err != nil {
		t.Fatal(err)
	}
	parts, err := warehouse.ExpiredPartitions(ctx, conn, db, time.Date(2026, 3, 20, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range parts {
		got = append(got, p.Table+"/"+p.Month)
		if err := warehouse.DropPartition(ctx, conn, db, p); err != nil {
			t.Fatal(err)
		}
	}
	if want := "notifications/202601"; strings.Join(got, ",") != want {
		t.Errorf("expired partitions %q, want %s", got, want)
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+db+".notifications WHERE mql_id = 'new'"); n != 1 {
		t.Errorf("the recent notifications row is gone")
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+db+".notifications"); n != 1 {
		t.Errorf("%d notifications rows left, want 1", n)
	}
}
