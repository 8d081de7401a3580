package erasure

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// newEraser is an Eraser on the test Redis, a migrated ClickHouse database
// and a Kafka broker.
func newEraser(t *testing.T, prefix string) (*Eraser, *leadstate.Store, driver.Conn, warehouse.Config) {
	t.Helper()
	conn, ch := warehousetest.Migrated(t, prefix)
	store := leadstatetest.Open(t, testsvc.Redis(t))
	topicPrefix := fmt.Sprintf("%s%x.", prefix, rand.Uint32())
	kcfg := stream.Config{Brokers: testsvc.Kafka(t, topicPrefix+stream.TopicErasures), TopicPrefix: topicPrefix, Partitions: 1, ReplicationFactor: -1}
	e := New(Config{Kafka: kcfg, ClickHouse: ch}, store, slog.New(slog.DiscardHandler), nil)
	t.Cleanup(e.Close)
	return e, store, conn, ch
}

// An erasure finds the leads merged into the erased one by alias after
// retention dropped the month of the alias event: identity_links (kept)
// links the merged lead's id as an anonymous id, and its state in Redis
// (Into) proves the merge, through chains (c → b → x). An id linked to the
// lead without such a state — another person's lead id a browser
// identified, a lead since merged elsewhere — is not erased as a lead.
func TestEraseFindsAliasMergeAfterRetention(t *testing.T) {
	e, store, conn, ch := newEraser(t, "erase_merged")
	ctx := context.Background()
	db := ch.Database
	sfx := fmt.Sprintf("%x", rand.Uint64())
	x, b, c := "jane@new.example-"+sfx, "jane@old.example-"+sfx, "jane@older.example-"+sfx
	vb, vc := "visitor-of-b-"+sfx, "visitor-of-c-"+sfx
	victim := "bob@example.com-" + sfx    // another person's lead, identified as x by a hostile browser
	elsewhere := "jim@example.com-" + sfx // a lead aliased into x, then into another lead
	other := "other@example.com-" + sfx
	now := time.Now().UTC().Truncate(time.Second)
	old := now.AddDate(-2, 0, 0)

	states := []leadstate.Commit{}
	put := func(subj scoring.Subject, into string) {
		states = append(states, leadstate.Commit{Subject: subj, State: &scoring.State{Subject: subj, Into: into, MaxTime: now.UnixMilli()}})
	}
	put(scoring.Lead(x), "")
	put(scoring.Lead(b), x)
	put(scoring.Lead(c), b)
	put(scoring.Anon(vb), b)
	put(scoring.Anon(vc), c)
	put(scoring.Lead(victim), "")
	put(scoring.Lead(elsewhere), other)
	put(scoring.Lead(other), "")
	if res, err := store.Commit(ctx, states); err != nil {
		t.Fatal(err)
	} else {
		for _, r := range res {
			if r.Status != leadstate.Stored {
				t.Fatalf("commit: %+v", r)
			}
		}
	}
	ins := func(table string, n int, cols ...warehouse.Column) {
		t.Helper()
		if err := warehouse.Insert(ctx, conn, db, table, n, cols); err != nil {
			t.Fatal(err)
		}
	}
	// Two years ago: the identifies and aliases; b and victim still send.
	ins("events", 6,
		warehouse.Column{Name: "event_id", Values: []string{"e1", "e2", "e3", "e4", "e5", "e6"}},
		warehouse.Column{Name: "type", Values: []string{"identify", "alias", "alias", "page_view", "identify", "page_view"}},
		warehouse.Column{Name: "event_time", Values: []time.Time{old, old, old, now, now, now}},
		warehouse.Column{Name: "anonymous_id", Values: []string{vb, "", "", vb, victim, ""}},
		warehouse.Column{Name: "lead_id", Values: []string{b, x, b, b, x, victim}},
		warehouse.Column{Name: "previous_id", Values: []string{"", b, c, "", "", ""}})
	ins("identity_links", 6,
		warehouse.Column{Name: "anonymous_id", Values: []string{vb, b, c, vc, victim, elsewhere}},
		warehouse.Column{Name: "lead_id", Values: []string{b, x, b, c, x, x}},
		warehouse.Column{Name: "linked_at", Values: []time.Time{old, old, old, old, now, old}})
	ins("mql", 2,
		warehouse.Column{Name: "mql_id", Values: []string{"m-b", "m-victim"}},
		warehouse.Column{Name: "lead_id", Values: []string{b, victim}},
		warehouse.Column{Name: "crossed_at", Values: []time.Time{now, now}})
	parts, err := warehouse.ExpiredPartitions(ctx, conn, db, now.AddDate(0, 0, -400))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if err := warehouse.DropPartition(ctx, conn, db, p); err != nil {
			t.Fatal(err)
		}
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+db+".events WHERE type = 'alias'"); n != 0 {
		t.Fatalf("%d alias events left after retention", n)
	}

	res, err := e.Erase(ctx, x, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{x, b, c}
	slices.Sort(want)
	if !slices.Equal(res.Leads, want) || !res.Done {
		t.Errorf("erased leads %q (done %v), want %q", res.Leads, res.Done, want)
	}
	for _, subj := range []scoring.Subject{scoring.Lead(x), scoring.Lead(b), scoring.Lead(c), scoring.Anon(vb), scoring.Anon(vc)} {
		if st := leadstatetest.State(t, store, subj); st != nil {
			t.Errorf("%v still has a state after the erasure", subj)
		}
	}
	for _, subj := range []scoring.Subject{scoring.Lead(victim), scoring.Lead(elsewhere), scoring.Lead(other)} {
		if st := leadstatetest.State(t, store, subj); st == nil {
			t.Errorf("%v lost its state: it was not merged into the erased lead", subj)
		}
	}
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }
	for _, l := range []string{b, c} {
		for _, table := range []string{"events", "identity_links", "mql"} {
			if n := warehousetest.Count(t, conn, "SELECT count() FROM "+db+"."+table+" WHERE lead_id = "+q(l)); n != 0 {
				t.Errorf("%d %s rows of the merged lead %s left", n, table, l)
			}
		}
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+db+".events WHERE lead_id = "+q(victim)); n != 1 {
		t.Errorf("%d events of the victim left, want 1", n)
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+db+".mql WHERE lead_id = "+q(victim)); n != 1 {
		t.Errorf("%d mql rows of the victim left, want 1", n)
	}
}
