// Package stream reads and writes leadstream's Kafka topics, using only
// standard Kafka protocol features so it runs unchanged on Apache Kafka,
// Redpanda, a managed service or the in-process kfake broker of `leadstream
// dev`. Producer writes through franz-go (kgo, idempotent); Consumer reads
// through kafka-go. Both connect with the same Security (TLS, SASL PLAIN or
// SCRAM), and Check tells a wrong setting at start.
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
//	leadstream_kafka_produce_queue_bytes, leadstream_kafka_produce_wait_seconds{phase},
//	leadstream_kafka_consumed_records_total, leadstream_kafka_consume_batches_total,
//	leadstream_kafka_handler_errors_total, leadstream_kafka_commit_errors_total,
//	leadstream_kafka_fetch_errors_total,
//	leadstream_kafka_consumer_lag_records{topic,partition},
//	leadstream_kafka_consumer_out_of_range_records_total{topic,partition}
package stream

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/leadstream/leadstream/internal/tlsconfig"
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
	// MinInsyncReplicas and Retention are set on the topics leadstream
	// creates (min.insync.replicas, retention.ms); see topicConfigs.
	MinInsyncReplicas int
	Retention         time.Duration
	// SessionTimeout is how long the group waits for a silent member (a
	// crashed processor) before handing its partitions to the others.
	SessionTimeout time.Duration
	// Compression is the codec of every record batch this role produces.
	Compression Compression
	// Security is TLS and SASL, applied to every client (security.go).
	Security Security
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
	fs.IntVar(&c.MinInsyncReplicas, "kafka.min-insync-replicas", 0, "min.insync.replicas of topics that leadstream creates: how many replicas must have a record before acks=all succeeds; 0 = 2 when kafka.replication-factor >= 3, else the broker default")
	fs.DurationVar(&c.Retention, "kafka.retention", DefaultRetention, "retention.ms of topics that leadstream creates: how long Kafka keeps records (a consumer group further behind loses them); 0 = the broker default")
	fs.DurationVar(&c.SessionTimeout, "kafka.session-timeout", 10*time.Second, "consumer group session timeout: how soon a crashed member's partitions move to another")
	c.Compression = DefaultCompression
	fs.Func("kafka.compression", "codec of the record batches this role produces: none, snappy, lz4 or zstd (default "+string(DefaultCompression)+")", func(s string) error {
		v, err := ParseCompression(s)
		c.Compression = v
		return err
	})
	c.Security.RegisterFlags(fs)
}

// DefaultRetention is kafka.retention's default: a week, long enough to
// replay a weekend's outage of the processor or the sink.
const DefaultRetention = 7 * 24 * time.Hour

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
	if c.MinInsyncReplicas < 0 {
		return fmt.Errorf("kafka.min-insync-replicas must be >= 0, got %d", c.MinInsyncReplicas)
	}
	if c.ReplicationFactor > 0 && c.MinInsyncReplicas > c.ReplicationFactor {
		return fmt.Errorf("kafka.min-insync-replicas (%d) must not exceed kafka.replication-factor (%d): no write could succeed", c.MinInsyncReplicas, c.ReplicationFactor)
	}
	if c.Retention < 0 {
		return fmt.Errorf("kafka.retention must be >= 0, got %s", c.Retention)
	}
	return c.Security.Validate()
}

// topicConfigs are the settings of the topics leadstream creates:
// min.insync.replicas (explicit, or 2 when there are at least 3 replicas, so
// that acks=all means two copies and one broker may be down) and retention.ms.
func (c *Config) topicConfigs() []kafka.ConfigEntry {
	var out []kafka.ConfigEntry
	isr := c.MinInsyncReplicas
	if isr == 0 && c.ReplicationFactor >= 3 {
		isr = 2
	}
	if isr > 0 {
		out = append(out, kafka.ConfigEntry{ConfigName: "min.insync.replicas", ConfigValue: strconv.Itoa(isr)})
	}
	if c.Retention > 0 {
		out = append(out, kafka.ConfigEntry{ConfigName: "retention.ms", ConfigValue: strconv.FormatInt(c.Retention.Milliseconds(), 10)})
	}
	return out
}

// Topic returns the full name of a topic suffix.
func (c *Config) Topic(suffix string) string { return c.TopicPrefix + suffix }

// Producer is the configuration of a producer for a topic suffix with this
// role's brokers and compression; the other fields keep their defaults.
func (c *Config) Producer(suffix string) ProducerConfig {
	return ProducerConfig{Brokers: c.Brokers, Topic: c.Topic(suffix), Compression: c.Compression, Security: c.Security}
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

// newClient is a kafka-go client (topic administration, metadata, offsets)
// with the configured security.
func newClient(brokers []string, cn *conn, timeout time.Duration) *kafka.Client {
	tr := &kafka.Transport{
		// Refresh metadata soon after a leader moves; the default 6 s is
		// long compared with our produce timeout.
		MetadataTTL: 2 * time.Second,
		DialTimeout: 5 * time.Second,
		SASL:        cn.kafkaGoSASL(),
	}
	if cn.tls != nil {
		tr.Dial = cn.dialTLS // bounded by DialTimeout through its context
	}
	return &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: timeout, Transport: tr}
}

// EnsureTopics creates the events, mql, mqa, dead-letter and erasures topics
// when missing, with the partitions, replication, min.insync.replicas and
// retention of the configuration. Existing topics are left as they are.
func EnsureTopics(ctx context.Context, c Config) error {
	if len(c.Brokers) == 0 {
		return ErrNoBrokers
	}
	cn, err := c.Security.build()
	if err != nil {
		return err
	}
	client := newClient(c.Brokers, cn, 10*time.Second)
	defer closeClient(client)
	var topics []kafka.TopicConfig
	for _, s := range []string{TopicEvents, TopicMQL, TopicMQA, TopicDeadLetter, TopicErasures} {
		topics = append(topics, kafka.TopicConfig{Topic: c.Topic(s), NumPartitions: c.Partitions, ReplicationFactor: c.ReplicationFactor,
			ConfigEntries: c.topicConfigs()})
	}
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: topics})
	if err != nil {
		return fmt.Errorf("creating topics: %w", cn.explain(c.Brokers, err))
	}
	for name, err := range res.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("creating topic %s: %w", name, err)
		}
	}
	return nil
}

func partitionCount(ctx context.Context, client *kafka.Client, cn *conn, topic string) (int, error) {
	var lastErr error
	for attempt := 0; attempt < 50; attempt++ {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		switch {
		case err != nil && (cn.permanent(err) || tlsconfig.IsTimeout(err)):
			// Each attempt already waited for the client's timeout.
			return 0, err
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
