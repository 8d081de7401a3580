package main

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leadstream/leadstream/stream"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
)

type produceResult struct {
	Records     int64     `json:"records"`
	Seconds     float64   `json:"seconds"`
	RecordsPerS float64   `json:"records_per_second"`
	Rounds      []float64 `json:"rounds_records_per_second,omitempty"`
	Writers     int       `json:"concurrent_writers"`
	Config      string    `json:"config"`
}

// kafkaProduceCeiling describes the produce ceiling in the report.
const kafkaProduceCeiling = "raw franz-go produce (the collector's client and settings), acks=all, same records (best of 3)"

// produceCeiling cycles the records through a franz-go client into a fresh
// scratch topic in three rounds (a third of the window each, after a short
// warm-up) and keeps the best. The in-process broker holds every record in
// memory, so each round's topic is deleted before the next.
func (h *harness) produceCeiling(ctx context.Context, b *broker, msgs []kafka.Message) (produceResult, error) {
	var best produceResult
	var rounds []float64
	snap := snapshotCPU()
	for round := 1; round <= 3; round++ {
		topic := fmt.Sprintf("%sbench-produce-%d", b.kcfg.TopicPrefix, round)
		res, err := b.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
			Topic: topic, NumPartitions: b.kcfg.Partitions, ReplicationFactor: 1}}})
		if err == nil {
			err = res.Errors[topic]
		}
		if err != nil {
			return best, fmt.Errorf("creating %s: %w", topic, err)
		}
		r, err := rawProduce(ctx, b, topic, msgs, min(h.warmup, time.Second)/2, max(2*time.Second, h.measure/3))
		b.client.DeleteTopics(context.WithoutCancel(ctx), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
		debug.FreeOSMemory()
		if err != nil {
			return best, err
		}
		rounds = append(rounds, r.RecordsPerS)
		if r.RecordsPerS > best.RecordsPerS {
			best = r
		}
	}
	h.noteCPU("kafka_produce", snap.since())
	best.Rounds = rounds
	return best, nil
}

// rawProduce writes msgs with franz-go, the client the collector produces
// with, set up as stream.NewProducer sets it up (idempotent, acks=all,
// 200 µs linger, no compression, 900 KiB batches, murmur2 partitions as the
// Java client), but without leadstream's code around it: 8 goroutines, each
// producing 1,000 records per synchronous call, so concurrent calls share
// produce requests as the collector's requests do. With measure == 0 it
// writes msgs once; otherwise it cycles over them for warmup + measure and
// reports the records acknowledged in the window.
func rawProduce(ctx context.Context, b *broker, topic string, msgs []kafka.Message, warmup, measure time.Duration) (produceResult, error) {
	const writers, chunk = 8, 1000
	parts, err := partitionCount(ctx, b, topic)
	if err != nil {
		return produceResult{}, err
	}
	ids := make([]int, parts)
	for i := range ids {
		ids[i] = i
	}
	balancer := kafka.Murmur2Balancer{Consistent: true}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.kcfg.Brokers...),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(stream.DefaultLinger),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(900<<10),
		kgo.MaxBufferedRecords(writers*chunk),
	)
	if err != nil {
		return produceResult{}, fmt.Errorf("raw franz-go client: %w", err)
	}
	defer cl.Close()
	var (
		next, acked     atomic.Int64
		measuring, stop atomic.Bool
		wg              sync.WaitGroup
	)
	errs := make([]error, writers)
	for g := range writers {
		wg.Go(func() {
			recs := make([]*kgo.Record, 0, chunk)
			for !stop.Load() && ctx.Err() == nil {
				i := int(next.Add(chunk)) - chunk
				if measure == 0 && i >= len(msgs) {
					return
				}
				i %= len(msgs)
				recs = recs[:0]
				for _, m := range msgs[i:min(i+chunk, len(msgs))] {
					recs = append(recs, &kgo.Record{Key: m.Key, Value: m.Value, Partition: int32(balancer.Balance(m, ids...))})
				}
				in := measuring.Load()
				if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
					errs[g] = err
					return
				}
				if in && measuring.Load() {
					acked.Add(int64(len(recs)))
				}
			}
		})
	}
	out := produceResult{Writers: writers,
		Config: "franz-go kgo: idempotent, acks=all, linger 200µs, no compression, 900KiB batches, murmur2 partitions; 8 goroutines × 1000-record ProduceSync"}
	if measure > 0 {
		sleepCtx(ctx, warmup)
		measuring.Store(true)
		t0 := time.Now()
		sleepCtx(ctx, measure)
		measuring.Store(false)
		out.Seconds = time.Since(t0).Seconds()
		stop.Store(true)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return out, fmt.Errorf("raw franz-go produce: %w", err)
	}
	if out.Seconds > 0 {
		out.Records = acked.Load()
		out.RecordsPerS = float64(out.Records) / out.Seconds
	}
	return out, ctx.Err()
}

// partitionCount reads how many partitions topic has.
func partitionCount(ctx context.Context, b *broker, topic string) (int, error) {
	md, err := b.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil || len(md.Topics[0].Partitions) == 0 {
		return 0, fmt.Errorf("metadata of %s: %+v", topic, md.Topics)
	}
	return len(md.Topics[0].Partitions), nil
}

// consumeRaw reads the pre-filled topic with a kafka-go group reader
// configured as package stream's consumer, committing every 500 records.
// The topic drains in seconds, so the rate is taken from the first 10% of
// the records (the warm-up: group join, first fetches) to the last.
func consumeRaw(ctx context.Context, b *broker, total int64) (rateResult, error) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: b.kcfg.Brokers, GroupID: "bench-consume", GroupTopics: []string{b.topic(stream.TopicEvents)},
		MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 500 * time.Millisecond, QueueCapacity: 500,
		CommitInterval: 0, StartOffset: kafka.FirstOffset,
	})
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var t0, t1 time.Time
	warm := total / 10
	batch := make([]kafka.Message, 0, 500)
	for n := int64(1); n <= total; n++ {
		m, err := r.FetchMessage(rctx)
		if err != nil {
			return rateResult{}, fmt.Errorf("raw kafka-go consume after %d records: %w", n-1, err)
		}
		batch = append(batch, m)
		if len(batch) == cap(batch) || n == total {
			if err := r.CommitMessages(rctx, batch...); err != nil {
				return rateResult{}, fmt.Errorf("raw kafka-go commit: %w", err)
			}
			batch = batch[:0]
		}
		if n == warm {
			t0 = time.Now()
		}
	}
	t1 = time.Now()
	res := rateResult{Count: float64(total - warm), Seconds: t1.Sub(t0).Seconds()}
	res.PerSecond = res.Count / res.Seconds
	return res, nil
}
