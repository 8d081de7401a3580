package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// DefaultLagInterval is how often a consumer reads its group's committed
// offsets and the partitions' ends for the lag metric.
const DefaultLagInterval = 5 * time.Second

// topicPartition names one partition of one topic.
type topicPartition struct {
	topic     string
	partition int
}

// offsetWatch reports where a consumer group stands in its partitions, from
// the broker's view rather than the reader's: the lag per partition (end of
// the partition minus the group's committed offset), read on a timer so it
// keeps moving while batches fail, and records that retention deleted before
// the group read them (its committed offset fell out of range and the reader
// jumped to the first record still kept).
type offsetWatch struct {
	client *kafka.Client
	group  string
	topics []string
	m      *consumerMetrics
	log    *slog.Logger

	mu    sync.Mutex
	known map[topicPartition]bool // partitions whose metrics exist

	// expected is the next offset the consumer expects per partition: the
	// one after the last record it handled. Only the handling goroutine
	// touches it.
	expected map[topicPartition]int64
}

func newOffsetWatch(client *kafka.Client, group string, topics []string, m *consumerMetrics, log *slog.Logger) *offsetWatch {
	return &offsetWatch{client: client, group: group, topics: topics, m: m, log: log,
		known: map[topicPartition]bool{}, expected: map[topicPartition]int64{}}
}

// run refreshes the lag every interval until ctx ends.
func (w *offsetWatch) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		pctx, cancel := context.WithTimeout(ctx, max(interval, 5*time.Second))
		err := w.refreshLag(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			w.log.Warn("reading the consumer group's lag failed", "err", err)
			failing = true
		case err == nil && failing:
			w.log.Info("reading the consumer group's lag works again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// partitions returns the partitions of the watched topics.
func (w *offsetWatch) partitions(ctx context.Context) (map[string][]int, error) {
	md, err := w.client.Metadata(ctx, &kafka.MetadataRequest{Topics: w.topics})
	if err != nil {
		return nil, fmt.Errorf("reading metadata: %w", err)
	}
	out := map[string][]int{}
	for _, t := range md.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("reading metadata of %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			out[t.Name] = append(out[t.Name], p.ID)
		}
	}
	return out, nil
}

// partitionState is what the broker knows of one partition for the group.
type partitionState struct {
	committed   int64 // -1: the group has committed nothing
	first, last int64 // offsets of the first record kept and of the next record to be written
}

// states reads the group's committed offsets and the partitions' first and
// last offsets.
func (w *offsetWatch) states(ctx context.Context, parts map[string][]int) (map[topicPartition]partitionState, error) {
	of, err := w.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: w.group, Topics: parts})
	if err == nil {
		err = of.Error
	}
	// A group that has not joined yet has committed nothing (some brokers
	// say so with GROUP_ID_NOT_FOUND, Kafka with offsets of -1).
	noGroup := errors.Is(err, kafka.GroupIdNotFound)
	if err != nil && !noGroup {
		return nil, fmt.Errorf("reading committed offsets of group %s: %w", w.group, err)
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for t, ps := range parts {
		for _, p := range ps {
			req.Topics[t] = append(req.Topics[t], kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
		}
	}
	lo, err := w.client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("reading partition offsets: %w", err)
	}
	out := map[topicPartition]partitionState{}
	for t, ps := range lo.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return nil, fmt.Errorf("reading offsets of %s/%d: %w", t, p.Partition, p.Error)
			}
			out[topicPartition{t, p.Partition}] = partitionState{committed: -1, first: p.FirstOffset, last: p.LastOffset}
		}
	}
	if noGroup {
		return out, nil
	}
	for t, ps := range of.Topics {
		for _, p := range ps {
			if errors.Is(p.Error, kafka.GroupIdNotFound) {
				continue
			}
			if p.Error != nil {
				return nil, fmt.Errorf("reading committed offset of %s/%d: %w", t, p.Partition, p.Error)
			}
			tp := topicPartition{t, p.Partition}
			if s, ok := out[tp]; ok {
				s.committed = p.CommittedOffset
				out[tp] = s
			}
		}
	}
	return out, nil
}

// refreshLag sets the lag gauge of every partition: records between the
// group's committed offset (or the first record kept, when the group has
// committed nothing and so starts there) and the end of the partition.
func (w *offsetWatch) refreshLag(ctx context.Context) error {
	parts, err := w.partitions(ctx)
	if err != nil {
		return err
	}
	states, err := w.states(ctx, parts)
	if err != nil {
		return err
	}
	for tp, s := range states {
		w.initMetrics(tp)
		from := s.committed
		if from < 0 {
			from = s.first
		}
		w.m.lag.WithLabelValues(tp.topic, strconv.Itoa(tp.partition)).Set(float64(max(s.last-from, 0)))
	}
	return nil
}

// initMetrics creates a partition's series at zero the first time it is seen.
func (w *offsetWatch) initMetrics(tp topicPartition) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.known[tp] {
		return
	}
	w.known[tp] = true
	p := strconv.Itoa(tp.partition)
	w.m.lag.WithLabelValues(tp.topic, p)
	w.m.outOfRange.WithLabelValues(tp.topic, p)
}

// checkContinuity runs before a batch is handled. A partition whose first
// record in the batch is not the one after the last record this consumer
// handled (its first batch since start, a partition that came back after a
// rebalance, or a jump by the reader) is compared with the group's committed
// offset: when the reader starts after that offset because retention has
// deleted the records from it on, those records were never processed; they
// are counted in leadstream_kafka_consumer_out_of_range_records_total and
// logged as an error. Failing to check is logged and does not stop the batch.
func (w *offsetWatch) checkContinuity(ctx context.Context, batch []Message) {
	suspect := map[topicPartition]int64{} // first offset in the batch
	last := map[topicPartition]int64{}
	for i := range batch {
		m := &batch[i]
		tp := topicPartition{m.Topic, m.Partition}
		if _, seen := last[tp]; !seen {
			if exp, ok := w.expected[tp]; !ok || exp != m.Offset {
				suspect[tp] = m.Offset
			}
		}
		last[tp] = m.Offset
	}
	for tp, o := range last {
		w.expected[tp] = o + 1
	}
	if len(suspect) == 0 {
		return
	}
	parts := map[string][]int{}
	for tp := range suspect {
		parts[tp.topic] = append(parts[tp.topic], tp.partition)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	states, err := w.states(ctx, parts)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			w.log.Warn("could not check the batch against the group's committed offsets", "err", err)
		}
		return
	}
	for tp, first := range suspect {
		s, ok := states[tp]
		if !ok || s.committed < 0 || first <= s.committed || s.first <= s.committed {
			continue // a new group, the expected record, or a gap that is not retention's
		}
		w.initMetrics(tp)
		skipped := first - s.committed
		w.m.outOfRange.WithLabelValues(tp.topic, strconv.Itoa(tp.partition)).Add(float64(skipped))
		w.m.outOfRangeLast.WithLabelValues(tp.topic).SetToCurrentTime()
		w.log.Error("consumer group fell behind retention: records were deleted before it read them; they are not processed",
			"topic", tp.topic, "partition", tp.partition, "committed_offset", s.committed,
			"first_kept_offset", s.first, "resumed_at", first, "records_lost", skipped)
	}
}
