// Package analytics is the read side of ClickHouse for people: leadstream's
// documented analytics SQL and the reports built on it (`leadstream report`).
// It only reads the tables the sink writes (package warehouse holds their
// schema).
//
// The SQL: the funnel, MQL velocity, score bands, campaign performance and
// ROMI queries, one file each in sql/, which analysts run as they are in
// clickhouse-client against database "leadstream". The files are embedded
// into the binary, so the README, the analyst and the program run the same
// text. ClickHouse 18.16 (the test machines) has no server-side query
// parameters, so a file carries its filters as ordinary literals tagged with
// a comment, valid SQL as they stand and meaning "no filter":
//
//	toDate('2000-01-01') /*from*/    first day of the period
//	toDate('2100-12-31') /*to*/      last day of the period (inclusive)
//	'' /*campaign*/                  campaign filter ('' = all campaigns)
//
// An analyst edits the literals; Bind replaces them, and the database name,
// for programs. The queries are written against what both ClickHouse 18.16
// and 24+ accept: no window functions, one JOIN per SELECT, ANY LEFT / ALL
// INNER / CROSS joins with USING, FINAL on every table (the sink may insert a
// batch twice), and every subquery column a lambda uses also named outside
// the lambda (18.16 drops it otherwise: "Unknown identifier").
//
// The reports: a Reporter runs the queries and renders their results as
// aligned text tables, CSV, JSON, and one self-contained HTML page with
// inline SVG charts (the funnel, ROMI per campaign, MQLs per week). Their
// numbers are those an analyst gets by running the same files in
// clickhouse-client, because the same text is sent.
package analytics
