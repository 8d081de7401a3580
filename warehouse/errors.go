package warehouse

import "errors"

var (
	// ErrNoAddr means clickhouse.addr is empty.
	ErrNoAddr = errors.New("clickhouse.addr is required")
	// ErrBadDatabase means the database name is not a plain identifier
	// ([A-Za-z_][A-Za-z0-9_]*); it is spliced into DDL, so nothing else is allowed.
	ErrBadDatabase = errors.New("clickhouse database name must match [A-Za-z_][A-Za-z0-9_]*")
	// ErrBadCosts means a costs CSV file has bad lines; the error is a
	// *CostsError that names each line and field. Nothing was imported.
	ErrBadCosts = errors.New("bad costs file")
	// ErrBadCluster means clickhouse.cluster is not a plain identifier; it is
	// spliced into DDL (ON CLUSTER, Distributed) like the database name.
	ErrBadCluster = errors.New("clickhouse cluster name must match [A-Za-z_][A-Za-z0-9_]*")
	// ErrClusterDDL means a migration statement has no cluster form: in
	// cluster mode a migration may only create the database, create tables
	// as "CREATE TABLE IF NOT EXISTS {db}.name (…) ENGINE = …MergeTree(…) …"
	// and add columns (migration.addColumns).
	ErrClusterDDL = errors.New("migration statement not supported in cluster mode")
	// ErrClusterSettings means the server cannot serve cluster mode as
	// configured: it does not know clickhouse.cluster, or the user's profile
	// does not run subqueries over Distributed tables GLOBAL.
	ErrClusterSettings = errors.New("clickhouse is not set up for cluster mode")
	// ErrClusterUnsupported means an operation is not available in cluster
	// mode yet (Config.SingleServer).
	ErrClusterUnsupported = errors.New("not supported with a clickhouse cluster yet")
)
