package notify

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// feed is one destination's consumer of one topic (mql or mqa), in its own
// consumer group, so that destinations move through the topics at their own
// pace: a slow or dead destination holds back only its own groups.
//
// Offsets: records are delivered concurrently (up to the destination's
// window), so they finish out of order. Per partition the feed tracks the
// offsets still pending and commits the lowest pending offset (or, with none
// pending, the one after the highest fetched): everything below a committed
// offset is delivered or dead-lettered. A record stuck in retries holds its
// partition's commit back, not the deliveries after it; after a crash those
// later records are delivered again, with the same idempotency key.
type feed struct {
	d      *dest
	kind   string
	topic  string
	reader *kafka.Reader

	mu    sync.Mutex
	parts map[int]*partition
}

type partition struct {
	pending   map[int64]bool
	highest   int64 // highest offset fetched; -1 = none
	committed int64 // offset last committed (the next to read); -1 = none yet
}

// commitInterval is how often finished work is committed.
const commitInterval = 100 * time.Millisecond

func newFeed(d *dest, kind, topic string) *feed {
	n := d.n
	kc := n.cfg.Kafka
	session := kc.SessionTimeout
	if session <= 0 {
		session = 10 * time.Second
	}
	log := n.log.With("destination", d.cfg.Name, "kind", kind)
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     kc.Brokers,
		Dialer:      n.kg.Dialer,
		GroupID:     n.cfg.GroupPrefix + "." + d.cfg.Name + "." + kind,
		GroupTopics: []string{topic},
		MinBytes:    1,
		MaxBytes:    4 << 20,
		// A fetch returns as soon as a record is there (MinBytes 1); the
		// wait bounds idle long polls. kafka-go uses it as the connection's
		// deadline too, so a short one fails on a busy machine.
		MaxWait: 3 * time.Second,
		// Offsets are committed by the feed itself (commitLoop), only for
		// finished work.
		CommitInterval: 0,
		// A new group starts at the beginning: nothing published is skipped
		// (records already past notify.max-age are dead-lettered).
		StartOffset:       kafka.FirstOffset,
		SessionTimeout:    session,
		HeartbeatInterval: session / 3,
		RebalanceTimeout:  session,
		ReadBackoffMin:    50 * time.Millisecond,
		ReadBackoffMax:    time.Second,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			text := fmt.Sprintf(msg, args...)
			if strings.HasSuffix(text, "i/o timeout") {
				// A long poll on an idle partition that outlived kafka-go's
				// deadline (set to MaxWait itself): retried, nothing lost.
				log.Debug(text)
				return
			}
			log.Warn(text)
		}),
	})
	return &feed{d: d, kind: kind, topic: topic, reader: r, parts: map[int]*partition{}}
}

// run fetches records and hands each to a delivery, until ctx ends.
func (f *feed) run(ctx context.Context) {
	for {
		m, err := f.reader.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			f.d.n.log.Warn("fetching notifications failed, retrying", "destination", f.d.cfg.Name, "kind", f.kind, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		if !f.take(m) {
			continue
		}
		select {
		case f.d.window <- struct{}{}:
		case <-ctx.Done():
			f.release(m, false)
			return
		}
		f.d.start(f, m)
	}
}

// take registers a fetched record as pending; false when this process has
// seen it already (fetched again after a rebalance): it is in flight or done.
func (f *feed) take(m kafka.Message) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.parts[m.Partition]
	if p == nil {
		p = &partition{pending: map[int64]bool{}, highest: -1, committed: -1}
		f.parts[m.Partition] = p
	}
	if m.Offset <= p.highest {
		return false
	}
	p.highest = m.Offset
	p.pending[m.Offset] = true
	return true
}

// release ends a record: done (delivered, dead-lettered or filtered) lets
// its partition's commit move past it; not done (shutdown) keeps it pending,
// so it is redelivered after a restart.
func (f *feed) release(m kafka.Message, done bool) {
	if !done {
		return
	}
	f.mu.Lock()
	delete(f.parts[m.Partition].pending, m.Offset)
	f.mu.Unlock()
}

// commits are the offsets to commit now: per partition the lowest pending
// offset, else the one after the highest fetched, when it moved.
func (f *feed) commits() []kafka.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []kafka.Message
	for id, p := range f.parts {
		next := p.highest + 1
		for off := range p.pending {
			next = min(next, off)
		}
		if next > p.committed && next > 0 {
			// kafka-go commits a message's offset + 1.
			out = append(out, kafka.Message{Topic: f.topic, Partition: id, Offset: next - 1})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Partition < out[b].Partition })
	return out
}

func (f *feed) committedTo(msgs []kafka.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range msgs {
		if p := f.parts[m.Partition]; p != nil {
			p.committed = max(p.committed, m.Offset+1)
		}
	}
}

// commit commits finished work; a failure is retried at the next tick.
func (f *feed) commit(ctx context.Context) {
	msgs := f.commits()
	if len(msgs) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := f.reader.CommitMessages(cctx, msgs...); err != nil {
		f.d.n.m.commitErrs.WithLabelValues(f.d.cfg.Name).Inc()
		f.d.n.log.Warn("committing notification offsets failed, retrying", "destination", f.d.cfg.Name, "kind", f.kind, "err", err)
		return
	}
	f.committedTo(msgs)
}

// commitLoop commits finished work every commitInterval until stop; a
// commit in flight (waiting for Kafka) ends at stop, which commits what is
// finished itself.
func (f *feed) commitLoop(ctx context.Context, stop <-chan struct{}) {
	t := time.NewTicker(commitInterval)
	defer t.Stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if ctx.Err() != nil {
				return // stop came with the tick
			}
			f.commit(ctx)
			f.d.n.m.lag.WithLabelValues(f.d.cfg.Name, f.kind).Set(float64(f.reader.Stats().Lag))
		}
	}
}
