package warehouse

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Cluster mode (clickhouse.cluster set).
//
// Every migration writes its tables once, as for one server:
//
//	CREATE TABLE IF NOT EXISTS {db}.name (columns) ENGINE = XMergeTree(args) PARTITION BY … ORDER BY …
//
// and clusterDDL turns each into two tables created ON CLUSTER on every host:
//
//   - name_local, the rows of one shard: ReplicatedXMergeTree(
//     '/clickhouse/tables/{shard}/<db>/name_local', '{replica}', args) with
//     the same columns, partitions and sort key ({shard} and {replica} are
//     each host's macros);
//   - name, a Distributed(cluster, db, name_local, key) table over them,
//     with the public name: the sink inserts into it, and reports, the SQL
//     files and rescore read it, so they are the same in both modes.
//
// key is shardingKeys[name], or else a hash of the sort key. Either way the
// copies of one record (a redelivered batch, an event sent twice) land on
// the same shard, where
// ReplacingMergeTree folds them: FINAL on a Distributed table is applied by
// each shard to its own rows, so it is exact only when duplicates share a
// shard. CREATE DATABASE gets ON CLUSTER; a column added by a migration is
// added to name_local ON CLUSTER, and name is created again over it (ALTER
// ON CLUSTER of a Distributed table is refused by ClickHouse 18.16 when
// shards are replicated). Any other statement is refused in cluster mode
// (ErrClusterDDL), so a migration that does not fit fails the cluster tests.

// LocalSuffix ends the name of each table's shard-local part in cluster mode.
const LocalSuffix = "_local"

// shardingKeys are the Distributed sharding expressions of the tables that
// are not sharded by their whole sort key. Each must depend only on columns
// of the table's sort key (what the copies of one record share, so that
// ReplacingMergeTree can fold them), never on a column two copies may
// differ in. No query needs a person's rows on one shard: the reports
// merge partial aggregates of every shard and compute their joined
// subqueries once over all shards (distributed_product_mode = global).
//
// A key changed after a cluster was created is applied by a migration
// version that creates the Distributed table again (migration.distributed).
var shardingKeys = map[string]string{
	// The event id only: two copies of one event may carry different
	// anonymous or lead ids (an email click's id is built from the link's
	// token and the hour, ingest/email.go, and two browsers clicking the
	// link in one hour give it two cookies). Until schema version 5 this
	// was cityHash64(if(anonymous_id != '', anonymous_id, lead_id)).
	TableEvents:        "cityHash64(event_id)",
	TableIdentityLinks: "cityHash64(anonymous_id)",
	TableMQL:           "cityHash64(lead_id)",
	// Both ids are in the sort key, so copies share them.
	TableAccountMembers: "cityHash64(if(anonymous_id != '', anonymous_id, lead_id))",
	TableMQA:            "cityHash64(account_id)",
}

// ddl says where a migration's statements run.
type ddl struct {
	db      string
	cluster string // "" = one server
}

var (
	createTable = regexp.MustCompile(`(?s)^\s*CREATE TABLE IF NOT EXISTS \{db\}\.(\w+)\s*\((.*)\)\s*ENGINE\s*=\s*(\w*MergeTree)\(([^()]*)\)(.*)$`)
	createDB    = regexp.MustCompile(`^\s*CREATE DATABASE IF NOT EXISTS \{db\}\s*$`)
	orderBy     = regexp.MustCompile(`(?s)\bORDER BY\s+((?:\w+)?\((?:[^()]|\([^()]*\))*\)|\w+)`)
)

// statements returns what to run for one migration statement: the
// statement itself on one server, or its ON CLUSTER form.
func (d ddl) statements(stmt string) ([]string, error) {
	if d.cluster == "" {
		return []string{stmt}, nil
	}
	if createDB.MatchString(stmt) {
		return []string{strings.TrimSpace(stmt) + " ON CLUSTER " + d.cluster}, nil
	}
	t, err := parseTable(stmt)
	if err != nil {
		return nil, err
	}
	args := fmt.Sprintf("'/clickhouse/tables/{shard}/{db}/%s%s', '{replica}'", t.name, LocalSuffix)
	if strings.TrimSpace(t.args) != "" {
		args += ", " + strings.TrimSpace(t.args)
	}
	local := fmt.Sprintf("CREATE TABLE IF NOT EXISTS {db}.%s%s ON CLUSTER %s (%s) ENGINE = Replicated%s(%s)%s",
		t.name, LocalSuffix, d.cluster, t.columns, t.engine, args, t.rest)
	return []string{local, d.distributed(t)}, nil
}

// distributed is the CREATE statement of t's Distributed table.
func (d ddl) distributed(t table) string {
	return fmt.Sprintf("CREATE TABLE IF NOT EXISTS {db}.%s ON CLUSTER %s AS {db}.%s%s ENGINE = Distributed(%s, {db}, %s%s, %s)",
		t.name, d.cluster, t.name, LocalSuffix, d.cluster, t.name, LocalSuffix, t.key)
}

// table is a CREATE TABLE statement of a migration, taken apart.
type table struct {
	name, columns, engine, args, rest string
	key                               string // sharding expression
}

func parseTable(stmt string) (table, error) {
	m := createTable.FindStringSubmatch(stmt)
	if m == nil {
		return table{}, fmt.Errorf("%w: %q", ErrClusterDDL, firstLine(strings.TrimSpace(stmt)))
	}
	t := table{name: m[1], columns: m[2], engine: m[3], args: m[4], rest: m[5], key: shardingKeys[m[1]]}
	if t.key == "" {
		o := orderBy.FindStringSubmatch(t.rest)
		if o == nil {
			return table{}, fmt.Errorf("%w: table %s has no ORDER BY to shard by and no entry in shardingKeys", ErrClusterDDL, t.name)
		}
		key := o[1]
		if strings.HasPrefix(key, "(") { // a tuple: its elements are the arguments
			key = key[1 : len(key)-1]
		}
		t.key = "cityHash64(" + key + ")"
	}
	return t, nil
}

// tableOf returns the CREATE statement of name from the migrations.
func tableOf(name string) (table, error) {
	for _, m := range migrations {
		for _, s := range m.stmts {
			if t, err := parseTable(s); err == nil && t.name == name {
				return t, nil
			}
		}
	}
	return table{}, fmt.Errorf("%w: no migration creates table %s", ErrClusterDDL, name)
}

// addColumn adds c to a table of every host: to its local part ON CLUSTER,
// then by creating its Distributed table again over the local one (it holds
// no rows: leadstream inserts synchronously). Each step is skipped when this
// host has the column already, so a migration cut short is resumed.
func (d ddl) addColumn(ctx context.Context, conn driver.Conn, c column) error {
	if d.cluster == "" {
		return addColumn(ctx, conn, d.db, c)
	}
	local := column{table: c.table + LocalSuffix, name: c.name, typ: c.typ}
	if err := addColumn(ctx, conn, d.db, local, " ON CLUSTER "+d.cluster); err != nil {
		return err
	}
	ok, err := hasColumn(ctx, conn, d.db, c)
	if err != nil || ok {
		return err
	}
	t, err := tableOf(c.table)
	if err != nil {
		return err
	}
	for _, q := range []string{"DROP TABLE IF EXISTS {db}." + c.table + " ON CLUSTER " + d.cluster, d.distributed(t)} {
		if err := exec(ctx, conn, d.db, q); err != nil {
			return err
		}
	}
	return nil
}

// redistribute creates the Distributed table name again (DROP, then CREATE
// ON CLUSTER) when its sharding key on this host is not the current one, or
// it is missing (a run stopped between the two): the table holds no rows
// (leadstream inserts synchronously), and only rows inserted afterwards are
// sharded by the new key. An INSERT reaching a host between the DROP and
// the CREATE fails with UNKNOWN_TABLE, which the sink retries (Refused).
// One server has no Distributed tables: nothing to do.
func (d ddl) redistribute(ctx context.Context, conn driver.Conn, name string) error {
	if d.cluster == "" {
		return nil
	}
	t, err := tableOf(name)
	if err != nil {
		return err
	}
	var engines []string
	rows, err := conn.Query(ctx, "SELECT engine_full FROM system.tables WHERE database = ? AND name = ?", d.db, name)
	if err != nil {
		return fmt.Errorf("reading the engine of %s.%s: %w", d.db, name, err)
	}
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			rows.Close()
			return fmt.Errorf("reading the engine of %s.%s: %w", d.db, name, err)
		}
		engines = append(engines, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading the engine of %s.%s: %w", d.db, name, err)
	}
	if len(engines) == 1 && shardedBy(engines[0], t.key) {
		return nil
	}
	for _, q := range []string{"DROP TABLE IF EXISTS {db}." + name + " ON CLUSTER " + d.cluster, d.distributed(t)} {
		if err := exec(ctx, conn, d.db, q); err != nil {
			return err
		}
	}
	return nil
}

// shardedBy reports whether engine, a Distributed table's engine_full as
// system.tables spells it, has key as its sharding expression (spaces
// aside).
func shardedBy(engine, key string) bool {
	squeeze := func(s string) string { return strings.Join(strings.Fields(s), "") }
	return strings.HasPrefix(engine, "Distributed(") && strings.HasSuffix(squeeze(engine), ","+squeeze(key)+")")
}

// hasMigrations reports whether this host has the schema_migrations table:
// on a cluster, the bootstrap DDL is then skipped, so that a sink starts
// while a host is down (DDL ON CLUSTER would wait for it).
func hasMigrations(ctx context.Context, conn driver.Conn, database string) (bool, error) {
	return hasTable(ctx, conn, database, tableMigrations)
}

// hasTable reports whether this host has database.name.
func hasTable(ctx context.Context, conn driver.Conn, database, name string) (bool, error) {
	var n uint64
	err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", database, name).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("looking for %s.%s: %w", database, name, err)
	}
	return n > 0, nil
}

// clusterSettings are the session settings of a connection in cluster mode.
//
// insert_distributed_sync: an INSERT into a Distributed table returns once
// every shard stored its rows, as an INSERT into a table does, so the sink
// commits Kafka offsets only for rows the shards hold. Without it ClickHouse
// queues the rows on the receiving host's disk and sends them later: an
// acknowledged batch would depend on that host's disk, and a read right
// after the insert would miss rows.

func (c *Config) clusterSettings() clickhouse.Settings {
	if c.Cluster == "" {
		return nil
	}
	return clickhouse.Settings{"insert_distributed_sync": 1}
}

// checkCluster verifies, in cluster mode, what the session cannot set
// itself: distributed_product_mode, a string setting that the native
// protocol of older servers (18.16) carries only from the user's profile.
//
// It must be global: a query over a Distributed table that joins (or tests
// IN) a subquery over another Distributed table, as the reports and SQL
// files do (events with identity_links, mql, …), then computes that
// subquery once on the host it asked, over every shard, and sends its
// result to each shard (GLOBAL JOIN, GLOBAL IN). The default, deny, refuses
// such queries; local would join each shard's rows only with that shard's,
// and a lead's MQLs are not on the shard of its anonymous history; allow
// runs the subquery again on every shard, for the same result.
func (c *Config) checkCluster(ctx context.Context, conn driver.Conn) error {
	if c.Cluster == "" {
		return nil
	}
	var mode string
	if err := conn.QueryRow(ctx, "SELECT value FROM system.settings WHERE name = 'distributed_product_mode'").Scan(&mode); err != nil {
		return fmt.Errorf("reading distributed_product_mode: %w", err)
	}
	if mode != "global" && mode != "allow" {
		return fmt.Errorf("%w: distributed_product_mode is %q for user %q; set it to global in the user's profile (users.xml: <distributed_product_mode>global</distributed_product_mode>)", ErrClusterSettings, mode, c.Username)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.clusters WHERE cluster = ?", c.Cluster).Scan(&n); err != nil {
		return fmt.Errorf("reading system.clusters: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("%w: the server at %s has no cluster %q in its remote_servers", ErrClusterSettings, c.Addr, c.Cluster)
	}
	return nil
}

// SingleServer returns ErrClusterUnsupported, naming what, in cluster mode:
// for the operations that change stored rows in place (erasure mutations,
// dropping partitions), which would have to run on every shard's local
// tables and are not built for a cluster yet.
func (c *Config) SingleServer(what string) error {
	if c.Cluster == "" {
		return nil
	}
	return fmt.Errorf("%w: %s (clickhouse.cluster is %q)", ErrClusterUnsupported, what, c.Cluster)
}
