package sink

import (
	"errors"
	"flag"
	"testing"
	"time"

	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
)

func TestConfigFlags(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.Kafka.RegisterFlags(fs)
	c.ClickHouse.RegisterFlags(fs)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-kafka.brokers=127.0.0.1:9092", "-clickhouse.addr=127.0.0.1:9000"}); err != nil {
		t.Fatal(err)
	}
	if c.BatchSize != 50000 || c.FlushInterval != time.Second || c.Group != "clickhouse" ||
		c.ClickHouse.Database != warehouse.DefaultDatabase || c.ClickHouse.Username != "default" {
		t.Errorf("defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate defaults: %v", err)
	}

	f := func(mutate func(*Config), want error) {
		t.Helper()
		bad := c
		mutate(&bad)
		err := bad.Validate()
		if err == nil || (want != nil && !errors.Is(err, want)) {
			t.Errorf("Validate(%+v) = %v, want %v", bad, err, want)
		}
	}
	f(func(c *Config) { c.ClickHouse.Addr = " , " }, warehouse.ErrNoAddr)
	f(func(c *Config) { c.ClickHouse.Database = "lead-stream" }, warehouse.ErrBadDatabase)
	f(func(c *Config) { c.ClickHouse.DialTimeout = -time.Second }, nil)
	f(func(c *Config) { c.Kafka.Brokers = nil }, stream.ErrNoBrokers)
	f(func(c *Config) { c.BatchSize = 0 }, nil)
	f(func(c *Config) { c.FlushInterval = 0 }, nil)
	f(func(c *Config) { c.Group = "" }, nil)
}
