package warehouse_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// insertEvent stores one events row as the sink would (the columns that
// matter here; ingested_at is the server's now()).
func insertEvent(t *testing.T, conn driver.Conn, db, table, id, typ string, ms int64, lead string) {
	t.Helper()
	q := fmt.Sprintf("INSERT INTO %s.%s (event_id, type, event_time, event_time_ms, received_at, lead_id) SELECT '%s', '%s', toDateTime(%d), %d, toDateTime(%d), '%s'",
		db, table, id, typ, ms/1000, ms, ms/1000, lead)
	if err := conn.Exec(context.Background(), q); err != nil {
		t.Fatal(err)
	}
}

// eventIDs returns the event ids of table FINAL, one per row, sorted.
func eventIDs(t *testing.T, conn driver.Conn, db, table string) []string {
	t.Helper()
	// Sorted outside the FINAL: ClickHouse 18.16 cannot apply FINAL and
	// ORDER BY in one query over a Distributed table.
	return queryStrings(t, conn, "SELECT event_id FROM (SELECT event_id, type, event_time FROM "+db+"."+table+" FINAL) ORDER BY event_id")
}

func tableNames(t *testing.T, conn driver.Conn, db string) []string {
	t.Helper()
	return queryStrings(t, conn, "SELECT name FROM system.tables WHERE database = ? ORDER BY name", db)
}

// queryStrings returns the one String column of q's rows.
func queryStrings(t *testing.T, conn driver.Conn, q string, args ...any) []string {
	t.Helper()
	rs, err := conn.Query(context.Background(), q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var s string
		if err := rs.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// oldEventsDB opens a fresh database (on the test cluster with cluster) as a
// release before the sort key change left it; cluster is its name or "".
func oldEventsDB(t *testing.T, onCluster bool) (conn driver.Conn, db, cluster string) {
	t.Helper()
	var cfg warehouse.Config
	if onCluster {
		conn, cfg = warehousetest.OpenCluster(t, "whrebuild")
	} else {
		conn, cfg = warehousetest.Open(t, "whrebuild")
	}
	if err := warehouse.MigrateWithOldEventsKey(context.Background(), conn, cfg.Database, cfg.Cluster); err != nil {
		t.Fatal(err)
	}
	return conn, cfg.Database, cfg.Cluster
}

// waitEventIDs waits until events FINAL holds want (erasure mutations run
// in the background).
func waitEventIDs(t *testing.T, conn driver.Conn, db string, want []string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := eventIDs(t, conn, db, "events")
		if reflect.DeepEqual(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("events FINAL = %v, want %v", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func outdated(t *testing.T, conn driver.Conn, db, cluster string) bool {
	t.Helper()
	old, err := warehouse.EventsSortKeyOutdated(context.Background(), conn, db, cluster)
	if err != nil {
		t.Fatal(err)
	}
	return old
}

// The copies of an event whose times differ by milliseconds across a
// second (an SDK's resend, corrected again for clock skew) are one row of a
// table created now.
const (
	resendA = int64(1768471200990) // 2026-01-15 10:00:00.990
	resendB = int64(1768471201020) // 10:00:01.020, the same event resent
)

func TestNewEventsTableFoldsResends(t *testing.T) {
	conn, cfg := warehousetest.Migrated(t, "whrebuild")
	if outdated(t, conn, cfg.Database, "") {
		t.Fatal("a new events table has the old sort key")
	}
	insertEvent(t, conn, cfg.Database, "events", "e1", "page_view", resendA, "l1")
	insertEvent(t, conn, cfg.Database, "events", "e1", "page_view", resendB, "l1")
	if got := eventIDs(t, conn, cfg.Database, "events"); !reflect.DeepEqual(got, []string{"e1"}) {
		t.Errorf("events FINAL = %v, want one row of e1", got)
	}
	res, err := warehouse.RebuildEvents(context.Background(), conn, cfg.Database, "", quiet)
	if err != nil || res.Rebuilt {
		t.Errorf("RebuildEvents of a current table = %+v, %v; want nothing done", res, err)
	}
}

// An events table of an older release is rebuilt with the new key while a
// sink goes on writing: rows written to the old table during the copy and
// an INSERT in flight at the swap are copied too, an erasure the old table
// received during the copy is run again on the new one, the resend's two
// rows fold, and the old table is kept under a new name.
func TestRebuildEvents(t *testing.T) {
	conn, db, _ := oldEventsDB(t, false)
	ctx := context.Background()
	if !outdated(t, conn, db, "") {
		t.Fatal("the old release's table is not reported outdated")
	}
	insertEvent(t, conn, db, "events", "e1", "page_view", resendA, "l1")
	insertEvent(t, conn, db, "events", "e1", "page_view", resendB, "l1")
	insertEvent(t, conn, db, "events", "e2", "form_submit", 1764590400000, "l1") // 2025-12-01
	insertEvent(t, conn, db, "events", "gone1", "page_view", 1764590400000, "erased")
	if got := eventIDs(t, conn, db, "events"); !reflect.DeepEqual(got, []string{"e1", "e1", "e2", "gone1"}) {
		t.Fatalf("before: events FINAL = %v, want the resend as two rows", got)
	}
	warehouse.SetRebuildHooks(t, func() error {
		// During the copy: the sink writes to the old table, and an
		// erasure deletes from it rows the copy already took.
		insertEvent(t, conn, db, "events", "during", "page_view", resendA, "l2")
		return conn.Exec(ctx, "ALTER TABLE "+db+".events DELETE WHERE lead_id = 'erased'")
	}, func() error {
		// After the swap: the sink's next INSERT goes to the new table; one
		// in flight at the swap landed in the old one.
		insertEvent(t, conn, db, "events", "after", "page_view", resendB, "l2")
		insertEvent(t, conn, db, warehouse.TableEventsBeforeRebuild, "inflight", "page_view", resendB, "l3")
		return nil
	})
	res, err := warehouse.RebuildEvents(ctx, conn, db, "", quiet)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Rebuilt || res.Mutations != 1 || res.Partitions < 2 {
		t.Errorf("result %+v, want rebuilt, 1 mutation run again, at least 2 partitions copied", res)
	}
	if outdated(t, conn, db, "") {
		t.Error("events still has the old sort key")
	}
	want := []string{"after", "during", "e1", "e2", "inflight"}
	waitEventIDs(t, conn, db, want)
	tables := tableNames(t, conn, db)
	if !slices.Contains(tables, warehouse.TableEventsOldSortKey) || slices.Contains(tables, warehouse.TableEventsBeforeRebuild) || slices.Contains(tables, "events_rebuild") {
		t.Errorf("tables after the rebuild: %v, want %s kept and no other copy of events", tables, warehouse.TableEventsOldSortKey)
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+db+"."+warehouse.TableEventsOldSortKey); n < 5 {
		t.Errorf("the old table kept %d rows, want its rows (at least 5)", n)
	}
	// Done: nothing more to do.
	warehouse.SetRebuildHooks(t, nil, nil)
	if res, err := warehouse.RebuildEvents(ctx, conn, db, "", quiet); err != nil || res.Rebuilt {
		t.Errorf("second RebuildEvents = %+v, %v; want nothing done", res, err)
	}
	// The sink's table keeps working and new migrations keep the key.
	if err := warehouse.Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	if outdated(t, conn, db, "") {
		t.Error("Migrate after the rebuild brought the old sort key back")
	}
}

// A rebuild stopped before or after its swap is finished by the next run.
func TestRebuildEventsResumes(t *testing.T) {
	for _, stop := range []string{"before", "after"} {
		t.Run(stop+" the swap", func(t *testing.T) {
			conn, db, _ := oldEventsDB(t, false)
			ctx := context.Background()
			insertEvent(t, conn, db, "events", "e1", "page_view", resendA, "l1")
			insertEvent(t, conn, db, "events", "e1", "page_view", resendB, "l1")
			insertEvent(t, conn, db, "events", "e2", "page_view", 1764590400000, "l1")
			stopped := errors.New("stopped")
			if stop == "before" {
				warehouse.SetRebuildHooks(t, func() error { return stopped }, nil)
			} else {
				warehouse.SetRebuildHooks(t, nil, func() error { return stopped })
			}
			if _, err := warehouse.RebuildEvents(ctx, conn, db, "", quiet); !errors.Is(err, stopped) {
				t.Fatalf("first run: %v, want it stopped", err)
			}
			if got := eventIDs(t, conn, db, "events"); !slices.Contains(got, "e1") || !slices.Contains(got, "e2") {
				t.Errorf("between the runs events FINAL = %v, want no row missing", got)
			}
			warehouse.SetRebuildHooks(t, nil, nil)
			res, err := warehouse.RebuildEvents(ctx, conn, db, "", quiet)
			if err != nil || !res.Rebuilt {
				t.Fatalf("second run: %+v, %v", res, err)
			}
			if got := eventIDs(t, conn, db, "events"); !reflect.DeepEqual(got, []string{"e1", "e2"}) {
				t.Errorf("events FINAL = %v, want e1 and e2 once each", got)
			}
			if outdated(t, conn, db, "") {
				t.Error("events still has the old sort key")
			}
			if tables := tableNames(t, conn, db); !slices.Contains(tables, warehouse.TableEventsOldSortKey) || slices.ContainsFunc(tables, func(s string) bool {
				return s == warehouse.TableEventsBeforeRebuild || strings.HasPrefix(s, "events_rebuild")
			}) {
				t.Errorf("tables: %v", tables)
			}
		})
	}
}

// On a cluster every host's local table gets the new key, the Distributed
// table reads the new local tables, and the resend folds on its shard.
func TestRebuildEventsCluster(t *testing.T) {
	conn, db, cluster := oldEventsDB(t, true)
	ctx := context.Background()
	if !outdated(t, conn, db, cluster) {
		t.Fatal("the old release's table is not reported outdated")
	}
	var want []string
	for i := range 20 {
		id := fmt.Sprintf("e%02d", i)
		insertEvent(t, conn, db, "events", id, "page_view", resendA+int64(i)*86400000*3, fmt.Sprintf("l%d", i))
		want = append(want, id)
	}
	insertEvent(t, conn, db, "events", "e00", "page_view", resendB, "l0") // the resend of e00
	if n := len(eventIDs(t, conn, db, "events")); n != 21 {
		t.Fatalf("before: %d rows, want 21 (the resend as a second row)", n)
	}
	warehouse.SetRebuildHooks(t, nil, func() error {
		insertEvent(t, conn, db, "events", "after", "page_view", resendB, "l1")
		insertEvent(t, conn, db, warehouse.TableEventsBeforeRebuild, "inflight", "page_view", resendB, "l2")
		return nil
	})
	want = append(want, "after", "inflight")
	slices.Sort(want)
	res, err := warehouse.RebuildEvents(ctx, conn, db, cluster, quiet)
	if err != nil || !res.Rebuilt {
		t.Fatalf("RebuildEvents: %+v, %v", res, err)
	}
	if got := eventIDs(t, conn, db, "events"); !reflect.DeepEqual(got, want) {
		t.Errorf("after: events FINAL = %v, want %v", got, want)
	}
	for _, n := range clusterNodes(t) {
		if outdated(t, n.conn, db, cluster) {
			t.Errorf("%s: events_local still has the old sort key", n.addr)
		}
		tables := tableNames(t, n.conn, db)
		if !slices.Contains(tables, warehouse.TableEventsOldSortKey+warehouse.LocalSuffix) || slices.ContainsFunc(tables, func(s string) bool {
			return strings.HasPrefix(s, warehouse.TableEventsBeforeRebuild) || strings.HasPrefix(s, "events_rebuild")
		}) {
			t.Errorf("%s: tables %v", n.addr, tables)
		}
	}
}

// An erasure still pending when the copy begins (created before it, so not
// "during" the copy) is run again on the new table: the copy may have read
// the rows it was about to delete.
func TestRebuildEventsPendingErasure(t *testing.T) {
	conn, db, _ := oldEventsDB(t, false)
	ctx := context.Background()
	warehouse.SetRebuildSlack(t, 0)
	insertEvent(t, conn, db, "events", "kept", "page_view", resendA, "l1")
	insertEvent(t, conn, db, "events", "gone", "page_view", resendA, "erased")
	// Merges stopped: the mutation stays pending (ClickHouse runs mutations
	// in its merge pool).
	for _, q := range []string{"SYSTEM STOP MERGES " + db + ".events", "ALTER TABLE " + db + ".events DELETE WHERE lead_id = 'erased'"} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2100 * time.Millisecond) // create_time has seconds: now before the copy's start
	if n := warehousetest.Count(t, conn, "SELECT count() FROM system.mutations WHERE database = '"+db+"' AND is_done = 0"); n != 1 {
		t.Fatalf("%d pending mutations, want the erasure pending", n)
	}
	res, err := warehouse.RebuildEvents(ctx, conn, db, "", quiet)
	if err != nil {
		t.Fatal(err)
	}
	if res.Mutations != 1 {
		t.Errorf("%d mutations run again, want the pending erasure", res.Mutations)
	}
	waitEventIDs(t, conn, db, []string{"kept"})
	if err := conn.Exec(ctx, "SYSTEM START MERGES "+db+"."+warehouse.TableEventsOldSortKey); err != nil {
		t.Fatal(err)
	}
}

// waitMutationsDone waits until no mutation of any table of db is pending.
func waitMutationsDone(t *testing.T, conn driver.Conn, db string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for warehousetest.Count(t, conn, "SELECT count() FROM system.mutations WHERE database = '"+db+"' AND is_done = 0") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("mutations still pending after 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A rebuild stopped after its swap is resumed from what it recorded: the
// erasures the old table received during the first run's copy run again on
// the new table, so the rows that copy took before them do not stay.
func TestRebuildEventsResumedAfterSwapRunsErasuresAgain(t *testing.T) {
	conn, db, _ := oldEventsDB(t, false)
	ctx := context.Background()
	insertEvent(t, conn, db, "events", "kept", "page_view", resendA, "l1")
	insertEvent(t, conn, db, "events", "gone", "page_view", resendA, "erased")
	stopped := errors.New("stopped")
	warehouse.SetRebuildHooks(t, func() error {
		// During the copy (its month already copied): the lead is erased
		// from the old table, and the erasure completes.
		if err := conn.Exec(ctx, "ALTER TABLE "+db+".events DELETE WHERE lead_id = 'erased'"); err != nil {
			return err
		}
		waitMutationsDone(t, conn, db)
		return nil
	}, func() error { return stopped }) // SIGTERM right after the swap
	if _, err := warehouse.RebuildEvents(ctx, conn, db, "", quiet); !errors.Is(err, stopped) {
		t.Fatalf("first run: %v, want it stopped", err)
	}
	warehouse.SetRebuildHooks(t, nil, nil)
	res, err := warehouse.RebuildEvents(ctx, conn, db, "", quiet)
	if err != nil || !res.Rebuilt {
		t.Fatalf("second run: %+v, %v", res, err)
	}
	waitMutationsDone(t, conn, db)
	if got := eventIDs(t, conn, db, "events"); !reflect.DeepEqual(got, []string{"kept"}) {
		t.Errorf("events FINAL after the resumed rebuild = %v, want [kept] (the erased lead's row came back; mutations run again: %d)", got, res.Mutations)
	}
}

// An erasure submitted after the swap (EraseRows targets events, now the
// new table) is run again after the copy of what the old table received
// during the copy, which brings that lead's rows written meanwhile.
func TestRebuildEventsErasureAfterSwap(t *testing.T) {
	conn, db, _ := oldEventsDB(t, false)
	ctx := context.Background()
	insertEvent(t, conn, db, "events", "kept", "page_view", resendA, "l1")
	warehouse.SetRebuildHooks(t, func() error {
		// During the copy: the sink writes an event of the lead to the old table.
		insertEvent(t, conn, db, "events", "during", "page_view", resendA, "erased")
		return nil
	}, func() error {
		// Right after the swap: the lead is erased (DELETE /v1/leads/...),
		// and the erasure completes.
		if err := warehouse.EraseRows(ctx, conn, db, []string{"erased"}, nil); err != nil {
			return err
		}
		waitMutationsDone(t, conn, db)
		return nil
	})
	if _, err := warehouse.RebuildEvents(ctx, conn, db, "", quiet); err != nil {
		t.Fatal(err)
	}
	waitMutationsDone(t, conn, db)
	if got := eventIDs(t, conn, db, "events"); !reflect.DeepEqual(got, []string{"kept"}) {
		t.Errorf("events FINAL = %v, want [kept]: the row of the lead erased after the swap came back with the copy of the delta", got)
	}
}

// An INSERT still writing to the old table after the swap (it resolved the
// table before; the sink bounds a write by WriteTimeout) is in the new table
// too: the last copy waits RebuildSettle after the swap.
func TestRebuildEventsInsertInFlightAtSwap(t *testing.T) {
	conn, db, _ := oldEventsDB(t, false)
	ctx := context.Background()
	settle := warehouse.RebuildSettle
	warehouse.RebuildSettle = 3 * time.Second
	t.Cleanup(func() { warehouse.RebuildSettle = settle })
	insertEvent(t, conn, db, "events", "e1", "page_view", resendA, "l1")
	sent := make(chan error, 1)
	warehouse.SetRebuildHooks(t, nil, func() error {
		batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+"."+warehouse.TableEventsBeforeRebuild+" (event_id, type, event_time, event_time_ms, received_at, lead_id)")
		if err != nil {
			return err
		}
		ts := time.UnixMilli(resendB)
		if err := batch.Append("inflight", "page_view", ts, uint64(resendB), ts, "l3"); err != nil {
			return err
		}
		go func() {
			time.Sleep(time.Second) // its block arrives a second after the swap
			sent <- batch.Send()
		}()
		return nil
	})
	if _, err := warehouse.RebuildEvents(ctx, conn, db, "", quiet); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("the in-flight INSERT failed: %v", err)
	}
	if got := eventIDs(t, conn, db, "events"); !slices.Contains(got, "inflight") {
		t.Errorf("events FINAL = %v: an INSERT acknowledged to the sink is missing from events", got)
	}
}

// On a cluster, a run stopped between the final RENAME of the local tables
// and the DROP of the Distributed events_before_rebuild (or between the
// swap and the DROP of the Distributed events_rebuild) leaves a Distributed
// table over local tables that no longer exist: the next run drops it.
func TestRebuildEventsClusterLeftoverDistributed(t *testing.T) {
	conn, db, cluster := oldEventsDB(t, true)
	ctx := context.Background()
	insertEvent(t, conn, db, "events", "e1", "page_view", resendA, "l1")
	if _, err := warehouse.RebuildEvents(ctx, conn, db, cluster, quiet); err != nil {
		t.Fatal(err)
	}
	// The state of a run stopped right after
	// RENAME events_before_rebuild_local TO events_old_sort_key_local ON CLUSTER
	// (rebuild.go:127): the Distributed events_before_rebuild is still there.
	q := "CREATE TABLE " + db + ".events_before_rebuild ON CLUSTER " + cluster + " AS " + db + ".events_old_sort_key_local ENGINE = Distributed(" +
		cluster + ", " + db + ", events_before_rebuild_local, cityHash64(if(anonymous_id != '', anonymous_id, lead_id)))"
	if err := conn.Exec(ctx, q); err != nil {
		t.Fatal(err)
	}
	res, err := warehouse.RebuildEvents(ctx, conn, db, cluster, quiet)
	if err != nil {
		t.Fatalf("next run: %v", err)
	}
	for _, n := range clusterNodes(t) {
		if tables := tableNames(t, n.conn, db); slices.Contains(tables, warehouse.TableEventsBeforeRebuild) {
			err := n.conn.QueryRow(ctx, "SELECT count() FROM "+db+"."+warehouse.TableEventsBeforeRebuild).Scan(new(uint64))
			t.Errorf("%s: after the next run (%+v) tables %v: a Distributed %s over no table is left (reading it: %v)", n.addr, res, tables, warehouse.TableEventsBeforeRebuild, err)
		}
	}
}
