package ingest

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Rate is a token bucket: PerSecond events a second on average, up to Burst
// at once. The zero Rate is no limit.
type Rate struct {
	PerSecond float64
	Burst     int
}

// String writes r as its flag reads it: "RATE:BURST", or "0" for no limit.
func (r Rate) String() string {
	if r.PerSecond <= 0 {
		return "0"
	}
	return strconv.FormatFloat(r.PerSecond, 'f', -1, 64) + ":" + strconv.Itoa(r.Burst)
}

// Set parses "RATE:BURST", "RATE" (burst = 10 seconds of RATE, at least 1)
// or "0" (no limit).
func (r *Rate) Set(s string) error {
	rate, burst, hasBurst := strings.Cut(strings.TrimSpace(s), ":")
	per, err := strconv.ParseFloat(rate, 64)
	if err != nil || per < 0 || math.IsInf(per, 0) || math.IsNaN(per) {
		return fmt.Errorf("rate %q: want EVENTS_PER_SECOND[:BURST], e.g. 100:1000, or 0 for no limit", s)
	}
	if per == 0 {
		*r = Rate{}
		return nil
	}
	b := int(min(math.Ceil(per*10), 1<<30))
	if hasBurst {
		if b, err = strconv.Atoi(burst); err != nil || b < 1 {
			return fmt.Errorf("rate %q: the burst must be a whole number >= 1", s)
		}
	}
	*r = Rate{PerSecond: per, Burst: b}
	return nil
}

// gcra is a token bucket as the generic cell rate algorithm: one number per
// bucket, the theoretical arrival time (TAT) of the next event when the bucket
// is full. Taking n events moves it n intervals later; they are refused when
// that puts it more than the burst's worth of intervals ahead of now.
type gcra struct {
	interval  int64 // nanoseconds per event
	tolerance int64 // burst × interval
	burst     int
}

func newGCRA(r Rate) gcra {
	iv := max(int64(1e9/r.PerSecond), 1)
	return gcra{interval: iv, tolerance: iv * int64(r.Burst), burst: r.Burst}
}

// cost is what n events take: each one (a request at least one). A batch
// of more than the burst can never pass (see Collector.limit).
func (g gcra) cost(n int) int64 { return int64(max(n, 1)) * g.interval }

// next returns the bucket's new TAT for taking n events at now, or how long
// to wait when they are refused.
func (g gcra) next(tat, now int64, n int) (int64, time.Duration, bool) {
	tat = max(tat, now) + g.cost(n)
	if over := tat - now - g.tolerance; over > 0 {
		return 0, time.Duration(over), false
	}
	return tat, 0, true
}

// keyBucket is one write key's bucket: a single word updated by
// compare-and-swap, so concurrent requests never wait for a lock.
type keyBucket struct {
	g   gcra
	tat atomic.Int64
}

func (b *keyBucket) take(n int, now int64) (time.Duration, bool) {
	for {
		old := b.tat.Load()
		tat, wait, ok := b.g.next(old, now, n)
		if !ok {
			return wait, false
		}
		if b.tat.CompareAndSwap(old, tat) {
			return 0, true
		}
	}
}

func (b *keyBucket) refund(n int) { b.tat.Add(-b.g.cost(n)) }

// ipBuckets are the buckets of client addresses, in shards of their own lock
// so requests from different addresses rarely meet on one. An IPv6 client is
// its /64 (one host usually has a whole /64 to choose addresses from).
//
// Memory is bounded: each shard keeps two generations of at most
// ipShardSize addresses; when the current one fills up, the older one is
// dropped and the current one becomes it. An address not seen for a
// generation is forgotten, which is what a full bucket would say anyway
// unless more addresses than that flood the collector at once (then one of
// them may start again with a full bucket).
type ipBuckets struct {
	g      gcra
	shards [ipShards]ipShard
}

const (
	ipShards    = 64
	ipShardSize = 1024 // per generation: at most 2 × 64 × 1024 addresses, a few MB
)

type ipShard struct {
	mu       sync.Mutex
	cur, old map[[16]byte]int64 // address → TAT
	_        [40]byte           // one shard per cache line
}

func newIPBuckets(r Rate) *ipBuckets {
	b := &ipBuckets{g: newGCRA(r)}
	for i := range b.shards {
		b.shards[i].cur = make(map[[16]byte]int64)
	}
	return b
}

// ipBucketKey is the bucket of a: IPv4 as it is, IPv6 its /64.
func ipBucketKey(a netip.Addr) [16]byte {
	a = a.Unmap()
	k := a.As16()
	if a.Is6() {
		clear(k[8:])
	}
	return k
}

func (b *ipBuckets) shard(k [16]byte) *ipShard {
	h := (binary.LittleEndian.Uint64(k[:8]) ^ binary.LittleEndian.Uint64(k[8:])*0x9e3779b97f4a7c15) * 0xff51afd7ed558ccd
	return &b.shards[h>>58]
}

// take takes n events from a's bucket at now, or says how long to wait.
func (b *ipBuckets) take(a netip.Addr, n int, now int64) (time.Duration, bool) {
	k := ipBucketKey(a)
	s := b.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	tat, wait, ok := b.g.next(s.get(k), now, n)
	if !ok {
		return wait, false
	}
	s.put(k, tat)
	return 0, true
}

// get is k's TAT (0: unknown, a full bucket). The caller holds s.mu.
func (s *ipShard) get(k [16]byte) int64 {
	tat, ok := s.cur[k]
	if !ok {
		tat = s.old[k]
	}
	return tat
}

// put stores k's TAT in the current generation, starting a new one when it
// is full. The caller holds s.mu.
func (s *ipShard) put(k [16]byte, tat int64) {
	if len(s.cur) >= ipShardSize {
		if _, in := s.cur[k]; !in {
			s.old, s.cur = s.cur, make(map[[16]byte]int64, ipShardSize/4)
		}
	}
	s.cur[k] = tat
}

// over reports whether a's bucket has not even one event left at now, and
// how long until it has: a request from it can be refused before its body
// is read.
func (b *ipBuckets) over(a netip.Addr, now int64) (time.Duration, bool) {
	k := ipBucketKey(a)
	s := b.shard(k)
	s.mu.Lock()
	tat := s.get(k)
	s.mu.Unlock()
	_, wait, ok := b.g.next(tat, now, 1)
	return wait, !ok
}

// drain empties a's bucket at now (a request that can never pass: the
// next ones from a are refused before their body is read, until it refills).
func (b *ipBuckets) drain(a netip.Addr, now int64) {
	k := ipBucketKey(a)
	s := b.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(k, max(s.get(k), now+b.g.tolerance))
}

// refund gives n events back to a's bucket (another limit refused them).
func (b *ipBuckets) refund(a netip.Addr, n int) {
	k := ipBucketKey(a)
	s := b.shard(k)
	s.mu.Lock()
	if tat, ok := s.cur[k]; ok {
		s.cur[k] = tat - b.g.cost(n)
	}
	s.mu.Unlock()
}

// retryAfter is a Retry-After value: whole seconds, at least 1.
func retryAfter(wait time.Duration) string {
	return strconv.FormatInt(max(int64(math.Ceil(wait.Seconds())), 1), 10)
}
