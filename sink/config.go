package sink

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
)

// Config configures the sink.
type Config struct {
	Kafka      stream.Config    // flags registered by the caller
	ClickHouse warehouse.Config // flags registered by the caller
	// BatchSize is the most records one insert carries; FlushInterval is the
	// longest a record waits for its batch to fill.
	BatchSize     int
	FlushInterval time.Duration
	Group         string // Kafka consumer group
	// FromEmailDomain also records a lead's e-mail domain account in
	// account_members (accounts.from-email-domain, as the processors).
	FromEmailDomain bool
}

// RegisterAccountFlags registers accounts.from-email-domain, which the
// processor registers too (dev mode registers it once, for both).
func (c *Config) RegisterAccountFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.FromEmailDomain, "accounts.from-email-domain", false, "also record in account_members the account of each identify's work e-mail domain, as the processors do")
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
