// Package leadstate keeps every lead's, visitor's and account's scoring state in Redis:
// the state value scoring.Core computes (package scoring), the event ids
// applied (dedup) and the MQL outbox.
//
// Redis does no scoring: the processor reads states, computes new ones with
// scoring.Core.Plan, and stores each with one compare-and-set script (Commit)
// that also records the applied event ids and the new MQL records, and fails
// when the state changed meanwhile or an id was applied already. The
// collector's lead API reads through ReadLead.
//
// Key layout. H is the first 16 bytes of the SHA-256 of the id, in hex, so
// any string is a valid id, no id can break the hash tag or reach another
// subject's keys, lead and visitor namespaces cannot meet, and no e-mail
// address appears in a key name. All keys of a subject share its hash tag,
// and no script touches two subjects, so it runs on Redis Cluster.
//
//	ls2:{l:H}:s     STRING  8-byte version + encoded scoring.State (codec.go); leads never expire
//	ls2:{a:H}:s     STRING  a visitor's: expires processor.anonymous-ttl after its last write or use
//	ls2:{c:H}:s     STRING  an account's (traits, fit, MQA flags, one entry per member); never expires
//	ls2:{T}:d:<b>   SET     event ids applied (their 64-bit hashes) with event time in dedup bucket b (see
//	                        scoring.Core.Bucket); expires at scoring.Core.BucketExpiry(b)
//	ls2:{T}:o       HASH    mql_id -> pending MQL record (JSON), until Kafka acknowledged it;
//	                        an account's: mqa_id -> pending MQA record
//
// Keys of the first layout (ls:{...}) are not read; `leadstream rescore
// -apply` rebuilds the state from ClickHouse and deletes them.
package leadstate

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Config holds the Redis connection settings shared by every role.
type Config struct {
	Addr     string
	Password string
	DB       int
}

// RegisterFlags registers redis.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "redis.addr", "", "Redis host:port; several comma-separated = Redis Cluster; empty in `dev` = start a local redis-server")
	fs.StringVar(&c.Password, "redis.password", "", "Redis password")
	fs.IntVar(&c.DB, "redis.db", 0, "Redis database number (single node only)")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if strings.TrimSpace(c.Addr) == "" {
		return errors.New("redis.addr is required")
	}
	return nil
}

// Open connects to Redis (a cluster when several addresses are given) and pings it.
func Open(ctx context.Context, c Config) (redis.UniversalClient, error) {
	var addrs []string
	for _, a := range strings.Split(c.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	opts := &redis.UniversalOptions{Addrs: addrs, Password: c.Password, DB: c.DB}
	var rdb redis.UniversalClient
	if len(addrs) > 1 {
		rdb = redis.NewClusterClient(opts.Cluster())
	} else {
		rdb = redis.NewClient(opts.Simple())
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("connecting to redis at %s: %w", c.Addr, err)
	}
	return rdb, nil
}
