package warehouse

import (
	"context"

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
