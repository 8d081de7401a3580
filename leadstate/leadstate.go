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
	"strings"

	"github.com/leadstream/leadstream/internal/secretflag"
	"github.com/redis/go-redis/v9"
)

// Config holds the Redis connection settings shared by every role.
type Config struct {
	Addr     string
	Username string // ACL user; empty = the default user
	Password string
	DB       int
	// Cluster connects to a Redis Cluster through Addr even when it is one
	// address (a managed cluster's configuration endpoint).
	Cluster bool
	TLS     bool
	// TLS files: CA bundle to trust (empty = the system's), client
	// certificate and key for servers that require one.
	TLSCAFile, TLSCertFile, TLSKeyFile string
	// TLSServerName is the name the server's certificate must hold; empty =
	// the host dialled (each node's announced address in a cluster).
	TLSServerName string
}

// RegisterFlags registers redis.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "redis.addr", "", "Redis host:port; several comma-separated = Redis Cluster; empty in `dev` = start a local redis-server")
	fs.StringVar(&c.Username, "redis.username", "", "Redis ACL user; empty = the default user")
	secretflag.String(fs, &c.Password, "redis.password", "Redis password")
	fs.IntVar(&c.DB, "redis.db", 0, "Redis database number (single node only)")
	fs.BoolVar(&c.Cluster, "redis.cluster", false, "the server is a Redis Cluster, also when redis.addr is one address (a managed cluster's configuration endpoint)")
	fs.BoolVar(&c.TLS, "redis.tls", false, "connect to Redis with TLS")
	fs.StringVar(&c.TLSCAFile, "redis.tls.ca-file", "", "PEM file of the CA(s) that sign the Redis server's certificate; empty = the system's trusted CAs")
	fs.StringVar(&c.TLSCertFile, "redis.tls.cert-file", "", "PEM client certificate, for servers that require one (tls-auth-clients yes)")
	fs.StringVar(&c.TLSKeyFile, "redis.tls.key-file", "", "PEM private key of redis.tls.cert-file")
	fs.StringVar(&c.TLSServerName, "redis.tls.server-name", "", "name the Redis servers' certificates must hold; empty = the host dialled (a cluster's nodes are dialled at the addresses they announce, often IPs)")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if strings.TrimSpace(c.Addr) == "" {
		return errors.New("redis.addr is required")
	}
	if c.DB != 0 && (c.Cluster || len(splitAddrs(c.Addr)) > 1) {
		return errors.New("redis.db must be 0 for a Redis Cluster (it has only database 0)")
	}
	if err := c.tlsFiles().Validate(c.TLS); err != nil {
		return err
	}
	if c.TLS {
		if _, err := c.tlsFiles().Config(); err != nil {
			return err
		}
	}
	return nil
}

// Open connects to Redis (a cluster when several addresses are given or
// Cluster is set), with TLS and an ACL user when configured, and pings it.
// A failure names Redis, the address and the likely cause.
func Open(ctx context.Context, c Config) (redis.UniversalClient, error) {
	return open(ctx, c)
}
