package warehouse_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

func TestShardedBy(t *testing.T) {
	for _, c := range []struct {
		engine, key string
		want        bool
	}{
		{"Distributed(c, db, events_local, cityHash64(event_id))", "cityHash64(event_id)", true},
		{"Distributed(c, 'db', 'events_local', cityHash64(event_id))", "cityHash64(event_id)", true},
		{"Distributed(c, db, events_local, cityHash64(if(anonymous_id != '', anonymous_id, lead_id)))", "cityHash64(event_id)", false},
		{"Distributed(c, db, events_local, cityHash64(if(anonymous_id != '', anonymous_id, lead_id)))", warehouse.OldEventsShardingKey, true},
		{"Distributed(c, db, events_local)", "cityHash64(event_id)", false},
		{"ReplicatedReplacingMergeTree(…) ORDER BY cityHash64(event_id))", "cityHash64(event_id)", false},
	} {
		if got := warehouse.ShardedBy(c.engine, c.key); got != c.want {
			t.Errorf("ShardedBy(%q, %q) = %v, want %v", c.engine, c.key, got, c.want)
		}
	}
}

// twoAnons returns two anonymous ids that the events sharding key before
// version 5 sends to different shards (node holds each shard's hosts).
func twoAnons(t *testing.T, conn driver.Conn) (string, string) {
	t.Helper()
	shard := func(s string) uint64 {
		return warehousetest.Count(t, conn, "SELECT cityHash64('"+s+"') % 2 + toUInt64(0)")
	}
	a := "anon-0"
	for i := 1; ; i++ {
		b := fmt.Sprintf("anon-%d", i)
		if shard(b) != shard(a) {
			return a, b
		}
	}
}

// insertCopy inserts one copy of an email click through the Distributed events.
func insertCopy(t *testing.T, conn driver.Conn, db, id, anon, lead string, at time.Time) {
	t.Helper()
	if err := tryInsertCopy(conn, db, id, anon, lead, at); err != nil {
		t.Fatal(err)
	}
}

func tryInsertCopy(conn driver.Conn, db, id, anon, lead string, at time.Time) error {
	return warehouse.Insert(context.Background(), conn, db, warehouse.TableEvents, 1, []warehouse.Column{
		{Name: "event_id", Values: []string{id}}, {Name: "type", Values: []string{"email_click"}},
		{Name: "event_time", Values: []time.Time{at}}, {Name: "event_time_ms", Values: []uint64{uint64(at.UnixMilli())}},
		{Name: "received_at", Values: []time.Time{at}},
		{Name: "anonymous_id", Values: []string{anon}}, {Name: "lead_id", Values: []string{lead}},
	})
}

// shardsOf returns, per event id, the shards whose events_local hold it.
func shardsOf(t *testing.T, db string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, n := range clusterNodes(t) {
		for _, id := range queryStrings(t, n.conn, "SELECT DISTINCT event_id FROM "+db+".events"+warehouse.LocalSuffix) {
			if !slices.Contains(out[id], n.shard) {
				out[id] = append(out[id], n.shard)
			}
		}
	}
	return out
}

// A cluster database of a release before schema version 5 has events
// sharded by the visitor's or lead's id. Version 5 creates the Distributed
// events again, sharded by event_id, on every host: two copies of one
// email click with different anonymous ids, inserted after it, are on one
// shard and fold under FINAL. A copy stored before stays on the shard of the
// old key. The migration runs while a sink inserts: every row gets in
// (an INSERT between the DROP and the CREATE fails as transient, and is
// retried), and running it again changes nothing.
func TestMigrateClusterReshardsEvents(t *testing.T) {
	conn, cfg := warehousetest.OpenCluster(t, "whreshard")
	db := cfg.Database
	ctx := context.Background()
	if err := warehouse.MigrateClusterAsVersion4(ctx, conn, db, cfg.Cluster, false); err != nil {
		t.Fatal(err)
	}
	anonA, anonB := twoAnons(t, conn)
	at := time.Date(2026, 3, 2, 10, 5, 0, 0, time.UTC)
	// Before the migration: the old key splits the copies.
	insertCopy(t, conn, db, "before", anonA, "lead-c", at)
	insertCopy(t, conn, db, "before", anonB, "lead-c", at.Add(15*time.Minute))
	if s := shardsOf(t, db)["before"]; len(s) != 2 {
		t.Fatalf("before the migration the copies are on shards %v, want two (the old key)", s)
	}

	// A sink writing throughout, retrying what is not refused.
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		written  []string
		retried  atomic.Int64
		writeErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load() || i < 5; i++ {
			id := fmt.Sprintf("w%03d", i)
			for attempt := 0; ; attempt++ {
				err := tryInsertCopy(conn, db, id, anonA, "lead-w", at)
				if err == nil {
					break
				}
				if warehouse.Refused(err) || attempt > 50 {
					writeErr = fmt.Errorf("insert %s: %w", id, err)
					return
				}
				retried.Add(1)
				time.Sleep(50 * time.Millisecond)
			}
			written = append(written, id)
		}
	}()
	for range 2 {
		if err := warehouse.MigrateCluster(ctx, conn, db, cfg.Cluster); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if writeErr != nil {
		t.Fatal(writeErr)
	}
	t.Logf("%d rows inserted during the migration, %d retries", len(written), retried.Load())

	for _, n := range clusterNodes(t) {
		var engine string
		if err := n.conn.QueryRow(ctx, "SELECT engine_full FROM system.tables WHERE database = ? AND name = 'events'", db).Scan(&engine); err != nil {
			t.Fatalf("%s: %v", n.addr, err)
		}
		if !warehouse.ShardedBy(engine, "cityHash64(event_id)") {
			t.Errorf("%s: events is %s, want it sharded by cityHash64(event_id)", n.addr, engine)
		}
	}
	if v := warehousetest.Count(t, conn, "SELECT toUInt64(max(version)) FROM "+db+".schema_migrations"); v != uint64(warehouse.LatestVersion()) {
		t.Errorf("schema version = %d, want %d", v, warehouse.LatestVersion())
	}

	insertCopy(t, conn, db, "after", anonA, "lead-c", at)
	insertCopy(t, conn, db, "after", anonB, "lead-c", at.Add(15*time.Minute))
	shards := shardsOf(t, db)
	if s := shards["after"]; len(s) != 1 {
		t.Errorf("copies inserted after the migration are on shards %v, want one", s)
	}
	if s := shards["before"]; len(s) != 2 {
		t.Errorf("copies stored before the migration are on shards %v, want where they were (two)", s)
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM (SELECT event_id FROM "+db+".events FINAL WHERE event_id = 'after')"); n != 1 {
		t.Errorf("events FINAL holds %d rows of the event inserted twice after the migration, want 1", n)
	}
	got := queryStrings(t, conn, "SELECT DISTINCT event_id FROM "+db+".events WHERE event_id LIKE 'w%' ORDER BY event_id")
	if !reflect.DeepEqual(got, written) {
		t.Errorf("rows written during the migration: stored %v, want %v", got, written)
	}
}

// -rebuild-events on a cluster of an older release (old sort key and old
// sharding key): its copy goes through a Distributed table with the new
// key, so the copies of one event id stored on two shards end up on one,
// and fold.
func TestRebuildEventsClusterReshards(t *testing.T) {
	conn, cfg := warehousetest.OpenCluster(t, "whreshard")
	db := cfg.Database
	ctx := context.Background()
	if err := warehouse.MigrateClusterAsVersion4(ctx, conn, db, cfg.Cluster, true); err != nil {
		t.Fatal(err)
	}
	anonA, anonB := twoAnons(t, conn)
	at := time.Date(2026, 3, 2, 10, 5, 0, 0, time.UTC)
	insertCopy(t, conn, db, "ec", anonA, "lead-c", at)
	insertCopy(t, conn, db, "ec", anonB, "lead-c", at)
	if s := shardsOf(t, db)["ec"]; len(s) != 2 {
		t.Fatalf("copies on shards %v, want two (the old key)", s)
	}
	if err := warehouse.MigrateCluster(ctx, conn, db, cfg.Cluster); err != nil {
		t.Fatal(err)
	}
	res, err := warehouse.RebuildEvents(ctx, conn, db, cfg.Cluster, quiet)
	if err != nil || !res.Rebuilt {
		t.Fatalf("RebuildEvents: %+v, %v", res, err)
	}
	if s := shardsOf(t, db)["ec"]; len(s) != 1 {
		t.Errorf("after the rebuild the copies are on shards %v, want one", s)
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM (SELECT event_id FROM "+db+".events FINAL)"); n != 1 {
		t.Errorf("events FINAL holds %d rows after the rebuild, want 1", n)
	}
}
