package warehouse_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// Linked finds a lead's visitors and the leads merged into it, and
// EraseRows deletes their rows and nothing of other people — with ids that
// need quoting in SQL.
func TestEraseRows(t *testing.T) {
	conn, cfg := warehousetest.Migrated(t, "erase")
	ctx := context.Background()
	db := cfg.Database
	x, b := `o'brien\x@example.com`, "old-lead-b"
	v1, v2, y, z := "visitor-1 'quoted'", "visitor-2\nline", "lead-y", "lead-z"
	now := time.Now().UTC().Truncate(time.Second)
	type ev struct{ id, typ, anon, lead, prev string }
	evs := []ev{
		{"e1", "page_view", v1, "", ""}, {"e2", "identify", v1, x, ""}, {"e3", "form_submit", "", x, ""},
		{"e4", "page_view", v2, "", ""}, {"e5", "identify", v2, b, ""}, {"e6", "alias", "", x, b},
		{"e7", "page_view", v1, y, ""}, // another lead on the same browser
		{"e8", "page_view", "", z, ""},
	}
	pick := func(f func(ev) string) []string {
		var out []string
		for _, e := range evs {
			out = append(out, f(e))
		}
		return out
	}
	times := make([]time.Time, len(evs))
	for i := range times {
		times[i] = now.AddDate(0, -i, 0) // several partitions
	}
	insert := func(table string, cols ...warehouse.Column) {
		t.Helper()
		n := reflect.ValueOf(cols[0].Values).Len()
		if err := warehouse.Insert(ctx, conn, db, table, n, cols); err != nil {
			t.Fatal(err)
		}
	}
	insert("events",
		warehouse.Column{Name: "event_id", Values: pick(func(e ev) string { return e.id })},
		warehouse.Column{Name: "type", Values: pick(func(e ev) string { return e.typ })},
		warehouse.Column{Name: "event_time", Values: times},
		warehouse.Column{Name: "anonymous_id", Values: pick(func(e ev) string { return e.anon })},
		warehouse.Column{Name: "lead_id", Values: pick(func(e ev) string { return e.lead })},
		warehouse.Column{Name: "previous_id", Values: pick(func(e ev) string { return e.prev })})
	insert("identity_links",
		warehouse.Column{Name: "anonymous_id", Values: []string{v1, v2, b, v1}},
		warehouse.Column{Name: "lead_id", Values: []string{x, b, x, y}},
		warehouse.Column{Name: "linked_at", Values: []time.Time{now, now, now, now}})
	insert("mql",
		warehouse.Column{Name: "mql_id", Values: []string{"m-x", "m-b", "m-y"}},
		warehouse.Column{Name: "lead_id", Values: []string{x, b, y}},
		warehouse.Column{Name: "crossed_at", Values: []time.Time{now, now.AddDate(-1, 0, 0), now}})

	insert("account_members",
		warehouse.Column{Name: "account_id", Values: []string{"acme", "acme", "acme", "globex", "initech"}},
		warehouse.Column{Name: "lead_id", Values: []string{x, "", y, b, ""}},
		warehouse.Column{Name: "anonymous_id", Values: []string{"", v2, v1, "", v2}},
		warehouse.Column{Name: "joined_at", Values: []time.Time{now, now, now, now, now}},
		warehouse.Column{Name: "event_id", Values: []string{"g1", "g2", "g3", "g4", "g5"}})
	insert("mqa",
		warehouse.Column{Name: "mqa_id", Values: []string{"q-acme", "q-other"}},
		warehouse.Column{Name: "account_id", Values: []string{"acme", "initech"}},
		warehouse.Column{Name: "crossed_at", Values: []time.Time{now, now}},
		warehouse.Column{Name: "top_members.lead_id", Values: [][]string{{y, x, b}, {z}}},
		warehouse.Column{Name: "top_members.points", Values: [][]float64{{1, 2, 3}, {4}}})

	leads, anons, err := warehouse.Linked(ctx, conn, db, x)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{x, b}; !reflect.DeepEqual(leads, want) {
		t.Errorf("leads %q, want %q", leads, want)
	}
	if want := []string{b, v1, v2}; !reflect.DeepEqual(anons, want) {
		t.Errorf("anonymous ids %q, want %q", anons, want)
	}
	// initech only by the visitor's group call (its row has no lead id).
	if accts, err := warehouse.Accounts(ctx, conn, db, leads, anons); err != nil || !reflect.DeepEqual(accts, []string{"acme", "globex", "initech"}) {
		t.Errorf("accounts %q, %v; want acme, globex, initech", accts, err)
	}
	if err := warehouse.EraseRows(ctx, conn, db, leads, anons); err != nil {
		t.Fatal(err)
	}
	done, err := warehouse.WaitMutations(ctx, conn, db, time.Minute)
	if err != nil || !done {
		t.Fatalf("mutations done = %v, %v", done, err)
	}
	left := func(q string) string {
		t.Helper()
		return strings.Join(queryStrings(t, conn, q), ",")
	}
	for q, want := range map[string]string{
		"SELECT event_id FROM " + db + ".events ORDER BY event_id":                                       "e7,e8",
		"SELECT concat(anonymous_id, '>', lead_id) FROM " + db + ".identity_links ORDER BY anonymous_id": v1 + ">" + y,
		"SELECT mql_id FROM " + db + ".mql ORDER BY mql_id":                                              "m-y",
		"SELECT event_id FROM " + db + ".account_members ORDER BY event_id":                              "g3",
		"SELECT concat(mqa_id, ':', arrayStringConcat(top_members.lead_id, '+'), ':', arrayStringConcat(arrayMap(p -> toString(p), top_members.points), '+')) FROM " + db + ".mqa ORDER BY mqa_id": "q-acme:" + y + ":1,q-other:" + z + ":4",
	} {
		if got := left(q); got != want {
			t.Errorf("%s: %q left, want %q", q, got, want)
		}
	}
	if n, err := warehouse.PendingMutations(ctx, conn, db); err != nil || n != 0 {
		t.Errorf("pending mutations %d, %v", n, err)
	}
}
