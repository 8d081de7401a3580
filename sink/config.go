package sink

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadstream/leadstream/stream"
)

// ClickHouseConfig says how to reach ClickHouse. It is shared by the sink and
// by `leadstream migrate`, so its flags are registered by the caller.
type ClickHouseConfig struct {
	Addr        string // native protocol host:port; a comma-separated list fails over
	Database    string
	Username    string
	Password    string
	DialTimeout time.Duration
}

// RegisterFlags registers clickhouse.* flags.
func (c *ClickHouseConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "clickhouse.addr", "", "ClickHouse native protocol address host:port (comma-separated for several); empty in `dev` = local clickhouse-server")
	fs.StringVar(&c.Database, "clickhouse.database", "leadstream", "ClickHouse database holding leadstream's tables")
	fs.StringVar(&c.Username, "clickhouse.username", "default", "ClickHouse user")
	fs.StringVar(&c.Password, "clickhouse.password", "", "ClickHouse password")
	fs.DurationVar(&c.DialTimeout, "clickhouse.dial-timeout", 5*time.Second, "timeout for connecting to ClickHouse")
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks the configuration.
func (c *ClickHouseConfig) Validate() error {
	if len(stream.SplitList(c.Addr)) == 0 {
		return ErrNoAddr
	}
	if !identifier.MatchString(c.Database) {
		return fmt.Errorf("%w, got %q", ErrBadDatabase, c.Database)
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
func Open(ctx context.Context, c ClickHouseConfig) (driver.Conn, error) {
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

// Config configures the sink.
type Config struct {
	Kafka      stream.Config    // flags registered by the caller
	ClickHouse ClickHouseConfig // flags registered by the caller
	// BatchSize is the most records one insert carries; FlushInterval is the
	// longest a record waits for its batch to fill.
	BatchSize     int
	FlushInterval time.Duration
	Group         string // Kafka consumer group
}

// RegisterFlags registers sink.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	// ClickHouse prefers few large inserts: each insert makes a part that
	// background merges must fold in, so ~10k rows per second is a good pace.
	fs.IntVar(&c.BatchSize, "sink.batch-size", 50000, "most Kafka records per ClickHouse insert (one INSERT per batch; ClickHouse writes a part per INSERT, so larger is cheaper for it)")
	fs.DurationVar(&c.FlushInterval, "sink.flush-interval", time.Second, "longest a record waits before its batch is inserted")
	fs.StringVar(&c.Group, "sink.group", "clickhouse", "Kafka consumer group of the sink")
}

// Validate checks the configuration, Kafka and ClickHouse parts included.
func (c *Config) Validate() error {
	var errs []error
	if err := c.Kafka.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.ClickHouse.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("sink.batch-size must be >= 1, got %d", c.BatchSize))
	}
	if c.FlushInterval <= 0 {
		errs = append(errs, fmt.Errorf("sink.flush-interval must be > 0, got %s", c.FlushInterval))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("sink.group must not be empty"))
	}
	return errors.Join(errs...)
}
