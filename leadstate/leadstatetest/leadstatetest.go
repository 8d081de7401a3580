// Package leadstatetest opens leadstate stores on the test Redis servers for
// the tests of leadstate and of the packages built on it.
package leadstatetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
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

// LinkedLead is the lead anon is linked to, or "".
func LinkedLead(t testing.TB, s *leadstate.Store, anon string) string {
	t.Helper()
	m, err := s.LinkedLeads(context.Background(), []string{anon})
	if err != nil {
		t.Fatal(err)
	}
	return m[anon]
}

// Traits is a lead's stored traits (nil when none).
func Traits(t testing.TB, s *leadstate.Store, lead string) map[string]any {
	t.Helper()
	m, err := s.TraitsMany(context.Background(), []string{lead})
	if err != nil {
		t.Fatal(err)
	}
	return m[lead]
}

// AckOutbox acknowledges a lead's pending MQL records by id.
func AckOutbox(t testing.TB, s *leadstate.Store, lead string, mqlIDs ...string) {
	t.Helper()
	ms := make([]event.MQL, len(mqlIDs))
	for i, id := range mqlIDs {
		ms[i] = event.MQL{LeadID: lead, MQLID: id}
	}
	if err := s.AckOutboxMany(context.Background(), ms); err != nil {
		t.Fatal(err)
	}
}

// AnonymousHistory is one visitor's history as a merge reads it.
func AnonymousHistory(t testing.TB, s *leadstate.Store, anon string, models []string) leadstate.History {
	t.Helper()
	h, err := s.AnonymousHistories(context.Background(), []string{anon}, models)
	if err != nil {
		t.Fatal(err)
	}
	return h[0]
}

// Apply applies one update (through ApplyMany, the one apply path).
func Apply(ctx context.Context, s *leadstate.Store, u *leadstate.Update) (leadstate.Result, error) {
	res, err := s.ApplyMany(ctx, []leadstate.Update{*u})
	if err != nil {
		return leadstate.Result{}, err
	}
	return res[0], nil
}
