package notify

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/leadstream/leadstream/stream"
)

// dest is one destination at run time: its sender, its bounds and what it
// holds. Destinations share nothing but the recorder and the dead-letter
// producer, so one that is slow or down delays no other.
type dest struct {
	cfg     *Destination
	n       *Notifier
	s       sender
	timeout time.Duration
	window  chan struct{} // a slot per record held (notify.max-pending)
	slots   chan struct{} // a slot per attempt in flight (notify.concurrency)

	mu   sync.Mutex
	held map[*item]struct{}
}

// item is one record a destination holds.
type item struct {
	f         *feed
	msg       kafka.Message
	published time.Time
}

func newDest(n *Notifier, d *Destination) *dest {
	x := &dest{cfg: d, n: n, timeout: n.cfg.Timeout, held: map[*item]struct{}{},
		window: make(chan struct{}, n.cfg.MaxPending), slots: make(chan struct{}, n.cfg.Concurrency)}
	if d.Timeout > 0 {
		x.timeout = d.Timeout
	}
	switch d.Type {
	case TypeEmail:
		x.s = &emailSender{d: d, agent: "leadstream-notifier/" + n.cfg.Version}
	default:
		x.s = newWebSender(d, n.cfg.Concurrency, n.cfg.Version)
	}
	return x
}

// start delivers a fetched record in its own goroutine (its window slot is taken).
func (d *dest) start(f *feed, m kafka.Message) {
	it := &item{f: f, msg: m, published: m.Time}
	if it.published.IsZero() {
		it.published = time.Now()
	}
	d.mu.Lock()
	d.held[it] = struct{}{}
	d.mu.Unlock()
	d.n.m.pending.WithLabelValues(d.cfg.Name).Inc()
	d.n.deliveries.Add(1)
	go func() {
		defer d.n.deliveries.Done()
		done := d.deliver(it)
		d.mu.Lock()
		delete(d.held, it)
		d.mu.Unlock()
		d.n.m.pending.WithLabelValues(d.cfg.Name).Dec()
		f.release(m, done)
		<-d.window
	}()
}

// oldest is the age of the oldest record held, 0 when none.
func (d *dest) oldest(now time.Time) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	var age time.Duration
	for it := range d.held {
		age = max(age, now.Sub(it.published))
	}
	return age
}

// deliver tries a record until it is delivered, rejected for good or too
// old (then dead-lettered). It reports whether it is done with the record:
// false only when the notifier stopped first (the record stays uncommitted
// and is delivered again after a restart).
func (d *dest) deliver(it *item) bool {
	n := d.n
	name := d.cfg.Name
	rec, err := decodeRecord(it.f.kind, it.msg.Value)
	if err != nil {
		return d.deadLetter(it, err.Error())
	}
	if !d.cfg.Accepts(rec.Kind, rec.Model, rec.Score) {
		n.m.deliveries.WithLabelValues(name, resultFiltered).Inc()
		return true
	}
	deadline := it.published.Add(n.cfg.MaxAge)
	var last outcome
	for attempt := 1; ; attempt++ {
		if !time.Now().Before(deadline) {
			reason := fmt.Sprintf("not delivered within notify.max-age (%s) after %d attempts; last: %s", n.cfg.MaxAge, attempt-1, last.err)
			if attempt == 1 {
				reason = fmt.Sprintf("older than notify.max-age (%s) before its first attempt", n.cfg.MaxAge)
			}
			return d.deadLetter(it, reason)
		}
		select {
		case d.slots <- struct{}{}:
		case <-n.stopping:
			return false
		}
		if n.isStopping() { // both were ready: select chose at random
			<-d.slots
			return false
		}
		actx, cancel := context.WithTimeout(n.attemptCtx, d.timeout)
		start := time.Now()
		o := d.s.send(actx, rec, attempt)
		took := time.Since(start)
		cancel()
		<-d.slots
		last = o
		status := attemptDelivered
		switch {
		case o.ok:
		case o.permanent:
			status = attemptRejected
		case n.isStopping():
			status = attemptInterrupted
		case !time.Now().Before(deadline):
			status = attemptExpired
		default:
			status = attemptRetry
		}
		n.m.attempts.WithLabelValues(name, status).Inc()
		n.m.duration.WithLabelValues(name).Observe(took.Seconds())
		n.rec.add(attemptRow{Destination: name, Kind: rec.Kind, ID: rec.ID, Subject: rec.Subject, Model: rec.Model,
			Attempt: uint32(attempt), Status: status, Code: uint16(min(max(o.status, 0), 65535)), Error: o.err, Latency: took, At: start}, n.hardStop)
		switch status {
		case attemptDelivered:
			n.m.deliveries.WithLabelValues(name, resultDelivered).Inc()
			n.m.delay.WithLabelValues(name).Observe(time.Since(it.published).Seconds())
			return true
		case attemptRejected:
			return d.deadLetter(it, o.err)
		case attemptExpired:
			return d.deadLetter(it, fmt.Sprintf("not delivered within notify.max-age (%s) after %d attempts; last: %s", n.cfg.MaxAge, attempt, o.err))
		case attemptInterrupted:
			return false
		}
		wait := d.backoff(attempt, o.retryAfter)
		if until := time.Until(deadline); wait > until {
			wait = max(until, 0) // no attempt after the deadline: wake up to dead-letter
		}
		select {
		case <-time.After(wait):
		case <-n.stopping:
			return false
		}
	}
}

// backoff is the wait before attempt+1: RetryMin doubled per attempt up to
// RetryMax, drawn in its upper half (jitter spreads retries of many
// records), and at least what the receiver asked for.
func (d *dest) backoff(attempt int, retryAfter time.Duration) time.Duration {
	b := d.n.cfg.RetryMin
	for i := 1; i < attempt && b < d.n.cfg.RetryMax; i++ {
		b *= 2
	}
	b = min(b, d.n.cfg.RetryMax)
	b = b/2 + rand.N(b/2+1)
	return max(b, retryAfter)
}

// deadLetter writes the record to the dead-letter topic with the reason
// (naming the destination); done once Kafka acknowledged it.
func (d *dest) deadLetter(it *item, reason string) bool {
	n := d.n
	m := stream.Message{Topic: it.msg.Topic, Partition: it.msg.Partition, Offset: it.msg.Offset, Key: it.msg.Key, Value: it.msg.Value, Time: it.msg.Time}
	rec := stream.DeadLetter(m, fmt.Sprintf("notify destination %q: %s", d.cfg.Name, reason))
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(n.attemptCtx, 10*time.Second)
		err := n.dead.Produce(ctx, []stream.Record{rec})
		cancel()
		if err == nil {
			n.m.deliveries.WithLabelValues(d.cfg.Name, resultDeadLetter).Inc()
			// The dead letter keeps the whole reason; the log does not carry
			// the addresses a receiver's answer may name (an SMTP server
			// echoes the recipient it refused, a dial error the host's IP).
			n.log.Warn("notification dead-lettered", "destination", d.cfg.Name, "kind", it.f.kind, "reason", redactAddresses(reason))
			return true
		}
		n.log.Warn("writing a notification dead letter failed, retrying", "destination", d.cfg.Name, "err", err)
		select {
		case <-time.After(backoff):
		case <-n.hardStop:
			return false
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

var (
	emailLike = regexp.MustCompile(`[^\s<>()\[\]"',;:@]+@[^\s<>()\[\]"',;:@]+`)
	ipv4Like  = regexp.MustCompile(`\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b`)
	ipv6Like  = regexp.MustCompile(`[0-9A-Fa-f]*:[0-9A-Fa-f:]*:[0-9A-Fa-f]*(?:%[0-9A-Za-z]+)?`)
)

// redactAddresses is s with its e-mail addresses and IP addresses replaced
// by <email> and <ip>: what a reason may be logged as (personal data stays
// out of logs at info level and above).
func redactAddresses(s string) string {
	s = emailLike.ReplaceAllString(s, "<email>")
	ip := func(c string) string {
		a := strings.TrimRight(c, ":") // "2001:db8::1: connect…"
		if _, err := netip.ParseAddr(a); err != nil {
			return c
		}
		return "<ip>" + c[len(a):]
	}
	s = ipv4Like.ReplaceAllStringFunc(s, ip)
	return ipv6Like.ReplaceAllStringFunc(s, ip)
}
