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
)

type produceResult struct {
	Records     int64     `json:"records"`
	Seconds     float64   `json:"seconds"`
	RecordsPerS float64   `json:"records_per_second"`
	Rounds      []float64 `json:"rounds_records_per_second,omitempty"`
	Writers     int       `json:"concurrent_writers"`
	Config      string    `json:"config"`
}

// produceCeiling cycles the records through kafka-go's Writer into a fresh
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

// rawProduce writes msgs with kafka-go's Writer (acks=all, murmur2 keys as
// the collector's producer) from 8 goroutines, 1,000 messages per call.
// With measure == 0 it writes msgs once; otherwise it cycles over them for
// warmup + measure and reports the records acknowledged in the window.
func rawProduce(ctx context.Context, b *broker, topic string, msgs []kafka.Message, warmup, measure time.Duration) (produceResult, error) {
	const writers, chunk = 8, 1000
	w := &kafka.Writer{
		Addr:         kafka.TCP(b.kcfg.Brokers...),
		Topic:        topic,
		Balancer:     &kafka.Murmur2Balancer{Consistent: true},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    2000,
		BatchBytes:   900 << 10,
		BatchTimeout: 2 * time.Millisecond,
	}
	defer w.Close()
	var (
		next, acked     atomic.Int64
		measuring, stop atomic.Bool
		wg              sync.WaitGroup
	)
	errs := make([]error, writers)
	for g := range writers {
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil {
				i := int(next.Add(chunk)) - chunk
				if measure == 0 && i >= len(msgs) {
					return
				}
				i %= len(msgs)
				part := msgs[i:min(i+chunk, len(msgs))]
				in := measuring.Load()
				if err := w.WriteMessages(ctx, part...); err != nil {
					errs[g] = err
					return
				}
				if in && measuring.Load() {
					acked.Add(int64(len(part)))
				}
			}
		})
	}
	out := produceResult{Writers: writers,
		Config: "Writer{RequiredAcks: RequireAll, Balancer: Murmur2, BatchSize: 2000, BatchBytes: 900KiB, BatchTimeout: 2ms}, 8 goroutines × 1000-message WriteMessages"}
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
		return out, fmt.Errorf("raw kafka-go produce: %w", err)
	}
	if out.Seconds > 0 {
		out.Records = acked.Load()
		out.RecordsPerS = float64(out.Records) / out.Seconds
	}
	return out, ctx.Err()
}

// consumeRaw reads the pre-filled topic with a kafka-go group reader
// configured as package stream's consumer, committing every 500 records.
// The topic drains in seconds, so the rate is taken from the first 10% of
// the records (the warm-up: group join, first fetches) to the last.
func consumeRaw(ctx context.Context, b *broker, total int64) (rateResult, error) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: b.kcfg.Brokers, GroupID: "bench-consume", GroupTopics: []string{b.topic(stream.TopicEvents)},
		MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 50 * time.Millisecond, QueueCapacity: 500,
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
