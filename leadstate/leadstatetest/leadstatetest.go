// Package leadstatetest opens leadstate stores on the test Redis servers for
// the tests of leadstate and of the packages built on it.
package leadstatetest

import (
	"context"
	"testing"
	"time"

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
	t.Cleanup(func() { rdb.Close() })
	return leadstate.NewStore(rdb)
}
