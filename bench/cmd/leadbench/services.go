package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/leadstream/leadstream/internal/localsvc"
	"github.com/leadstream/leadstream/stream"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// services are the real servers the stages run against, on free loopback
// ports under the run's temporary directory.
type services struct {
	redis      *localsvc.Server
	clickhouse *localsvc.Server
}

// startServices starts redis-server and clickhouse-server. Either failing
// is fatal: the harness never measures against a missing service.
func startServices(ctx context.Context, dir string) (*services, error) {
	s := &services{}
	var err error
	if s.redis, err = localsvc.StartRedis(ctx, filepath.Join(dir, "redis"), 0); err != nil {
		return nil, fmt.Errorf("starting redis-server (install it with `make deps`): %w", err)
	}
	if s.clickhouse, err = localsvc.StartClickHouse(ctx, filepath.Join(dir, "clickhouse"), 0, 0); err != nil {
		s.redis.Stop()
		return nil, fmt.Errorf("starting clickhouse-server (install it with `make deps`): %w", err)
	}
	return s, nil
}

func (s *services) stop() {
	if s.clickhouse != nil {
		s.clickhouse.Stop()
	}
	if s.redis != nil {
		s.redis.Stop()
	}
}

// broker is a kfake Kafka broker with leadstream's topics: in-process
// (startBroker), or a broker child process (dialBroker; cluster is nil).
type broker struct {
	cluster *kfake.Cluster
	kcfg    stream.Config
	client  *kafka.Client
}

// dialBroker connects to the broker at addr and creates the topics.
func dialBroker(ctx context.Context, addr string) (*broker, error) {
	b := &broker{kcfg: kafkaConfig(addr)}
	b.client = &kafka.Client{Addr: kafka.TCP(addr), Timeout: 10 * time.Second}
	if err := stream.EnsureTopics(ctx, b.kcfg); err != nil {
		return nil, err
	}
	return b, nil
}

// startBroker starts a fresh single-broker kfake cluster (records are held in
// memory, so each group of scenarios gets its own and frees it afterwards)
// and creates the topics with the default partition count.
func startBroker(ctx context.Context, opts ...kfake.Opt) (*broker, error) {
	opts = append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("starting kfake broker: %w", err)
	}
	b := &broker{cluster: c, kcfg: kafkaConfig(strings.Join(c.ListenAddrs(), ","))}
	b.client = &kafka.Client{Addr: kafka.TCP(c.ListenAddrs()...), Timeout: 10 * time.Second}
	if err := stream.EnsureTopics(ctx, b.kcfg); err != nil {
		c.Close()
		return nil, err
	}
	return b, nil
}

func (b *broker) close() { b.cluster.Close() }

func (b *broker) brokers() string { return strings.Join(b.kcfg.Brokers, ",") }

func (b *broker) topic(suffix string) string { return b.kcfg.Topic(suffix) }

func (b *broker) partitions() []int {
	ps := make([]int, b.kcfg.Partitions)
	for i := range ps {
		ps[i] = i
	}
	return ps
}

// endOffsets returns the sum of the topic's high watermarks (= records ever
// written, as nothing is deleted) and the per-partition values.
func (b *broker) endOffsets(ctx context.Context, topic string) (int64, map[int]int64, error) {
	var reqs []kafka.OffsetRequest
	for _, p := range b.partitions() {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	res, err := b.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return 0, nil, fmt.Errorf("listing offsets of %s: %w", topic, err)
	}
	out := map[int]int64{}
	var sum int64
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return 0, nil, fmt.Errorf("listing offsets of %s/%d: %w", topic, p.Partition, p.Error)
		}
		out[p.Partition] = p.LastOffset
		sum += p.LastOffset
	}
	return sum, out, nil
}

// lag is how many records of topics the group has not committed yet.
func (b *broker) lag(ctx context.Context, group string, topics ...string) (int64, error) {
	var total int64
	for _, t := range topics {
		_, end, err := b.endOffsets(ctx, t)
		if err != nil {
			return 0, err
		}
		res, err := b.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{t: b.partitions()}})
		if err != nil {
			return 0, fmt.Errorf("fetching offsets of group %s: %w", group, err)
		}
		if res.Error != nil {
			return 0, fmt.Errorf("fetching offsets of group %s: %w", group, res.Error)
		}
		committed := map[int]int64{}
		for _, p := range res.Topics[t] {
			committed[p.Partition] = max(p.CommittedOffset, 0)
		}
		for p, e := range end {
			total += max(e-committed[p], 0)
		}
	}
	return total, nil
}
