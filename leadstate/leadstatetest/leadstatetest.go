// Package leadstatetest opens leadstate stores on the test Redis servers for
// the tests of leadstate and of the packages built on it, and reads what
// they stored.
package leadstatetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
)

// Each runs f against a single Redis and against the Redis Cluster, each
// store opened the way production opens it (leadstate.Open; several
// addresses = cluster).
func Each(t *testing.T, f func(t *testing.T, s *leadstate.Store)) {
	t.Helper()
	testsvc.EachRedis(t, func(t *testing.T, addr string) { f(t, Open(t, addr)) })
}

// Open opens a store on addr, closed when the test ends.
func Open(t testing.TB, addr string) *leadstate.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		clients.Delete(rdb)
		rdb.Close()
	})
	s := leadstate.NewStore(rdb)
	clients.Store(s, rdb)
	return s
}

// clients maps each store Open made to its Redis client.
var clients sync.Map

// Client is the Redis client of a store Open made, for tests that look at
// the keys themselves.
func Client(t testing.TB, s *leadstate.Store) redis.UniversalClient {
	t.Helper()
	c, ok := clients.Load(s)
	if !ok {
		t.Fatal("BUG: leadstatetest.Client of a store that leadstatetest.Open did not make")
	}
	return c.(redis.UniversalClient)
}

// Key is the name of a subject's key with suffix ("s", "o", "d:<bucket>"),
// derived from the layout the leadstate package comment documents (an
// operator with redis-cli derives it the same way).
func Key(s scoring.Subject, suffix string) string {
	h := sha256.Sum256([]byte(s.ID))
	ns := "l:"
	switch {
	case s.Anonymous:
		ns = "a:"
	case s.Account:
		ns = "c:"
	}
	return "ls2:{" + ns + hex.EncodeToString(h[:16]) + "}:" + suffix
}

// State reads a subject's stored state (nil when none).
func State(t testing.TB, s *leadstate.Store, subj scoring.Subject) *scoring.State {
	t.Helper()
	recs, err := s.Read(context.Background(), []scoring.Subject{subj})
	if err != nil {
		t.Fatal(err)
	}
	return recs[subj].State
}

// LinkedLead is the lead visitor anon was merged into, or "".
func LinkedLead(t testing.TB, s *leadstate.Store, anon string) string {
	t.Helper()
	if st := State(t, s, scoring.Anon(anon)); st != nil {
		return st.Into
	}
	return ""
}

// Traits is a lead's kept traits (nil when none).
func Traits(t testing.TB, s *leadstate.Store, lead string) map[string]any {
	t.Helper()
	st := State(t, s, scoring.Lead(lead))
	if st == nil || len(st.Traits) == 0 {
		return nil
	}
	out := map[string]any{}
	for k, tr := range st.Traits {
		var v any
		if err := json.Unmarshal(tr.Value, &v); err != nil {
			t.Fatalf("trait %s: %v", k, err)
		}
		out[k] = v
	}
	return out
}

// OutboxLen is how many MQL records wait in a lead's outbox.
func OutboxLen(t testing.TB, s *leadstate.Store, lead string) int64 {
	t.Helper()
	n, err := Client(t, s).HLen(context.Background(), Key(scoring.Lead(lead), "o")).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
