package warehouse_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// Every table a migration writes turns into a replicated local table and a
// Distributed one of the public name; nothing else is accepted.
func TestClusterStatements(t *testing.T) {
	f := func(stmt string, want ...string) {
		t.Helper()
		got, err := warehouse.ClusterStatements("c1", stmt)
		if err != nil {
			t.Fatalf("ClusterStatements(%q): %v", stmt, err)
		}
		if len(got) != len(want) {
			t.Fatalf("ClusterStatements(%q) = %d statements, want %d:\n%s", stmt, len(got), len(want), strings.Join(got, "\n"))
		}
		for i := range want {
			if norm(got[i]) != norm(want[i]) {
				t.Errorf("statement %d:\n got %s\nwant %s", i, norm(got[i]), norm(want[i]))
			}
		}
	}
	f("CREATE DATABASE IF NOT EXISTS {db}", "CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER c1")
	f(`CREATE TABLE IF NOT EXISTS {db}.events (
		event_id String,
		revenue Decimal(18, 4),
		reasons Nested(rule String, points Float64)
	) ENGINE = ReplacingMergeTree()
	PARTITION BY toYYYYMM(event_time)
	ORDER BY (type, event_time, event_id)`,
		`CREATE TABLE IF NOT EXISTS {db}.events_local ON CLUSTER c1 ( event_id String, revenue Decimal(18, 4), reasons Nested(rule String, points Float64) )
		ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{db}/events_local', '{replica}') PARTITION BY toYYYYMM(event_time) ORDER BY (type, event_time, event_id)`,
		`CREATE TABLE IF NOT EXISTS {db}.events ON CLUSTER c1 AS {db}.events_local
		ENGINE = Distributed(c1, {db}, events_local, cityHash64(event_id))`)
	// A version column stays the last engine argument; a table without an
	// entry in shardingKeys is sharded by its sort key.
	f(`CREATE TABLE IF NOT EXISTS {db}.campaign_costs (campaign String, day Date, channel String, imported_at DateTime)
	ENGINE = ReplacingMergeTree(imported_at) ORDER BY (campaign, day, channel)`,
		`CREATE TABLE IF NOT EXISTS {db}.campaign_costs_local ON CLUSTER c1 (campaign String, day Date, channel String, imported_at DateTime)
		ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{db}/campaign_costs_local', '{replica}', imported_at) ORDER BY (campaign, day, channel)`,
		`CREATE TABLE IF NOT EXISTS {db}.campaign_costs ON CLUSTER c1 AS {db}.campaign_costs_local
		ENGINE = Distributed(c1, {db}, campaign_costs_local, cityHash64(campaign, day, channel))`)
	f(`CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, applied_at DateTime)
		ENGINE = ReplacingMergeTree() ORDER BY version`,
		`CREATE TABLE IF NOT EXISTS {db}.schema_migrations_local ON CLUSTER c1 (version UInt32, applied_at DateTime)
		ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{db}/schema_migrations_local', '{replica}') ORDER BY version`,
		`CREATE TABLE IF NOT EXISTS {db}.schema_migrations ON CLUSTER c1 AS {db}.schema_migrations_local
		ENGINE = Distributed(c1, {db}, schema_migrations_local, cityHash64(version))`)
	f(`CREATE TABLE IF NOT EXISTS {db}.plain (x UInt64) ENGINE = MergeTree() ORDER BY tuple(x)`,
		`CREATE TABLE IF NOT EXISTS {db}.plain_local ON CLUSTER c1 (x UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{db}/plain_local', '{replica}') ORDER BY tuple(x)`,
		`CREATE TABLE IF NOT EXISTS {db}.plain ON CLUSTER c1 AS {db}.plain_local ENGINE = Distributed(c1, {db}, plain_local, cityHash64(tuple(x)))`)

	for _, stmt := range []string{
		"ALTER TABLE {db}.events ADD COLUMN x String",
		"CREATE TABLE {db}.t (x UInt64) ENGINE = MergeTree() ORDER BY x", // no IF NOT EXISTS
		"CREATE TABLE IF NOT EXISTS {db}.t (x UInt64) ENGINE = Memory",
		"CREATE TABLE IF NOT EXISTS {db}.t (x UInt64) ENGINE = MergeTree()", // nothing to shard by
		"INSERT INTO {db}.events SELECT 1",
		"DROP TABLE {db}.events",
	} {
		if got, err := warehouse.ClusterStatements("c1", stmt); !errors.Is(err, warehouse.ErrClusterDDL) {
			t.Errorf("ClusterStatements(%q) = %q, %v; want ErrClusterDDL", stmt, got, err)
		}
	}
	// Every statement of every migration has its cluster form.
	for _, stmt := range warehouse.MigrationStatements() {
		if _, err := warehouse.ClusterStatements("c1", stmt); err != nil {
			t.Errorf("migration statement has no cluster form: %v", err)
		}
	}
}

func norm(s string) string { return strings.Join(strings.Fields(s), " ") }

// node is one host of the test cluster, with its shard.
type node struct {
	addr  string
	shard string
	conn  driver.Conn
}

func clusterNodes(t *testing.T) []node {
	t.Helper()
	var out []node
	for _, addr := range testsvc.ClickHouseCluster(t).Addrs {
		n := node{addr: addr, conn: warehousetest.Node(t, addr)}
		if err := n.conn.QueryRow(context.Background(), "SELECT substitution FROM system.macros WHERE macro = 'shard'").Scan(&n.shard); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

// columns returns "name type" of each column of each table of database on one host.
func columns(t *testing.T, conn driver.Conn, database string) map[string][]string {
	t.Helper()
	rs, err := conn.Query(context.Background(), "SELECT table, name, type FROM system.columns WHERE database = ?", database)
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
	return got
}

// On a cluster every host has each table of the single-server schema twice:
// a replicated local table and a Distributed table of the public name, with
// the same columns as on one server; migrating again changes nothing.
func TestMigrateCluster(t *testing.T) {
	conn, cfg := warehousetest.MigratedCluster(t, "whcluster")
	single, scfg := warehousetest.Migrated(t, "whsingle")
	ctx := context.Background()
	if err := warehouse.MigrateCluster(ctx, conn, cfg.Database, cfg.Cluster); err != nil {
		t.Fatalf("migrating again: %v", err)
	}
	want := columns(t, single, scfg.Database)
	engines := map[string]string{}
	for table, cols := range maps.Clone(want) {
		want[table+warehouse.LocalSuffix] = cols
		engines[table] = "Distributed"
	}
	for _, n := range clusterNodes(t) {
		if got := columns(t, n.conn, cfg.Database); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: columns\n got %v\nwant %v", n.addr, got, want)
		}
		rs, err := n.conn.Query(ctx, "SELECT name, engine FROM system.tables WHERE database = ?", cfg.Database)
		if err != nil {
			t.Fatal(err)
		}
		for rs.Next() {
			var name, engine string
			if err := rs.Scan(&name, &engine); err != nil {
				t.Fatal(err)
			}
			local, isLocal := strings.CutSuffix(name, warehouse.LocalSuffix)
			switch {
			case isLocal && engine != "Replicated"+singleEngine(t, single, scfg.Database, local):
				t.Errorf("%s: %s is %s, want the replicated form of the single-server engine", n.addr, name, engine)
			case !isLocal && engine != engines[name]:
				t.Errorf("%s: %s is %s, want %s", n.addr, name, engine, engines[name])
			}
		}
		rs.Close()
	}
	if v := warehousetest.Count(t, conn, "SELECT toUInt64(max(version)) FROM "+cfg.Database+".schema_migrations"); v != uint64(warehouse.LatestVersion()) {
		t.Errorf("schema version = %d, want %d", v, warehouse.LatestVersion())
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+cfg.Database+".schema_migrations FINAL"); n != uint64(warehouse.NumVersions()) {
		t.Errorf("schema_migrations holds %d versions, want %d", n, warehouse.NumVersions())
	}
}

func singleEngine(t *testing.T, conn driver.Conn, database, table string) string {
	t.Helper()
	var e string
	if err := conn.QueryRow(context.Background(), "SELECT engine FROM system.tables WHERE database = ? AND name = ?", database, table).Scan(&e); err != nil {
		t.Fatalf("engine of %s: %v", table, err)
	}
	return e
}

// A cluster database an older release made (schema version 1) gets the
// columns of version 2 on every host, in the local and the Distributed
// tables, and keeps its rows.
func TestMigrateClusterFromVersion1(t *testing.T) {
	conn, cfg := warehousetest.OpenCluster(t, "whcluster")
	ctx := context.Background()
	if err := warehouse.MigrateClusterTo(ctx, conn, cfg.Database, cfg.Cluster, 1); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "INSERT INTO "+cfg.Database+".events (event_id, type, event_time, event_time_ms, received_at, lead_id) SELECT 'old', 'custom', toDateTime(1700000000), 1700000000123, toDateTime(1700000001), 'l'"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := warehouse.MigrateCluster(ctx, conn, cfg.Database, cfg.Cluster); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range clusterNodes(t) {
		cols := columns(t, n.conn, cfg.Database)
		for _, table := range []string{"events", "events" + warehouse.LocalSuffix} {
			for _, c := range []string{"original_timestamp DateTime", "original_timestamp_ms UInt64", "context String", "integrations String"} {
				if !slices.Contains(cols[table], c) {
					t.Errorf("%s: %s has no column %s after the migration", n.addr, table, c)
				}
			}
		}
	}
	if v := warehousetest.Count(t, conn, "SELECT toUInt64(max(version)) FROM "+cfg.Database+".schema_migrations"); v != uint64(warehouse.LatestVersion()) {
		t.Errorf("schema version = %d, want %d", v, warehouse.LatestVersion())
	}
	got := map[string]event.Event{}
	if err := warehouse.History(ctx, conn, cfg.Database, func(e *event.Event) error { got[e.ID] = *e; return nil }); err != nil {
		t.Fatal(err)
	}
	want := map[string]event.Event{
		"old": {ID: "old", Type: event.Custom, EventTime: time.UnixMilli(1700000000123).UTC(), ReceivedAt: time.Unix(1700000001, 0).UTC(), LeadID: "l"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("History:\n got %+v\nwant %+v", got, want)
	}
}

// Rows written through the Distributed tables are spread over the shards:
// events by event id (every copy of one event on one shard, on each of its
// replicas), identity links by anonymous id. Rows written twice (a
// redelivery) fold under FINAL as on one server.
func TestClusterSharding(t *testing.T) {
	conn, cfg := warehousetest.MigratedCluster(t, "whcluster")
	ctx := context.Background()
	const n = 600
	var ids, anons, leads, types []string
	var times []time.Time
	var ms []uint64
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		ids = append(ids, fmt.Sprintf("e%d", i))
		switch i % 3 {
		case 0: // a visitor
			anons, leads, types = append(anons, fmt.Sprintf("a%d", i%40)), append(leads, ""), append(types, "page_view")
		case 1: // the visitor identifies
			anons, leads, types = append(anons, fmt.Sprintf("a%d", i%40)), append(leads, fmt.Sprintf("l%d", i%40)), append(types, "identify")
		default: // the lead on its own
			anons, leads, types = append(anons, ""), append(leads, fmt.Sprintf("l%d", i%40)), append(types, "email_open")
		}
		tm := base.Add(time.Duration(i) * time.Minute)
		times, ms = append(times, tm), append(ms, uint64(tm.UnixMilli()))
	}
	cols := []warehouse.Column{
		{Name: "event_id", Values: ids}, {Name: "type", Values: types}, {Name: "event_time", Values: times},
		{Name: "event_time_ms", Values: ms}, {Name: "received_at", Values: times},
		{Name: "anonymous_id", Values: anons}, {Name: "lead_id", Values: leads},
	}
	var la, ll, le []string
	var lt []time.Time
	for i := range n {
		if anons[i] != "" && leads[i] != "" {
			la, ll, lt, le = append(la, anons[i]), append(ll, leads[i]), append(lt, times[i]), append(le, ids[i])
		}
	}
	links := []warehouse.Column{{Name: "anonymous_id", Values: la}, {Name: "lead_id", Values: ll}, {Name: "linked_at", Values: lt}, {Name: "event_id", Values: le}}
	if err := warehouse.Insert(ctx, conn, cfg.Database, warehouse.TableEvents, n, cols); err != nil {
		t.Fatal(err)
	}
	if err := warehouse.Insert(ctx, conn, cfg.Database, warehouse.TableIdentityLinks, len(la), links); err != nil {
		t.Fatal(err)
	}
	// A redelivery of the second half is stored again, and folds under
	// FINAL. (Replicated tables drop a block identical to a recent one, but
	// the rows' ingested_at, now() at insert, makes a later retry differ.)
	half := make([]warehouse.Column, len(cols))
	for i, c := range cols {
		switch v := c.Values.(type) {
		case []string:
			half[i] = warehouse.Column{Name: c.Name, Values: v[n/2:]}
		case []time.Time:
			half[i] = warehouse.Column{Name: c.Name, Values: v[n/2:]}
		case []uint64:
			half[i] = warehouse.Column{Name: c.Name, Values: v[n/2:]}
		}
	}
	if err := warehouse.Insert(ctx, conn, cfg.Database, warehouse.TableEvents, n-n/2, half); err != nil {
		t.Fatal(err)
	}
	const stored = n + n - n/2
	// Synchronous inserts: every row is on its shard when Insert returns.
	if got := warehousetest.Count(t, conn, "SELECT count() FROM "+cfg.Database+".events"); got != stored {
		t.Errorf("%d rows through the Distributed table, want %d", got, stored)
	}
	if got := warehousetest.Count(t, conn, "SELECT count() FROM "+cfg.Database+".events FINAL"); got != n {
		t.Errorf("%d rows with FINAL, want %d", got, n)
	}
	if got := warehousetest.Count(t, conn, "SELECT uniqExact(event_id) FROM "+cfg.Database+".events"); got != n {
		t.Errorf("%d distinct event ids, want %d", got, n)
	}

	// Where each event's copies are, per replica.
	shardsOf := map[string]map[string]bool{} // event id -> shards holding it
	rowsOn := map[string]uint64{}            // node -> rows in its events_local
	perShard := map[string][]uint64{}        // shard -> rows of each replica
	for _, nd := range clusterNodes(t) {
		if err := nd.conn.Exec(ctx, "SYSTEM SYNC REPLICA "+cfg.Database+".events"+warehouse.LocalSuffix); err != nil {
			t.Fatal(err)
		}
		rs, err := nd.conn.Query(ctx, "SELECT DISTINCT event_id FROM "+cfg.Database+".events"+warehouse.LocalSuffix)
		if err != nil {
			t.Fatal(err)
		}
		for rs.Next() {
			var id string
			if err := rs.Scan(&id); err != nil {
				t.Fatal(err)
			}
			if shardsOf[id] == nil {
				shardsOf[id] = map[string]bool{}
			}
			shardsOf[id][nd.shard] = true
		}
		rs.Close()
		rowsOn[nd.addr] = warehousetest.Count(t, nd.conn, "SELECT count() FROM "+cfg.Database+".events"+warehouse.LocalSuffix)
		perShard[nd.shard] = append(perShard[nd.shard], rowsOn[nd.addr])
	}
	if len(shardsOf) != n {
		t.Errorf("%d event ids on the shards, want %d", len(shardsOf), n)
	}
	for id, s := range shardsOf {
		if len(s) != 1 {
			t.Errorf("event %s is on shards %v, want one", id, slices.Collect(maps.Keys(s)))
		}
	}
	if len(perShard) < 2 {
		t.Fatalf("the test cluster has %d shards, want 2", len(perShard))
	}
	var total uint64
	for shard, reps := range perShard {
		if reps[0] == 0 {
			t.Errorf("shard %s holds no rows: the sharding key does not spread events", shard)
		}
		for _, r := range reps[1:] {
			if r != reps[0] {
				t.Errorf("shard %s: replicas hold %v rows, want the same", shard, reps)
			}
		}
		total += reps[0]
	}
	if total != stored {
		t.Errorf("the shards hold %d rows together, want %d", total, stored)
	}
	t.Logf("rows per node: %v", rowsOn)
}

// Cluster mode refuses a server that cannot serve it, naming what is
// missing: here one server, whose default profile keeps
// distributed_product_mode = deny and which knows no such cluster.
func TestOpenClusterChecksServer(t *testing.T) {
	_, single := warehousetest.Open(t, "whcheck")
	single.Cluster = "lstest"
	_, err := warehouse.Open(context.Background(), single)
	if !errors.Is(err, warehouse.ErrClusterSettings) || !strings.Contains(err.Error(), "distributed_product_mode") {
		t.Errorf("Open on one server in cluster mode: %v, want ErrClusterSettings naming distributed_product_mode", err)
	}
	c := testsvc.ClickHouseCluster(t)
	_, err = warehouse.Open(context.Background(), warehouse.Config{Addr: c.Addrs[0], Database: "x", Username: "default", DialTimeout: 5 * time.Second, Cluster: "nosuch"})
	if !errors.Is(err, warehouse.ErrClusterSettings) || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Errorf("Open with an unknown cluster: %v, want ErrClusterSettings naming it", err)
	}
	if _, err := warehouse.Open(context.Background(), warehouse.Config{Addr: c.Addrs[0], Database: "x", Username: "default", DialTimeout: 5 * time.Second, Cluster: "bad-name"}); !errors.Is(err, warehouse.ErrBadCluster) {
		t.Errorf("Open with cluster bad-name: %v, want ErrBadCluster", err)
	}
}
