package sink

import (
	"context"
	"reflect"
	"testing"

	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// On a cluster the sink writes through the Distributed tables: every event
// comes back whole through them, and a retried batch folds under FINAL as
// on one server.
func TestWriteOnCluster(t *testing.T) {
	conn, cfg := warehousetest.MigratedCluster(t, "sinkcluster")
	ctx := context.Background()
	const n = 1000
	r := &rows{events: testEvents(n), mqls: testMQLs()}
	w := writer{conn: conn, db: cfg.Database, m: newMetrics(nil)}
	for range 2 {
		if err := w.write(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	db := cfg.Database
	for table, want := range map[string]uint64{"events": n, "mql": 2, "identity_links": uint64(len(identityLinks(r.events)))} {
		if got := warehousetest.Count(t, conn, "SELECT count() FROM "+db+"."+table+" FINAL"); got != want {
			t.Errorf("%s FINAL count = %d, want %d", table, got, want)
		}
	}
	stored := storedEvents(t, conn, db)
	if len(stored) != n {
		t.Errorf("%d distinct events through the Distributed table, want %d", len(stored), n)
	}
	for _, e := range r.events {
		if got := stored[e.ID]; !reflect.DeepEqual(got, asStored(e)) {
			t.Fatalf("event %s round trip:\n got %+v\nwant %+v", e.ID, got, asStored(e))
		}
	}
	checkMQLs(t, conn, db)
}
