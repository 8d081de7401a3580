package warehouse_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// ExpiredPartitions lists only months wholly older than the cutoff, and
// DropPartition removes their rows and nothing else.
func TestRetention(t *testing.T) {
	conn, cfg := warehousetest.Migrated(t, "retention")
	ctx := context.Background()
	db := cfg.Database
	now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)
	var ids []string
	var times []time.Time
	for m := range 6 { // 2026-06 back to 2026-01, mid-month
		ids = append(ids, fmt.Sprint("e", m))
		times = append(times, now.AddDate(0, -m, 0))
	}
	if err := warehouse.Insert(ctx, conn, db, "events", len(ids), []warehouse.Column{
		{Name: "event_id", Values: ids}, {Name: "event_time", Values: times}}); err != nil {
		t.Fatal(err)
	}
	if err := warehouse.Insert(ctx, conn, db, "mql", 2, []warehouse.Column{
		{Name: "mql_id", Values: []string{"old", "new"}}, {Name: "crossed_at", Values: []time.Time{now.AddDate(0, -5, 0), now}}}); err != nil {
		t.Fatal(err)
	}
	// Older than 2026-03-20: January and February are wholly older; March is not.
	before := time.Date(2026, 3, 20, 0, 0, 0, 0, time.UTC)
	parts, err := warehouse.ExpiredPartitions(ctx, conn, db, before)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range parts {
		if p.Rows == 0 {
			t.Errorf("partition %+v has no rows", p)
		}
		got = append(got, p.Table+"/"+p.Month)
	}
	if want := "events/202601,mql/202601,events/202602"; strings.Join(got, ",") != want {
		t.Fatalf("expired partitions %q, want %s", got, want)
	}
	// A month that ended less than a time zone ago is kept.
	if parts, err := warehouse.ExpiredPartitions(ctx, conn, db, time.Date(2026, 2, 1, 13, 0, 0, 0, time.UTC)); err != nil || len(parts) != 0 {
		t.Errorf("one hour after January ended: %+v, %v; want none yet", parts, err)
	}
	for _, p := range parts {
		if err := warehouse.DropPartition(ctx, conn, db, p); err != nil {
			t.Fatal(err)
		}
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+db+".events"); n != 4 {
		t.Errorf("%d events left, want 4 (March to June)", n)
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+db+".mql WHERE mql_id = 'new'"); n != 1 {
		t.Errorf("the recent mql row is gone")
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+db+".mql"); n != 1 {
		t.Errorf("%d mql rows left, want 1", n)
	}
	if err := warehouse.DropPartition(ctx, conn, db, warehouse.Partition{Table: "identity_links", Month: "202601"}); err == nil {
		t.Error("DropPartition on a table not partitioned by month succeeded")
	}
}
