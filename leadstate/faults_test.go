package leadstate_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// A cluster that keeps serving the slots of its live masters while one is
// down (cluster-require-full-coverage no) keeps storing the leads of those
// slots: storing a state does not need every node of the cluster, also when
// the commit script is not loaded yet (a processor started, or a node that
// restarted empty, while another is down).
func TestCommitWithAMasterDown(t *testing.T) {
	c := testsvc.PrivateRedisCluster(t, "--cluster-require-full-coverage", "no")
	s := leadstatetest.Open(t, strings.Join(c.Addrs[1:], ","))
	rdb := leadstatetest.Client(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lead := leadServedBy(t, rdb, c.Addrs[1])
	if err := c.StopNode(0); err != nil {
		t.Fatal(err)
	}
	st := sampleState(lead)
	day := time.Now().Add(24 * time.Hour).UnixMilli()
	res, err := s.Commit(ctx, []leadstate.Commit{{Subject: lead, State: st, Seen: []leadstate.Seen{{FP: 1, Bucket: 7, ExpireAt: day}}}})
	if err != nil {
		t.Fatalf("storing a lead of a live master with another master down: %v", err)
	}
	if res[0].Status != leadstate.Stored {
		t.Fatalf("commit: %+v", res[0])
	}
}

// leadServedBy returns a new lead whose keys' slot the master at addr serves.
func leadServedBy(t *testing.T, rdb redis.UniversalClient, addr string) scoring.Subject {
	t.Helper()
	ctx := context.Background()
	slots, err := rdb.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for range 10_000 {
		lead := scoring.Lead(newID("lead"))
		slot, err := rdb.ClusterKeySlot(ctx, leadstatetest.Key(lead, "s")).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range slots {
			if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 && r.Nodes[0].Addr == addr {
				return lead
			}
		}
	}
	t.Fatalf("no lead found in the slots of %s", addr)
	return scoring.Subject{}
}

// The commit script is run again after the server lost it (SCRIPT FLUSH, a
// restart, a failover, a new node): EVALSHA's NOSCRIPT is answered by
// sending the commit as EVAL, once.
func TestCommitAfterScriptFlush(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		lead := scoring.Lead(newID("lead"))
		day := time.Now().Add(24 * time.Hour).UnixMilli()
		r := commit(t, s, leadstate.Commit{Subject: lead, State: sampleState(lead), Seen: []leadstate.Seen{{FP: 1, Bucket: 7, ExpireAt: day}}})
		if r.Status != leadstate.Stored {
			t.Fatalf("first commit: %+v", r)
		}
		if err := leadstatetest.Client(t, s).ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if r = commit(t, s, leadstate.Commit{Subject: lead, Expect: r.Version, State: sampleState(lead), Seen: []leadstate.Seen{{FP: 2, Bucket: 7, ExpireAt: day}}}); r.Status != leadstate.Stored {
			t.Fatalf("commit after SCRIPT FLUSH: %+v", r)
		}
	})
}

// A commit with a crossing on a lead whose outbox key holds another type
// (written by something else) stores nothing — not the state without its
// crossing — and fails with ErrCorruptState naming the lead.
func TestCommitOutboxOfAnotherType(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		lead := scoring.Lead(newID("lead"))
		if err := leadstatetest.Client(t, s).Set(ctx, leadstatetest.Key(lead, "o"), "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		mql := event.MQL{MQLID: event.MQLID(lead.ID, "default", "evt-1"), LeadID: lead.ID, Model: "default", TriggerEventID: "evt-1"}
		day := time.Now().Add(24 * time.Hour).UnixMilli()
		_, err := s.Commit(ctx, []leadstate.Commit{{Subject: lead, State: sampleState(lead), Seen: []leadstate.Seen{{FP: 1, Bucket: 7, ExpireAt: day}}, MQLs: []event.MQL{mql}}})
		if !errors.Is(err, leadstate.ErrCorruptState) || !strings.Contains(err.Error(), lead.ID) {
			t.Fatalf("commit: %v, want ErrCorruptState naming %s", err, lead.ID)
		}
		if st := leadstatetest.State(t, s, lead); st != nil {
			t.Fatalf("state stored without its crossing: %+v", st)
		}
		if _, err := s.Outbox(ctx, []string{lead.ID}); !errors.Is(err, leadstate.ErrCorruptState) {
			t.Fatalf("outbox: %v, want ErrCorruptState", err)
		}
	})
}

// Evictions reads every master's memory settings: the test servers have no
// memory limit, so nothing is evicted.
func TestEvictions(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		evs, err := s.Evictions(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			t.Fatal("no servers")
		}
		for _, e := range evs {
			if e.Addr == "" || e.Policy == "" || e.Evicts() {
				t.Errorf("%+v", e)
			}
		}
	})
}
