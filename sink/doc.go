// Package sink stores every raw event in ClickHouse for analysts.
//
// It is the last stage of the pipeline: the collector writes events to Kafka
// topic "<prefix>events", the processor scores them and publishes threshold
// crossings on "<prefix>mql", and the sink consumes both topics in its own
// consumer group (default "clickhouse") and batch-inserts them into the
// tables events, identity_links and mql of one database (default
// "leadstream"). The schema, its migrations (run at sink start) and the
// connection settings live in package warehouse, which the read side
// (package analytics, `leadstream rescore`) shares; the sink only moves
// records from Kafka into ClickHouse.
//
// Delivery is at least once: offsets are committed only after a batch is in
// ClickHouse, and a failed batch is inserted again whole. Every table is a
// ReplacingMergeTree whose sort key comes from the record, so copies fold
// during merges; queries that must not see them before that use FINAL.
// Records that cannot be decoded or stored go to "<prefix>deadletter" as JSON
// {"source_topic","partition","offset","reason","value"}; none is dropped.
// "Cannot be stored" includes rows ClickHouse itself refuses for what they
// hold (warehouse.Refused): the batch is bisected down to those rows, each is
// tried alone maxRowTries times and dead-lettered with ClickHouse's reason,
// and the rest is inserted. Any other failure (ClickHouse down, a timeout,
// back-pressure, a missing table) is retried until it succeeds. One INSERT
// touches at most maxMonths months, so no batch hits modern ClickHouse's
// limit of 100 partitions per INSERT.
//
// The schema sticks to what both ClickHouse 18.16 (test machines) and 24+
// (production) accept, and the sink speaks the native protocol only.
//
// Metrics:
//
//	leadstream_sink_rows_total{table}                  rows inserted
//	leadstream_sink_insert_duration_seconds{table}     time per insert
//	leadstream_sink_insert_errors_total{table}         failed inserts (the batch is retried)
//	leadstream_sink_deadletter_total{topic}            records sent to the dead-letter topic
//
// plus the leadstream_kafka_* metrics of its consumer and dead-letter producer.
package sink
