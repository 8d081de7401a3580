// Package stream reads and writes leadstream's Kafka topics, using only
// standard Kafka protocol features so it runs unchanged on Apache Kafka,
// Redpanda or the in-process kfake broker of `leadstream dev`. Producer writes
// through franz-go (kgo, idempotent); Consumer reads through kafka-go.
//
// Producer group-commits records of concurrent callers into shared acks=all
// requests (one request per broker carries the batches of all its
// partitions); Consumer hands batches to a handler and commits offsets only
// after the handler finished them, so a crash means redelivery, never loss.
//
// Metrics (labelled by topic or group):
//
//	leadstream_kafka_produced_records_total, leadstream_kafka_produce_failed_records_total,
//	leadstream_kafka_produce_rejected_records_total, leadstream_kafka_produce_errors_total,
//	leadstream_kafka_produce_batch_records, leadstream_kafka_produce_duration_seconds,
//	leadstream_kafka_produce_queue_bytes,
//	leadstream_kafka_consumed_records_total, leadstream_kafka_consume_batches_total,
//	leadstream_kafka_handler_errors_total, leadstream_kafka_commit_errors_total,
//	leadstream_kafka_consumer_lag_records
package stream

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Topic suffixes; the full name is Config.TopicPrefix + suffix.
const (
	TopicEvents     = "events"
	TopicMQL        = "mql"
	TopicMQA        = "mqa"
	TopicDeadLetter = "deadletter"
)

var (
	// ErrNoBrokers means no broker address was configured.
	ErrNoBrokers = errors.New("no kafka brokers configured")
	// ErrQueueFull means the producer's bounded queue is full; retry later.
	ErrQueueFull = errors.New("kafka produce queue is full")
	// ErrUnavailable means Kafka did not acknowledge the records in time.
	ErrUnavailable = errors.New("kafka unavailable")
	// ErrClosed means the producer was closed.
	ErrClosed = errors.New("producer closed")
	// ErrBadCompression means kafka.compression names no supported codec.
	ErrBadCompression = errors.New("unknown kafka.compression")
)

// Config holds the Kafka settings shared by every role.
type Config struct {
	Brokers           []string
	TopicPrefix       string
	Partitions        int
	ReplicationFactor int
	// SessionTimeout is how long the group waits for a silent member (a
	// crashed processor) before handing its partitions to the others.
	SessionTimeout time.Duration
	// Compression is the codec of every record batch this role produces.
	Compression Compression
}

// RegisterFlags registers kafka.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Func("kafka.brokers", "comma-separated Kafka bootstrap brokers (host:port); empty in `dev` = embedded broker", func(s string) error {
		c.Brokers = SplitList(s)
		return nil
	})
	fs.StringVar(&c.TopicPrefix, "kafka.topic-prefix", "leadstream.", "prefix of every topic name")
	fs.IntVar(&c.Partitions, "kafka.partitions", 8, "partitions of topics that leadstream creates (existing topics are left alone)")
	fs.IntVar(&c.ReplicationFactor, "kafka.replication-factor", -1, "replication factor of topics that leadstream creates; -1 = broker default")
	fs.DurationVar(&c.SessionTimeout, "kafka.session-timeout", 10*time.Second, "consumer group session timeout: how soon a crashed member's partitions move to another")
	c.Compression = DefaultCompression
	fs.Func("kafka.compression", "codec of the record batches this role produces: none, snappy, lz4 or zstd (default "+string(DefaultCompression)+")", func(s string) error {
		v, err := ParseCompression(s)
		c.Compression = v
		return err
	})
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return ErrNoBrokers
	}
	if c.SessionTimeout < 0 || (c.SessionTimeout > 0 && c.SessionTimeout < time.Second) {
		return fmt.Errorf("kafka.session-timeout must be at least 1s, got %s", c.SessionTimeout)
	}
	if c.Partitions < 1 {
		return fmt.Errorf("kafka.partitions must be >= 1, got %d", c.Partitions)
	}
	return nil
}

// Topic returns the full name of a topic suffix.
func (c *Config) Topic(suffix string) string { return c.TopicPrefix + suffix }

// Producer is the configuration of a producer for a topic suffix with this
// role's brokers and compression; the other fields keep their defaults.
func (c *Config) Producer(suffix string) ProducerConfig {
	return ProducerConfig{Brokers: c.Brokers, Topic: c.Topic(suffix), Compression: c.Compression}
}

// SplitList splits a comma-separated list, dropping blanks.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func newClient(brokers []string, timeout time.Duration) *kafka.Client {
	return &kafka.Client{
		Addr:    kafka.TCP(brokers...),
		Timeout: timeout,
		Transport: &kafka.Transport{
			// Refresh metadata soon after a leader moves; the default 6 s is
			// long compared with our produce timeout.
			MetadataTTL: 2 * time.Second,
		},
	}
}

// EnsureTopics creates the events, mql, mqa and dead-letter topics when missing.
func EnsureTopics(ctx context.Context, c Config) error {
	if len(c.Brokers) == 0 {
		return ErrNoBrokers
	}
	client := newClient(c.Brokers, 10*time.Second)
	var topics []kafka.TopicConfig
	for _, s := range []string{TopicEvents, TopicMQL, TopicMQA, TopicDeadLetter} {
		topics = append(topics, kafka.TopicConfig{Topic: c.Topic(s), NumPartitions: c.Partitions, ReplicationFactor: c.ReplicationFactor})
	}
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: topics})
	if err != nil {
		return fmt.Errorf("creating topics: %w", err)
	}
	for name, err := range res.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("creating topic %s: %w", name, err)
		}
	}
	return nil
}

func partitionCount(ctx context.Context, client *kafka.Client, topic string) (int, error) {
	var lastErr error
	for attempt := 0; attempt < 50; attempt++ {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		switch {
		case err != nil:
			lastErr = err
		case len(md.Topics) != 1:
			lastErr = fmt.Errorf("metadata returned %d topics", len(md.Topics))
		case md.Topics[0].Error != nil:
			lastErr = md.Topics[0].Error
		case len(md.Topics[0].Partitions) == 0:
			lastErr = errors.New("topic has no partitions")
		default:
			return len(md.Topics[0].Partitions), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("reading metadata of %s: %w (last error: %v)", topic, ctx.Err(), lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("reading metadata of %s: %w", topic, lastErr)
}
