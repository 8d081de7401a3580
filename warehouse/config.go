package warehouse

import (
	"context"
	"flag"
	"fmt"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadstream/leadstream/stream"
)

// Config says how to reach ClickHouse. Every role and tool that reads or
// writes ClickHouse registers it (the sink, migrate, report, rescore,
// costs import), so its flags are registered by the caller.
type Config struct {
	Addr        string // native protocol host:port; a comma-separated list fails over
	Database    string
	Username    string
	Password    string
	DialTimeout time.Duration
	// Cluster names the ClickHouse cluster (remote_servers) the schema lives
	// on: replicated local tables under Distributed ones (cluster.go).
	// Empty = one server.
	Cluster string
}

// RegisterFlags registers clickhouse.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "clickhouse.addr", "", "ClickHouse native protocol address host:port (comma-separated for several); empty in `dev` = local clickhouse-server")
	fs.StringVar(&c.Database, "clickhouse.database", DefaultDatabase, "ClickHouse database holding leadstream's tables")
	fs.StringVar(&c.Username, "clickhouse.username", "default", "ClickHouse user")
	fs.StringVar(&c.Password, "clickhouse.password", "", "ClickHouse password")
	fs.DurationVar(&c.DialTimeout, "clickhouse.dial-timeout", 5*time.Second, "timeout for connecting to ClickHouse")
	fs.StringVar(&c.Cluster, "clickhouse.cluster", "", "ClickHouse cluster (remote_servers name) holding the schema: replicated tables under Distributed ones, DDL ON CLUSTER; empty = one server")
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// CheckDatabase returns ErrBadDatabase unless name is a plain identifier,
// the only database names leadstream splices into SQL.
func CheckDatabase(name string) error {
	if !identifier.MatchString(name) {
		return fmt.Errorf("%w, got %q", ErrBadDatabase, name)
	}
	return nil
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if len(stream.SplitList(c.Addr)) == 0 {
		return ErrNoAddr
	}
	if err := CheckDatabase(c.Database); err != nil {
		return err
	}
	if c.Cluster != "" && !identifier.MatchString(c.Cluster) {
		return fmt.Errorf("%w, got %q", ErrBadCluster, c.Cluster)
	}
	if c.DialTimeout < 0 {
		return fmt.Errorf("clickhouse.dial-timeout must not be negative, got %s", c.DialTimeout)
	}
	return nil
}

// Open connects to ClickHouse over the native protocol and pings it.
//
// The native protocol is required: clickhouse-go's HTTP mode does not work
// with the ClickHouse 18.16 of the test machines.
func Open(ctx context.Context, c Config) (driver.Conn, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:     stream.SplitList(c.Addr),
		Protocol: clickhouse.Native,
		// No Auth.Database: it may not exist yet (Migrate creates it), so the
		// session uses the server's default one and every table name is qualified.
		Auth:        clickhouse.Auth{Username: c.Username, Password: c.Password},
		DialTimeout: c.DialTimeout,
		// Insert blocks are large and repetitive (URLs, UTM values); LZ4 cuts
		// the bytes on the wire several-fold for little CPU.
		Compression: &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		Settings:    c.clusterSettings(),
	})
	if err != nil {
		return nil, fmt.Errorf("opening clickhouse at %s: %w", c.Addr, err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connecting to clickhouse at %s: %w", c.Addr, err)
	}
	return conn, nil
}
