package warehouse

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// LatestVersion is the schema version Migrate brings a database to.
func LatestVersion() uint32 { return migrations[len(migrations)-1].version }

// NumVersions is how many schema versions there are.
func NumVersions() int { return len(migrations) }

// MigrateTo brings database to schema version v, as an older release left it.
func MigrateTo(ctx context.Context, conn driver.Conn, database string, v uint32) error {
	return migrate(ctx, conn, ddl{db: database}, v)
}

// MigrateClusterTo is MigrateTo on a cluster.
func MigrateClusterTo(ctx context.Context, conn driver.Conn, database, cluster string, v uint32) error {
	return migrate(ctx, conn, ddl{db: database, cluster: cluster}, v)
}

// ClusterStatements returns the statements cluster mode runs for one
// migration statement.
func ClusterStatements(cluster, stmt string) ([]string, error) {
	return ddl{db: "db", cluster: cluster}.statements(stmt)
}

// MigrationStatements lists every statement of every migration.
func MigrationStatements() []string {
	var out []string
	for _, m := range migrations {
		out = append(out, m.stmts...)
	}
	return out
}

// MigrateWithOldEventsKey brings database to the latest schema version as
// a release before the events sort key changed left it: events sorted by
// (type, event_time, event_id).
func MigrateWithOldEventsKey(ctx context.Context, conn driver.Conn, database, cluster string) error {
	ms := append([]migration(nil), migrations...)
	v1 := ms[0]
	v1.stmts = append([]string(nil), v1.stmts...)
	old := strings.Replace(v1.stmts[0], "ORDER BY ("+eventsSortKey+")", "ORDER BY ("+eventsOldSortKey+")", 1)
	if old == v1.stmts[0] {
		return errors.New("version 1 does not create events with the current sort key")
	}
	v1.stmts[0] = old
	ms[0] = v1
	return migrateWith(ctx, conn, ddl{db: database, cluster: cluster}, LatestVersion(), ms)
}

// SetRebuildHooks sets the functions RebuildEvents runs before and after
// its swap (nil: none) until the test ends.
func SetRebuildHooks(t interface{ Cleanup(func()) }, before, after func() error) {
	testHookBeforeSwap, testHookAfterSwap = before, after
	t.Cleanup(func() { testHookBeforeSwap, testHookAfterSwap = nil, nil })
}

// SetRebuildSlack sets rebuildSlack until the test ends.
func SetRebuildSlack(t interface{ Cleanup(func()) }, d time.Duration) {
	old := rebuildSlack
	rebuildSlack = d
	t.Cleanup(func() { rebuildSlack = old })
}

func init() { RebuildSettle = 0 } // tests of this package: no wait after the swap

// OldEventsShardingKey is the events sharding key before schema version 5.
const OldEventsShardingKey = "cityHash64(if(anonymous_id != '', anonymous_id, lead_id))"

// MigrateClusterAsVersion4 brings a cluster database to schema version 4 as
// the releases before version 5 left it: events sharded by
// OldEventsShardingKey, and with oldSortKey sorted by (type, event_time,
// event_id) as well.
func MigrateClusterAsVersion4(ctx context.Context, conn driver.Conn, database, cluster string, oldSortKey bool) error {
	ms := append([]migration(nil), migrations...)
	if oldSortKey {
		v1 := ms[0]
		v1.stmts = append([]string(nil), v1.stmts...)
		v1.stmts[0] = strings.Replace(v1.stmts[0], "ORDER BY ("+eventsSortKey+")", "ORDER BY ("+eventsOldSortKey+")", 1)
		ms[0] = v1
	}
	key := shardingKeys[TableEvents]
	shardingKeys[TableEvents] = OldEventsShardingKey
	defer func() { shardingKeys[TableEvents] = key }()
	return migrateWith(ctx, conn, ddl{db: database, cluster: cluster}, 4, ms)
}

// ShardedBy is shardedBy.
func ShardedBy(engine, key string) bool { return shardedBy(engine, key) }
