package erasure

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// An erasure that ClickHouse refuses part-way (here: mql cannot take the
// mutation; a user without ALTER DELETE, a server going away) is finished
// by erasing again: the retry still finds the lead merged into the erased
// one after retention dropped its alias event, which only its Redis state
// (Into) and its identity link prove, and deletes its rows.
func TestEraseRetryAfterClickHouseRefused(t *testing.T) {
	e, store, conn, ch := newEraser(t, "erase_retry")
	ctx := context.Background()
	db := ch.Database
	sfx := fmt.Sprintf("%x", rand.Uint64())
	x, b, vb := "jane@new.example-"+sfx, "jane@old.example-"+sfx, "visitor-of-b-"+sfx
	now := time.Now().UTC().Truncate(time.Second)
	var cs []leadstate.Commit
	for _, s := range []struct {
		subj scoring.Subject
		into string
	}{{scoring.Lead(x), ""}, {scoring.Lead(b), x}, {scoring.Anon(vb), b}} {
		cs = append(cs, leadstate.Commit{Subject: s.subj, State: &scoring.State{Subject: s.subj, Into: s.into, MaxTime: now.UnixMilli()}})
	}
	if res, err := store.Commit(ctx, cs); err != nil {
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
	// The alias event (b into x) is gone with its month; the links are kept.
	ins("events", 2,
		warehouse.Column{Name: "event_id", Values: []string{"e-b", "e-x"}},
		warehouse.Column{Name: "type", Values: []string{"form_submit", "form_submit"}},
		warehouse.Column{Name: "event_time", Values: []time.Time{now, now}},
		warehouse.Column{Name: "lead_id", Values: []string{b, x}})
	ins("identity_links", 2,
		warehouse.Column{Name: "anonymous_id", Values: []string{vb, b}},
		warehouse.Column{Name: "lead_id", Values: []string{b, x}},
		warehouse.Column{Name: "linked_at", Values: []time.Time{now, now}})
	ins("mql", 1,
		warehouse.Column{Name: "mql_id", Values: []string{"m-b"}},
		warehouse.Column{Name: "lead_id", Values: []string{b}},
		warehouse.Column{Name: "crossed_at", Values: []time.Time{now}})

	// mql refuses mutations: a Memory table stands in for it.
	exec := func(q string) {
		t.Helper()
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("RENAME TABLE " + db + ".mql TO " + db + ".mql_kept")
	exec("CREATE TABLE " + db + ".mql ENGINE = Memory AS SELECT * FROM " + db + ".mql_kept")
	if _, err := e.Erase(ctx, x, time.Minute); err == nil {
		t.Fatal("the erasure succeeded although mql refused its mutation")
	}
	exec("DROP TABLE " + db + ".mql")
	exec("RENAME TABLE " + db + ".mql_kept TO " + db + ".mql")

	res, err := e.Erase(ctx, x, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Done || !strings.Contains(strings.Join(res.Leads, ","), b) {
		t.Errorf("the retry erased leads %q (done %v), want the merged lead %s too", res.Leads, res.Done, b)
	}
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }
	for _, c := range []string{
		"SELECT count() FROM " + db + ".mql WHERE lead_id = " + q(b),
		"SELECT count() FROM " + db + ".events WHERE lead_id IN (" + q(b) + ", " + q(x) + ")",
		"SELECT count() FROM " + db + ".identity_links",
	} {
		if n := warehousetest.Count(t, conn, c); n != 0 {
			t.Errorf("%s = %d after the retry, want 0", c, n)
		}
	}
	for _, subj := range []scoring.Subject{scoring.Lead(x), scoring.Lead(b), scoring.Anon(vb)} {
		if st := leadstatetest.State(t, store, subj); st != nil {
			t.Errorf("%v still has a state after the retry", subj)
		}
	}
}
