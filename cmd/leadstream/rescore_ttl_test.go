package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// rescore -apply writes a visitor's state to expire anonymous-ttl after
// the visitor's last event, as the processors did: a visitor last seen
// longer ago than that has no live state and is not brought back, and one
// seen 10 days ago keeps 10 days less than a whole TTL. The visitor's last
// event may be one that went through it to its lead.
func TestRescoreApplyVisitorExpiry(t *testing.T) {
	conn, ch := warehousetest.Migrated(t, "rescore_ttl")
	redisAddr := testsvc.Redis(t)
	store := leadstatetest.Open(t, redisAddr)
	ctx := context.Background()
	sfx := fmt.Sprintf("%x", rand.Uint64())
	gone, recent, via, lead := "gone-"+sfx, "recent-"+sfx, "via-"+sfx, "lead-"+sfx
	now := time.Now().UTC().Truncate(time.Second)
	long, tenDays, fiveDays := now.AddDate(0, 0, -500), now.AddDate(0, 0, -10), now.AddDate(0, 0, -5)
	// via identified long ago; its last event (5 days ago) went to the lead.
	times := []time.Time{long, tenDays, long, long, fiveDays}
	if err := warehouse.Insert(ctx, conn, ch.Database, "events", len(times), []warehouse.Column{
		{Name: "event_id", Values: []string{"g1", "r1", "v1", "v2", "v3"}},
		{Name: "type", Values: []string{"page_view", "page_view", "page_view", "identify", "page_view"}},
		{Name: "event_time", Values: times},
		{Name: "event_time_ms", Values: msOf(times)},
		{Name: "received_at", Values: times},
		{Name: "anonymous_id", Values: []string{gone, recent, via, via, via}},
		{Name: "lead_id", Values: []string{"", "", "", lead, lead}},
		{Name: "path", Values: []string{"/", "/", "/", "", "/"}}}); err != nil {
		t.Fatal(err)
	}
	err := runRescore(ctx, []string{"-clickhouse.addr", ch.Addr, "-clickhouse.database", ch.Database,
		"-redis.addr", redisAddr, "-rules", "../../scoring/default_rules.yaml", "-apply"})
	if err != nil {
		t.Fatal(err)
	}
	if st := leadstatetest.State(t, store, scoring.Lead(lead)); st == nil {
		t.Fatal("the lead was not written")
	}
	if st := leadstatetest.State(t, store, scoring.Anon(gone)); st != nil {
		t.Errorf("a visitor last seen 500 days ago was written (anonymous-ttl 400 days): %+v", st)
	}
	c := leadstatetest.Client(t, store)
	ttl := scoring.DefaultAnonymousTTL
	for _, v := range []struct {
		id   string
		last time.Time
	}{{recent, tenDays}, {via, fiveDays}} {
		want := time.Until(v.last.Add(ttl))
		got := c.PTTL(ctx, leadstatetest.Key(scoring.Anon(v.id), "s")).Val()
		if got <= 0 || got > want+time.Minute || got < want-time.Hour {
			t.Errorf("visitor %s expires in %v, want about %v (anonymous-ttl after its last event)", v.id, got, want)
		}
	}
}

func msOf(ts []time.Time) []uint64 {
	out := make([]uint64, len(ts))
	for i, t := range ts {
		out[i] = uint64(t.UnixMilli())
	}
	return out
}
