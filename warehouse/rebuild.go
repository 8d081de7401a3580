package warehouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The events table's sort key decides which rows ReplacingMergeTree folds
// into one. Schema version 1 sorted by (type, event_time, event_id), so the
// copies of an event that differ in event_time — an SDK's resend, corrected
// again for clock skew with its new sentAt, lands a few milliseconds away —
// stayed two rows, and count() counted the event twice. The sort key is now
// (type, toDate(event_time), event_id): copies of an event id on the same
// day (and so in the same monthly partition) fold, whatever their
// milliseconds. A table created before keeps its old key until it is
// rebuilt (RebuildEvents, `leadstream migrate -rebuild-events`): ClickHouse
// cannot change a sort key in place, and copying a large table is the
// operator's decision, not something a sink does when it starts.
const (
	eventsSortKey    = "type, toDate(event_time), event_id"
	eventsOldSortKey = "type, event_time, event_id"
)

// Tables of a rebuild of events.
const (
	// tableEventsRebuild is the new table while it is filled.
	tableEventsRebuild = "events_rebuild"
	// TableEventsBeforeRebuild is the old table after the swap, until the
	// rows written to it during the copy are copied too.
	TableEventsBeforeRebuild = "events_before_rebuild"
	// TableEventsOldSortKey is the old table once every row is copied: kept
	// for the operator to check and drop.
	TableEventsOldSortKey = "events_old_sort_key"
)

// ErrEventsSortKey means the events table has a sort key this version does
// not know how to rebuild from.
var ErrEventsSortKey = errors.New("unexpected sort key of the events table")

// EventsSortKeyOutdated reports whether the events table still has schema
// version 1's sort key, so that resent copies of an event stay two rows
// until `leadstream migrate -rebuild-events` rebuilds it. In cluster mode it
// asks about this host's local table.
func EventsSortKeyOutdated(ctx context.Context, conn driver.Conn, database, cluster string) (bool, error) {
	r := rebuild{conn: conn, ddl: ddl{db: database, cluster: cluster}}
	key, err := r.sortKey(ctx, TableEvents)
	return key == eventsOldSortKey, err
}

// WarnOutdatedEventsKey logs a warning when the events table still has
// schema version 1's sort key (EventsSortKeyOutdated).
func WarnOutdatedEventsKey(ctx context.Context, conn driver.Conn, database, cluster string, log *slog.Logger) error {
	old, err := EventsSortKeyOutdated(ctx, conn, database, cluster)
	if err != nil || !old {
		return err
	}
	log.Warn("the events table has the sort key (type, event_time, event_id) of an older release: an SDK's resent event may be stored as two rows; rebuild it with `leadstream migrate -rebuild-events` (README \"Rebuilding the events table\")", "database", database)
	return nil
}

// RebuildResult says what RebuildEvents did.
type RebuildResult struct {
	Rebuilt    bool   // false: the sort key was current and nothing was left to copy
	Partitions int    // monthly partitions copied
	Rows       uint64 // rows read from the old table (copies included)
	Mutations  int    // erasure mutations run again on the new table
}

// tableRebuildState holds, on one server, what a rebuild must still do
// after its swap if it is stopped there: when its copy began and which
// mutations of the old table were pending then.
const tableRebuildState = "events_rebuild_state"

// RebuildEvents gives the events table the current sort key:
//
//  1. it creates a table with the new key and copies the old one into it
//     month by month while the sink goes on writing to the old one;
//  2. swaps the two names in one RENAME: the sink's next INSERT goes to the
//     new table;
//  3. waits until an INSERT that was writing to the old table at the swap
//     has finished (RebuildSettle: the sink's bound on a write), then copies
//     what the old table received since the copy began;
//  4. runs again on the new table the erasure mutations that may have
//     missed rows the copies carried: those the old table had pending when
//     the copy began or received since, and every one the new table
//     received (an erasure after the swap does not reach the rows the last
//     copy brings);
//  5. keeps the old table as events_old_sort_key (events_old_sort_key_local
//     on a cluster) for the operator to drop.
//
// Copies of an event id fold in the new table (query with FINAL before
// merges), so rows copied twice count once. Stopped before the swap, a new
// run starts over (the old table is intact); after it, a new run does steps
// 3–5 again from what the first one recorded (on one server, in
// events_rebuild_state; on a cluster, where leadstream runs no mutations, it
// copies the whole old table again). Queries see every row throughout.
// Retention should not run meanwhile: a month it drops from the old table
// after that month was copied stays in the new one until retention's next run.
func RebuildEvents(ctx context.Context, conn driver.Conn, database, cluster string, log *slog.Logger) (RebuildResult, error) {
	var res RebuildResult
	if err := CheckDatabase(database); err != nil {
		return res, err
	}
	if cluster != "" && !identifier.MatchString(cluster) {
		return res, fmt.Errorf("%w, got %q", ErrBadCluster, cluster)
	}
	r := rebuild{conn: conn, ddl: ddl{db: database, cluster: cluster}, log: log}
	key, err := r.sortKey(ctx, TableEvents)
	if err != nil {
		return res, err
	}
	switch key {
	case eventsSortKey:
		before, err := r.exists(ctx, TableEventsBeforeRebuild)
		if err != nil {
			return res, err
		}
		if !before {
			// Done, or never needed; a run stopped between its last
			// statements may have left a Distributed helper behind.
			return res, r.dropHelpers(ctx)
		}
		// Swapped by a run that stopped before it finished.
		st, err := r.readState(ctx)
		if err != nil {
			return res, err
		}
		log.Info("resuming an interrupted rebuild of events after its swap")
		if err := r.distributedOver(ctx, TableEventsBeforeRebuild); err != nil {
			return res, err
		}
		if err := r.finish(ctx, st, &res); err != nil {
			return res, err
		}
	case eventsOldSortKey:
		st, err := r.fill(ctx, &res)
		if err != nil {
			return res, err
		}
		if err := r.finish(ctx, st, &res); err != nil {
			return res, err
		}
	default:
		return res, fmt.Errorf("%w: %s.%s is sorted by (%s); this version rebuilds only from (%s)", ErrEventsSortKey, database, r.local(TableEvents), key, eventsOldSortKey)
	}
	res.Rebuilt = true
	// The old table's rows are all in the new one: name it for the operator.
	q := fmt.Sprintf("RENAME TABLE {db}.%s TO {db}.%s%s", r.local(TableEventsBeforeRebuild), r.local(TableEventsOldSortKey), r.onCluster())
	if err := r.exec(ctx, q); err != nil {
		return res, err
	}
	return res, r.dropHelpers(ctx)
}

// rebuildState is what the steps after the swap need: when the copy began
// (zero: unknown, copy everything) and the old table's mutations pending then.
type rebuildState struct {
	start   time.Time
	pending []string
}

// dropHelpers drops what a rebuild uses only while it runs: the state table
// and, on a cluster, the Distributed tables over the rebuilt and the old
// local tables.
func (r rebuild) dropHelpers(ctx context.Context) error {
	names := []string{tableRebuildState}
	if r.cluster != "" {
		names = []string{tableEventsRebuild, TableEventsBeforeRebuild}
	}
	for _, n := range names {
		if err := r.exec(ctx, "DROP TABLE IF EXISTS {db}."+n+r.onCluster()); err != nil {
			return err
		}
	}
	return nil
}

// testHookBeforeSwap, when set (tests), runs after the copy and before the
// swap; an error stops the rebuild there.
var testHookBeforeSwap func() error

// testHookAfterSwap, when set (tests), runs after the swap and before the
// copy of what the old table received meanwhile.
var testHookAfterSwap func() error

// rebuildSlack is how long before the copy's start a row's ingested_at or
// a mutation's create_time still counts as "during the copy": clocks of a
// cluster's hosts differ a little (tests shorten it).
var rebuildSlack = time.Minute

// RebuildSettle is how long RebuildEvents waits after its swap before the
// last copy: an INSERT that was writing to the old table may still be
// storing rows there until then, as the sink bounds each write on a
// ClickHouse connection by WriteTimeout (tests shorten it).
var RebuildSettle = WriteTimeout + 5*time.Second

type rebuild struct {
	ddl
	conn driver.Conn
	log  *slog.Logger
}

// fill builds the new table from the old one and swaps them.
func (r rebuild) fill(ctx context.Context, res *RebuildResult) (rebuildState, error) {
	var st rebuildState
	// A table of an interrupted run holds a partial copy: start over.
	if err := r.exec(ctx, "DROP TABLE IF EXISTS {db}."+tableEventsRebuild+r.onCluster()); err != nil {
		return st, err
	}
	if r.cluster != "" {
		if err := r.exec(ctx, "DROP TABLE IF EXISTS {db}."+tableEventsRebuild+LocalSuffix+r.onCluster()); err != nil {
			return st, err
		}
	}
	if err := r.createNew(ctx); err != nil {
		return st, err
	}
	// Rows the sink writes to the old table from here on are copied again
	// after the swap; ingested_at is the server's now() of their INSERT.
	if err := r.conn.QueryRow(ctx, "SELECT now()").Scan(&st.start); err != nil {
		return st, fmt.Errorf("reading the server's time: %w", err)
	}
	st.start = st.start.Add(-rebuildSlack)
	// Erasures still running when the copy begins may not have reached the
	// rows it reads: they are run again too.
	var err error
	if st.pending, err = r.mutations(ctx, "mutation_id", TableEvents, "is_done = 0"); err != nil {
		return st, err
	}
	if err := r.writeState(ctx, st); err != nil {
		return st, err
	}
	if err := r.copyMonths(ctx, TableEvents, tableEventsRebuild, "", res); err != nil {
		return st, err
	}
	if testHookBeforeSwap != nil {
		if err := testHookBeforeSwap(); err != nil {
			return st, err
		}
	}
	q := fmt.Sprintf("RENAME TABLE {db}.%s TO {db}.%s, {db}.%s TO {db}.%s%s",
		r.local(TableEvents), r.local(TableEventsBeforeRebuild), r.local(tableEventsRebuild), r.local(TableEvents), r.onCluster())
	if err := r.exec(ctx, q); err != nil {
		return st, err
	}
	r.log.Info("events swapped: the sink now writes to the rebuilt table")
	if r.cluster != "" {
		// The Distributed events names events_local, now the new table;
		// events_rebuild names a table that no longer exists.
		if err := r.exec(ctx, "DROP TABLE IF EXISTS {db}."+tableEventsRebuild+r.onCluster()); err != nil {
			return st, err
		}
		if err := r.distributedOver(ctx, TableEventsBeforeRebuild); err != nil {
			return st, err
		}
	}
	if testHookAfterSwap != nil {
		if err := testHookAfterSwap(); err != nil {
			return st, err
		}
	}
	return st, nil
}

// finish copies into the new table what the old one received since st.start
// (all of it when st.start is zero) once writes in flight at the swap have
// ended, and runs the erasures again that may have missed rows copied.
func (r rebuild) finish(ctx context.Context, st rebuildState, res *RebuildResult) error {
	r.log.Info("waiting for inserts in flight at the swap to end", "wait", RebuildSettle)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(RebuildSettle):
	}
	since := ""
	if !st.start.IsZero() {
		since = "ingested_at >= toDateTime(" + fmt.Sprint(st.start.Unix()) + ")"
	}
	r.log.Info("copying what the old events table received during the copy")
	if err := r.copyMonths(ctx, TableEventsBeforeRebuild, TableEvents, since, res); err != nil {
		return err
	}
	return r.reapplyMutations(ctx, st, res)
}

// createNew creates events_rebuild like events, with the new sort key.
func (r rebuild) createNew(ctx context.Context) error {
	rest := "PARTITION BY toYYYYMM(event_time) ORDER BY (" + eventsSortKey + ")"
	if r.cluster == "" {
		return r.exec(ctx, "CREATE TABLE {db}."+tableEventsRebuild+" AS {db}."+TableEvents+" ENGINE = ReplacingMergeTree() "+rest)
	}
	local := tableEventsRebuild + LocalSuffix
	q := fmt.Sprintf("CREATE TABLE {db}.%s%s AS {db}.%s ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{db}/%s', '{replica}') %s",
		local, r.onCluster(), r.local(TableEvents), local, rest)
	if err := r.exec(ctx, q); err != nil {
		return err
	}
	return r.distributedOver(ctx, tableEventsRebuild)
}

// distributedOver creates, on a cluster, the Distributed table name over
// name_local, sharded as events (a no-op on one server).
func (r rebuild) distributedOver(ctx context.Context, name string) error {
	if r.cluster == "" {
		return nil
	}
	return r.exec(ctx, r.distributed(table{name: name, key: shardingKeys[TableEvents]}))
}

// copyMonths inserts from's rows (those matching where, if not "") into
// to, one monthly partition per INSERT … SELECT.
func (r rebuild) copyMonths(ctx context.Context, from, to, where string, res *RebuildResult) error {
	cond := ""
	if where != "" {
		cond = " WHERE " + where
	}
	rows, err := r.conn.Query(ctx, "SELECT toYYYYMM(event_time) AS m, count() FROM "+r.db+"."+from+cond+" GROUP BY m ORDER BY m")
	if err != nil {
		return fmt.Errorf("listing the months of %s.%s: %w", r.db, from, err)
	}
	type month struct {
		m uint32
		n uint64
	}
	var months []month
	for rows.Next() {
		var m month
		if err := rows.Scan(&m.m, &m.n); err != nil {
			rows.Close()
			return fmt.Errorf("listing the months of %s.%s: %w", r.db, from, err)
		}
		months = append(months, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing the months of %s.%s: %w", r.db, from, err)
	}
	for _, m := range months {
		sel := fmt.Sprintf("toYYYYMM(event_time) = %d", m.m)
		if where != "" {
			sel += " AND " + where
		}
		began := time.Now()
		q := fmt.Sprintf("INSERT INTO {db}.%s SELECT * FROM {db}.%s WHERE %s", to, from, sel)
		if err := exec(ctx, r.conn, r.db, q); err != nil {
			return fmt.Errorf("copying month %d of %s.%s: %w", m.m, r.db, from, err)
		}
		res.Partitions++
		res.Rows += m.n
		r.log.Info("copied a month of events", "from", from, "to", to, "month", m.m, "rows", m.n, "took", time.Since(began).Round(time.Millisecond))
	}
	return nil
}

// reapplyMutations runs again on the new table the mutations (erasures)
// that may have missed rows the copies carried into it: the old table's
// pending when the copy began (st.pending) or created since (st.start), and
// the new table's own (it exists since the copy began: an erasure after the
// swap did not reach the rows the last copy brought). Each runs once more
// only: 18.16 rewrites every part of a table for a mutation. On a cluster
// leadstream runs no mutations (Config.SingleServer).
func (r rebuild) reapplyMutations(ctx context.Context, st rebuildState, res *RebuildResult) error {
	if r.cluster != "" {
		return nil
	}
	old, err := r.mutations(ctx, "command", TableEventsBeforeRebuild, "create_time >= ? OR mutation_id IN ?", st.start, idSet(append(st.pending, "")))
	if err != nil {
		return err
	}
	own, err := r.mutations(ctx, "command", TableEvents, "1")
	if err != nil {
		return err
	}
	cmds := append(old, own...)
	for i, c := range cmds {
		// The command names erased ids: never in an error or a log.
		if err := r.conn.Exec(ctx, "ALTER TABLE "+r.db+"."+TableEvents+" "+c); err != nil {
			return fmt.Errorf("running erasure mutation %d of %d again on the rebuilt %s.%s: %w", i+1, len(cmds), r.db, TableEvents, queryError(err))
		}
		res.Mutations++
	}
	return nil
}

// writeState records st in events_rebuild_state (one server).
func (r rebuild) writeState(ctx context.Context, st rebuildState) error {
	if r.cluster != "" {
		return nil
	}
	for _, q := range []string{
		"DROP TABLE IF EXISTS {db}." + tableRebuildState,
		"CREATE TABLE {db}." + tableRebuildState + " (start DateTime, pending Array(String)) ENGINE = TinyLog",
	} {
		if err := r.exec(ctx, q); err != nil {
			return err
		}
	}
	// INSERT … SELECT: 18.16 waits for a data block after INSERT … VALUES.
	q := "INSERT INTO " + r.db + "." + tableRebuildState + " SELECT toDateTime(?), ?"
	if err := r.conn.Exec(ctx, q, st.start.Unix(), append([]string{}, st.pending...)); err != nil {
		return fmt.Errorf("recording the rebuild's start in %s.%s: %w", r.db, tableRebuildState, err)
	}
	return nil
}

// readState returns what the interrupted run recorded; on a cluster, or
// without a record, a zero start: copy all of the old table again.
func (r rebuild) readState(ctx context.Context) (rebuildState, error) {
	var st rebuildState
	if r.cluster != "" {
		return st, nil
	}
	ok, err := r.exists(ctx, tableRebuildState)
	if err != nil || !ok {
		return st, err
	}
	if err := r.conn.QueryRow(ctx, "SELECT start, pending FROM "+r.db+"."+tableRebuildState+" LIMIT 1").Scan(&st.start, &st.pending); err != nil {
		return st, fmt.Errorf("reading %s.%s: %w", r.db, tableRebuildState, err)
	}
	return st, nil
}

// mutations returns column col (mutation_id, command) of the mutations of
// table on this server that match cond with args, oldest first.
func (r rebuild) mutations(ctx context.Context, col, table, cond string, args ...any) ([]string, error) {
	if r.cluster != "" {
		return nil, nil
	}
	rows, err := r.conn.Query(ctx, "SELECT "+col+" FROM system.mutations WHERE database = ? AND table = ? AND ("+cond+") ORDER BY create_time, mutation_id",
		append([]any{r.db, table}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("reading the mutations of %s.%s: %w", r.db, table, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("reading the mutations of %s.%s: %w", r.db, table, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the mutations of %s.%s: %w", r.db, table, err)
	}
	return out, nil
}

// sortKey returns the sort key of table (its local part on a cluster) on
// this host, as system.tables spells it.
func (r rebuild) sortKey(ctx context.Context, table string) (string, error) {
	var key string
	err := r.conn.QueryRow(ctx, "SELECT sorting_key FROM system.tables WHERE database = ? AND name = ?", r.db, r.local(table)).Scan(&key)
	if err != nil {
		return "", fmt.Errorf("reading the sort key of %s.%s: %w", r.db, r.local(table), err)
	}
	return strings.TrimSpace(key), nil
}

// exists reports whether table (its local part on a cluster) is on this host.
func (r rebuild) exists(ctx context.Context, table string) (bool, error) {
	return hasTable(ctx, r.conn, r.db, r.local(table))
}

func (r rebuild) exec(ctx context.Context, q string) error { return exec(ctx, r.conn, r.db, q) }

// local is the name of table's rows on this host: table_local on a cluster.
func (r rebuild) local(table string) string {
	if r.cluster != "" {
		return table + LocalSuffix
	}
	return table
}

func (r rebuild) onCluster() string {
	if r.cluster != "" {
		return " ON CLUSTER " + r.cluster
	}
	return ""
}
