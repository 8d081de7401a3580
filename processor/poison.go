package processor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
)

// Poison records. Most records that can never be scored are found while
// planning (a record that does not decode, an identify whose traits are not
// finite: scoring.Dead) and dead-lettered with the rest of the batch going
// on. What is left can only show as an error of the whole batch:
//
//   - a state in Redis that does not decode (leadstate.ErrCorruptState) —
//     written by something else than leadstream, or damaged; retrying reads
//     the same bytes again. Each event that needs it is dead-lettered (with
//     the subject named in the reason) until the state is repaired: `leadstream
//     erase` or `rescore -apply` writes a good one. A key of a subject that
//     holds another Redis type than leadstream writes there (WRONGTYPE) is
//     the same (leadstate maps it to ErrCorruptState, naming the subject).
//
// Every other error (Redis or Kafka down, a timeout, compare-and-sets lost
// to other processors maxAttempts times) is transient: the consumer retries
// the batch whole until it succeeds or the process stops.
const (
	// maxRecordTries is how often an event scored alone is tried before it is
	// dead-lettered, in case the failure was not the event's after all.
	maxRecordTries = 3
	// recordRetryWait is the wait before the second try of an event alone,
	// doubled for each further one.
	recordRetryWait = 50 * time.Millisecond
)

// poisoned reports whether err means some record of a batch can never be
// stored, however often the batch is retried.
func poisoned(err error) bool {
	return err != nil && errors.Is(err, leadstate.ErrCorruptState)
}

// isolate scores a batch that failed with cause event by event, in order:
// an event that fails alone maxRecordTries times for a reason retrying
// cannot fix goes to the dead-letter topic with the reason; the others are
// scored as they would have been in the batch (scoring does not depend on
// how events are batched). A transient failure returns, and the consumer
// retries the whole batch: the events scored already are duplicates then.
func (p *Processor) isolate(ctx context.Context, b *prepared, cause error) error {
	p.log.Warn("a batch cannot be stored whole: scoring its events one by one", "events", len(b.events), "err", logSafe(cause))
	var dead []stream.Record
	// Once one event's failure was confirmed (maxRecordTries times), a
	// corrupt state is known to be the batch's trouble: a later event failing
	// the same way is not tried again, so a batch of many corrupt states is
	// done in one pass, within the consumer's time for a batch. And what an
	// attempt confirmed is kept for the next (p.poison), should the pass
	// still be cut short.
	confirmed := false
	if p.poison == nil {
		p.poison = map[poisonKey]string{}
	}
	for i, e := range b.events {
		m := b.msgs[i]
		key := poisonKey{m.Partition, m.Offset}
		if reason, ok := p.poison[key]; ok {
			dead = append(dead, stream.DeadLetter(*m, reason))
			continue
		}
		one := &prepared{events: []*event.Event{e}, msgs: b.msgs[i : i+1]}
		var err error
		for try := range maxRecordTries {
			if try > 0 {
				select {
				case <-ctx.Done():
					return fmt.Errorf("scoring a batch event by event: %w (last error: %s)", ctx.Err(), logSafe(err))
				case <-time.After(recordRetryWait << (try - 1)):
				}
			}
			one.recs = map[scoring.Subject]leadstate.Record{} // read afresh: a cached state may be what failed
			if err = p.score(ctx, one); !poisoned(err) || confirmed {
				break
			}
		}
		switch {
		case err == nil:
		case !poisoned(err):
			return err
		default:
			confirmed = true
			p.poison[key] = err.Error()
			dead = append(dead, stream.DeadLetter(*m, err.Error()))
		}
	}
	dead = append(dead, b.dead...)
	if len(dead) == 0 {
		return nil
	}
	if err := p.dead.ProduceAll(ctx, dead); err != nil {
		return fmt.Errorf("writing %d records to the dead-letter topic: %w", len(dead), err)
	}
	p.m.events.WithLabelValues(scoring.Dead.String()).Add(float64(len(dead)))
	p.log.Warn("records sent to the dead-letter topic", "count", len(dead), "first_reason", logSafe(cause))
	return nil
}

// logSafe describes err for a log line: a corrupt state's error names its
// subject (a lead id may be an e-mail address), which only the dead-letter
// reason, beside the record that holds it anyway, may carry.
func logSafe(err error) string {
	switch {
	case err == nil:
		return "none"
	case poisoned(err):
		return "a state stored in Redis does not decode (the dead-letter reasons name the subject)"
	}
	return err.Error()
}
