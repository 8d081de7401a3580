package analytics

import (
	"testing"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// On a ClickHouse cluster (two shards, the first with two replicas) every
// report and every SQL file gives the fixture's figures as on one server:
// after the first load, after a replay of every row (merges stopped, so the
// copies stay) and after merges.
func TestReportsOnFixtureCluster(t *testing.T) {
	conn, cfg := warehousetest.MigratedCluster(t, "reportcluster")
	tables := []string{"events", "identity_links", "mql", "campaign_costs", "account_members", "mqa"}
	nodes := testsvc.ClickHouseCluster(t).Addrs
	onEachNode := func(q func(table string) string) {
		t.Helper()
		for _, addr := range nodes {
			nc := warehousetest.Node(t, addr)
			for _, tb := range tables {
				runSQL(t, nc, q(cfg.Database+"."+tb+warehouse.LocalSuffix))
			}
		}
	}
	onEachNode(func(tb string) string { return "SYSTEM STOP MERGES " + tb })
	r := NewReporter(conn, cfg.Database)

	loadFixture(t, conn, cfg.Database)
	checkAll(t, "cluster, first load", r, nodes[0], cfg.Database)

	loadFixture(t, conn, cfg.Database)
	// Replicated tables drop a block identical to one of the last 100
	// inserted (replicated_deduplication_window): the replay of a table
	// whose rows are all given is not stored twice. Events (ingested_at is
	// now() at insert) and costs (imported_at) differ, and are.
	for _, tb := range tables {
		raw, final := rowCount(t, conn, cfg.Database+"."+tb, ""), rowCount(t, conn, cfg.Database+"."+tb, "FINAL")
		want := final
		if tb == "events" || tb == "campaign_costs" {
			want = 2 * final
		}
		if raw != want {
			t.Fatalf("%s: %d rows, %d with FINAL after a replay, want %d", tb, raw, final, want)
		}
	}
	checkAll(t, "cluster, after a replay", r, nodes[0], cfg.Database)

	onEachNode(func(tb string) string { return "SYSTEM START MERGES " + tb })
	// OPTIMIZE on a replica whose shard has nothing to merge fails on
	// 18.16 ("Unknown log entry type: 0"): only where parts are to merge.
	for _, addr := range nodes {
		nc := warehousetest.Node(t, addr)
		for _, tb := range tables {
			parts := warehousetest.Count(t, nc, "SELECT count() FROM system.parts WHERE active AND database = '"+cfg.Database+"' AND table = '"+tb+warehouse.LocalSuffix+"'")
			if parts > 1 {
				runSQL(t, nc, "OPTIMIZE TABLE "+cfg.Database+"."+tb+warehouse.LocalSuffix+" FINAL")
			}
		}
	}
	onEachNode(func(tb string) string { return "SYSTEM SYNC REPLICA " + tb })
	if raw := rowCount(t, conn, cfg.Database+".events", ""); raw != 25 {
		t.Fatalf("events after OPTIMIZE FINAL: %d rows, want 25", raw)
	}
	checkAll(t, "cluster, after merges", r, nodes[0], cfg.Database)
}
