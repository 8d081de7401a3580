package notify

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
)

// Config configures the notifier. Kafka and ClickHouse flags are registered
// by the caller.
type Config struct {
	Kafka      stream.Config
	ClickHouse warehouse.Config
	// File is the destinations file (notify.config, LEADSTREAM_NOTIFY_CONFIG).
	File string
	// GroupPrefix: destination d reads topic kind k in consumer group
	// "<GroupPrefix>.<d>.<k>" (notifier.crm.mql).
	GroupPrefix string
	// MaxAge: a record not delivered this long after it was published is
	// dead-lettered with the reason.
	MaxAge time.Duration
	// RetryMin and RetryMax bound the backoff between attempts (doubling,
	// with jitter).
	RetryMin, RetryMax time.Duration
	// Timeout bounds one attempt (a destination's timeout wins).
	Timeout time.Duration
	// Concurrency is how many attempts one destination makes at once.
	Concurrency int
	// MaxPending bounds the records one destination holds (in flight or
	// waiting to retry); its consumers stop fetching at the bound.
	MaxPending int
	// TopicCheck is how often a missing mqa topic is looked for.
	TopicCheck time.Duration
	// DrainTimeout bounds how long attempts in flight may finish at shutdown.
	DrainTimeout time.Duration
	// Version goes into the User-Agent of deliveries.
	Version string
}

// RegisterFlags registers notify.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.File, "notify.config", "", "YAML file of the notification destinations (webhook, slack, email); required by the notifier, optional in `dev`")
	fs.StringVar(&c.GroupPrefix, "notify.group-prefix", "notifier", "destination D reads topic K (mql, mqa) in consumer group PREFIX.D.K")
	fs.DurationVar(&c.MaxAge, "notify.max-age", 24*time.Hour, "a record not delivered this long after it was published is dead-lettered with the reason")
	fs.DurationVar(&c.RetryMin, "notify.retry-min", time.Second, "first backoff after a failed attempt (doubling, with jitter)")
	fs.DurationVar(&c.RetryMax, "notify.retry-max", 5*time.Minute, "longest backoff between two attempts")
	fs.DurationVar(&c.Timeout, "notify.timeout", 10*time.Second, "bound of one attempt (a destination's timeout wins)")
	fs.IntVar(&c.Concurrency, "notify.concurrency", 4, "attempts one destination makes at once")
	fs.IntVar(&c.MaxPending, "notify.max-pending", 1000, "records one destination holds, in flight or waiting to retry; its consumer stops fetching at the bound")
	fs.DurationVar(&c.TopicCheck, "notify.topic-check", 30*time.Second, "how often a missing mqa topic is looked for (consumed as soon as it exists)")
}

func (c *Config) defaults() {
	if c.GroupPrefix == "" {
		c.GroupPrefix = "notifier"
	}
	if c.MaxAge == 0 {
		c.MaxAge = 24 * time.Hour
	}
	if c.RetryMin == 0 {
		c.RetryMin = time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Minute
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.MaxPending == 0 {
		c.MaxPending = 1000
	}
	if c.TopicCheck == 0 {
		c.TopicCheck = 30 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.Version == "" {
		c.Version = "dev"
	}
}

// Validate checks the configuration (not the destinations file).
func (c *Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if err := c.ClickHouse.Validate(); err != nil {
		return err
	}
	var errs []error
	if c.MaxAge < time.Second {
		errs = append(errs, fmt.Errorf("notify.max-age must be at least 1s, got %s", c.MaxAge))
	}
	if c.RetryMin <= 0 || c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("notify.retry-min must be > 0 and notify.retry-max >= it, got %s and %s", c.RetryMin, c.RetryMax))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("notify.timeout must be > 0, got %s", c.Timeout))
	}
	if c.Concurrency < 1 || c.MaxPending < c.Concurrency {
		errs = append(errs, fmt.Errorf("notify.concurrency must be >= 1 and notify.max-pending >= it, got %d and %d", c.Concurrency, c.MaxPending))
	}
	if c.TopicCheck <= 0 {
		errs = append(errs, errors.New("notify.topic-check must be > 0"))
	}
	return errors.Join(errs...)
}
