// Package scoring decides how many points an event is worth to a lead. It
// holds the scoring rules (parsed from a YAML rules file; default_rules.yaml
// documents the format), matches events against them, evaluates fit rules
// over identify traits, and defines the decay math of a score.
//
// How it fits: the processor loads Rules once at start (Load, or Default),
// runs Model.Match for every event against every model, and applies the hits
// to per-lead state in Redis using the same decay math defined here (Add,
// ValueAt, CapWindow). Because Add is commutative, a lead's score depends only
// on the set of events it received, not on the order they arrived in, so
// replays, late events and partition rebalances all converge on one number.
// Fit points (FitPoints) are a separate, non-decaying part of the score.
//
// The package is pure: apart from Load reading the rules file it does no I/O,
// talks to no Redis or Kafka, and never reads the clock. Every time is an
// argument (Unix milliseconds of event time), which keeps scoring
// deterministic and lets tests and backfills reproduce production numbers.
package scoring
