// Package warehouse is the ClickHouse side of leadstream that every reader
// and writer shares: the connection settings (clickhouse.* flags) and Open,
// the schema and its migrations (Migrate, run by the sink at start and by
// `leadstream migrate`), the layout of the events table derived from
// event.Fields (EventColumns), the generic column-wise Insert, the History
// reader that `leadstream rescore` replays, and the import of campaign costs
// for ROMI (`leadstream costs import`).
//
// The sink (Kafka → ClickHouse) writes through it; package analytics (the
// documented SQL and reports) reads the same tables.
//
// The schema sticks to what both ClickHouse 18.16 (test machines) and 24+
// (production) accept, and only the native protocol is used.
package warehouse
