package processor

import (
	"sync"

	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
)

// stateCache keeps the records this processor stored last, so the next
// batches need not read them from Redis again. It is only a hint: a record
// another processor changed since fails its compare-and-set, which returns
// the current one. Two generations of at most size entries each: when the
// current one is full it becomes the previous one, so memory stays bounded
// and recently used records survive.
type stateCache struct {
	mu         sync.Mutex
	size       int
	cur, prev  map[scoring.Subject]leadstate.Record
	hits, miss int
}

func newStateCache(size int) *stateCache {
	if size <= 0 {
		return nil
	}
	return &stateCache{size: size, cur: map[scoring.Subject]leadstate.Record{}}
}

// get returns the cached record of s.
func (c *stateCache) get(s scoring.Subject) (leadstate.Record, bool) {
	if c == nil {
		return leadstate.Record{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.cur[s]; ok {
		return r, true
	}
	r, ok := c.prev[s]
	if ok {
		c.putLocked(s, r)
	}
	return r, ok
}

// put caches records.
func (c *stateCache) put(recs map[scoring.Subject]leadstate.Record) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for s, r := range recs {
		c.putLocked(s, r)
	}
}

func (c *stateCache) putLocked(s scoring.Subject, r leadstate.Record) {
	if len(c.cur) >= c.size {
		c.prev, c.cur = c.cur, make(map[scoring.Subject]leadstate.Record, c.size)
	}
	c.cur[s] = r
}
