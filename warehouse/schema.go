package warehouse

import (
	"context"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DefaultDatabase is the database leadstream's tables live in unless configured otherwise.
const DefaultDatabase = "leadstream"

// Table names inside the database.
const (
	TableEvents         = "events"
	TableIdentityLinks  = "identity_links"
	TableMQL            = "mql"
	TableCampaignCosts  = "campaign_costs"
	TableAccountMembers = "account_members"
	TableMQA            = "mqa"
	TableNotifications  = "notifications"
	tableMigrations     = "schema_migrations"
)

// migration is one schema version. {db} in a statement stands for the database.
//
// Versions are applied in order and recorded in schema_migrations afterwards,
// so a crash in between re-runs the whole version: every statement must be
// idempotent. ClickHouse 18.16 has no ALTER ... ADD COLUMN IF NOT EXISTS, so
// a version adds columns through addColumns, which checks system.columns
// first (after stmts).
//
// Only DDL that both ClickHouse 18.16 (test machines) and 24+ (production)
// accept: no Map, JSON, DateTime64, TTL, CODEC or LowCardinality.
//
// Write a table once, for one server, as "CREATE TABLE IF NOT EXISTS
// {db}.name (…) ENGINE = …MergeTree(…) …": in cluster mode
// (clickhouse.cluster) it becomes replicated local tables and a Distributed
// table of the same name (cluster.go), sharded by its sort key unless
// shardingKeys says otherwise. Statements of other forms fail in cluster mode.
type migration struct {
	version    uint32
	stmts      []string
	addColumns []column
	// distributed names tables whose Distributed table is created again
	// with its current sharding key (shardingKeys), in cluster mode, after
	// the key changed; one server has nothing to do.
	distributed []string
}

// column is a column a migration adds to an existing table. Rows written
// before it read its type's default (empty string, 0): event.Fields' empty values.
type column struct {
	table, name, typ string
}

var migrations = []migration{{version: 1, stmts: []string{
	// One row per accepted event. A replayed event has the same sort key, so
	// merges (and FINAL) keep one copy; so does an SDK's resend whose
	// event time moved by a few milliseconds (the sort key has the day, not
	// the time: rebuild.go, which also rebuilds a table created with
	// (type, event_time, event_id) before). event_time_ms keeps the millisecond
	// that DateTime drops, so a replay from ClickHouse is exact. bot and
	// bot_reason are reserved for bot detection; the sink writes 0 and ''.
	`CREATE TABLE IF NOT EXISTS {db}.events (
		event_id String,
		type String,
		event_time DateTime,
		event_time_ms UInt64,
		received_at DateTime,
		anonymous_id String,
		lead_id String,
		previous_id String,
		write_key_id String,
		campaign String,
		utm_source String,
		utm_medium String,
		utm_campaign String,
		utm_term String,
		utm_content String,
		url String,
		path String,
		referrer String,
		title String,
		track String,
		properties String,
		traits String,
		revenue Decimal(18, 4),
		currency String,
		ip String,
		user_agent String,
		bot UInt8 DEFAULT 0,
		bot_reason String DEFAULT '',
		ingested_at DateTime DEFAULT now()
	) ENGINE = ReplacingMergeTree()
	PARTITION BY toYYYYMM(event_time)
	ORDER BY (type, toDate(event_time), event_id)`,

	// anonymous id -> lead id, from events carrying both and from alias
	// events (previous_id -> lead_id). One row per pair survives merges.
	`CREATE TABLE IF NOT EXISTS {db}.identity_links (
		anonymous_id String,
		lead_id String,
		linked_at DateTime,
		event_id String
	) ENGINE = ReplacingMergeTree()
	ORDER BY (anonymous_id, lead_id)`,

	// Threshold crossings from the mql topic; mql_id is deterministic, so a
	// redelivered crossing collapses into the first.
	`CREATE TABLE IF NOT EXISTS {db}.mql (
		mql_id String,
		lead_id String,
		model String,
		score Float64,
		threshold Float64,
		crossed_at DateTime,
		crossed_at_ms UInt64,
		trigger_event_id String,
		reasons Nested(rule String, points Float64)
	) ENGINE = ReplacingMergeTree()
	PARTITION BY toYYYYMM(crossed_at)
	ORDER BY (model, lead_id, mql_id)`,

	// Spend per campaign, day and channel for ROMI; a re-import of a day
	// replaces the older figure.
	`CREATE TABLE IF NOT EXISTS {db}.campaign_costs (
		campaign String,
		day Date,
		channel String,
		cost Decimal(18, 4),
		currency String,
		imported_at DateTime
	) ENGINE = ReplacingMergeTree(imported_at)
	ORDER BY (campaign, day, channel)`,
}}, {version: 2, addColumns: []column{
	// The Segment call as the client sent it: its own timestamp before the
	// clock-skew correction (0 when it gave none), its context (merged with
	// its batch's) and integrations objects as JSON text.
	{TableEvents, "original_timestamp", "DateTime"},
	{TableEvents, "original_timestamp_ms", "UInt64"},
	{TableEvents, "context", "String"},
	{TableEvents, "integrations", "String"},
}}, {version: 3, stmts: []string{
	// Account membership history: one row per group call (and, with
	// accounts.from-email-domain, per identify with a work e-mail), so a
	// lead's account at any time is its latest row; a move is a new row.
	`CREATE TABLE IF NOT EXISTS {db}.account_members (
		account_id String,
		lead_id String,
		anonymous_id String,
		source String,
		joined_at DateTime,
		joined_at_ms UInt64,
		event_id String
	) ENGINE = ReplacingMergeTree()
	PARTITION BY toYYYYMM(joined_at)
	ORDER BY (lead_id, anonymous_id, joined_at_ms, event_id)`,

	// Account threshold crossings from the mqa topic; mqa_id is
	// deterministic, so a redelivered crossing collapses into the first.
	`CREATE TABLE IF NOT EXISTS {db}.mqa (
		mqa_id String,
		account_id String,
		model String,
		score Float64,
		threshold Float64,
		crossed_at DateTime,
		crossed_at_ms UInt64,
		trigger_event_id String,
		engaged_members UInt32,
		reasons Nested(rule String, points Float64),
		top_members Nested(lead_id String, points Float64)
	) ENGINE = ReplacingMergeTree()
	PARTITION BY toYYYYMM(crossed_at)
	ORDER BY (model, account_id, mqa_id)`,
}, addColumns: []column{
	// The account of a group call (Segment groupId).
	{TableEvents, "group_id", "String"},
}}, {version: 4, stmts: []string{
	// Every delivery attempt of the notifier (package notify): which
	// destination, which record (mql_id, or mqa_id for kind mqa), the attempt
	// number, its status (delivered, retry, rejected, expired, interrupted),
	// the HTTP status or SMTP reply code, the error and the latency. A
	// retried INSERT has the same sort keys, so its rows collapse.
	`CREATE TABLE IF NOT EXISTS {db}.notifications (
		destination String,
		kind String,
		mql_id String,
		subject_id String,
		model String,
		attempt UInt32,
		status String,
		http_status UInt16,
		error String,
		latency_ms UInt32,
		attempted_at DateTime,
		attempted_at_ms UInt64
	) ENGINE = ReplacingMergeTree()
	PARTITION BY toYYYYMM(attempted_at)
	ORDER BY (destination, mql_id, attempted_at_ms, attempt)`,
}}, {version: 5, distributed: []string{
	// Cluster mode: events sharded by event_id instead of the visitor's or
	// lead's id, so that two copies of one event id with different
	// anonymous ids (an email click from two browsers in one hour) are on
	// one shard, where FINAL folds them (cluster.go, shardingKeys). Rows
	// stored before stay on the shard of the old key.
	TableEvents,
}}}

// Migrate creates the database and brings its tables to the latest schema version
// on one server. It is idempotent and safe to run from several processes at once.
func Migrate(ctx context.Context, conn driver.Conn, database string) error {
	return MigrateCluster(ctx, conn, database, "")
}

// MigrateCluster is Migrate on the ClickHouse cluster named cluster (as
// Config.Cluster; "" = one server): every statement runs ON CLUSTER, each
// table as replicated local tables under a Distributed table (see
// cluster.go). Every host must be up while a version is applied.
func MigrateCluster(ctx context.Context, conn driver.Conn, database, cluster string) error {
	if cluster != "" && !identifier.MatchString(cluster) {
		return fmt.Errorf("%w, got %q", ErrBadCluster, cluster)
	}
	return migrate(ctx, conn, ddl{db: database, cluster: cluster}, migrations[len(migrations)-1].version)
}

// migrate brings d's database to schema version upTo (tests start from older ones).
func migrate(ctx context.Context, conn driver.Conn, d ddl, upTo uint32) error {
	return migrateWith(ctx, conn, d, upTo, migrations)
}

// migrateWith is migrate with the versions ms (tests: as an older release
// wrote them).
func migrateWith(ctx context.Context, conn driver.Conn, d ddl, upTo uint32, ms []migration) error {
	database := d.db
	if err := CheckDatabase(database); err != nil {
		return err
	}
	boot := []string{
		"CREATE DATABASE IF NOT EXISTS {db}",
		// ReplacingMergeTree: two processes migrating at once both record a version.
		`CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, applied_at DateTime)
		ENGINE = ReplacingMergeTree() ORDER BY version`,
	}
	if d.cluster != "" {
		if ok, err := hasMigrations(ctx, conn, database); err != nil {
			return err
		} else if ok {
			boot = nil
		}
	}
	for _, q := range boot {
		if err := d.exec(ctx, conn, q); err != nil {
			return err
		}
	}
	var applied uint32
	// max() over no rows is 0 in ClickHouse.
	if err := conn.QueryRow(ctx, "SELECT max(version) FROM "+database+"."+tableMigrations).Scan(&applied); err != nil {
		return fmt.Errorf("reading schema version of %s: %w", database, err)
	}
	for _, m := range ms {
		if m.version <= applied || m.version > upTo {
			continue
		}
		for _, q := range m.stmts {
			if err := d.exec(ctx, conn, q); err != nil {
				return fmt.Errorf("migrating %s to version %d: %w", database, m.version, err)
			}
		}
		for _, c := range m.addColumns {
			if err := d.addColumn(ctx, conn, c); err != nil {
				return fmt.Errorf("migrating %s to version %d: %w", database, m.version, err)
			}
		}
		for _, name := range m.distributed {
			if err := d.redistribute(ctx, conn, name); err != nil {
				return fmt.Errorf("migrating %s to version %d: %w", database, m.version, err)
			}
		}
		// INSERT ... SELECT, not VALUES: over the native protocol ClickHouse
		// 18.16 waits for a data block after an INSERT ... VALUES from Exec,
		// and the call hangs until its read timeout.
		q := fmt.Sprintf("INSERT INTO {db}.schema_migrations (version, applied_at) SELECT %d, now()", m.version)
		if err := exec(ctx, conn, database, q); err != nil {
			return fmt.Errorf("recording schema version %d of %s: %w", m.version, database, err)
		}
	}
	return nil
}

// exec runs one migration statement in d's mode.
func (d ddl) exec(ctx context.Context, conn driver.Conn, stmt string) error {
	qs, err := d.statements(stmt)
	if err != nil {
		return err
	}
	for _, q := range qs {
		if err := exec(ctx, conn, d.db, q); err != nil {
			return err
		}
	}
	return nil
}

// addColumn adds c unless the table has it already; onCluster (" ON
// CLUSTER name") makes it an ALTER of every host. Two processes migrating
// at once may both find it missing: the ALTER that loses the race fails,
// and the column being there by then is success.
func addColumn(ctx context.Context, conn driver.Conn, database string, c column, onCluster ...string) error {
	if ok, err := hasColumn(ctx, conn, database, c); err != nil || ok {
		return err
	}
	err := exec(ctx, conn, database, fmt.Sprintf("ALTER TABLE {db}.%s%s ADD COLUMN %s %s", c.table, strings.Join(onCluster, ""), c.name, c.typ))
	if err != nil {
		if ok, herr := hasColumn(ctx, conn, database, c); herr == nil && ok {
			return nil
		}
	}
	return err
}

// hasColumn reports whether c's table has c on this host.
func hasColumn(ctx context.Context, conn driver.Conn, database string, c column) (bool, error) {
	var n uint64
	err := conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?", database, c.table, c.name).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("reading the columns of %s.%s: %w", database, c.table, err)
	}
	return n > 0, nil
}

func exec(ctx context.Context, conn driver.Conn, database, q string) error {
	q = strings.ReplaceAll(q, "{db}", database)
	if err := conn.Exec(ctx, q); err != nil {
		return fmt.Errorf("running %q: %w", firstLine(q), err)
	}
	return nil
}

func firstLine(q string) string {
	if i := strings.IndexByte(q, '\n'); i >= 0 {
		return q[:i]
	}
	return q
}
