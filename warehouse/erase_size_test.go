package warehouse_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// quoted is an id of 254 bytes, most of them quotes: it doubles when
// escaped into a query.
func quoted(prefix string, i int) string {
	id := fmt.Sprintf("%s%04d", prefix, i)
	return id + strings.Repeat("'", 254-len(id))
}

// An erasure of a lead with a thousand visitors whose ids need escaping
// (a browser key can link that many to a lead), and of hundreds of such
// leads, stays under ClickHouse's max_query_size: every statement, the mqa
// UPDATE naming its ids three times included, is cut by bytes, not by count.
func TestEraseRowsLongEscapedIDs(t *testing.T) {
	conn, cfg := warehousetest.Migrated(t, "erase_size")
	ctx := context.Background()
	db := cfg.Database
	lead := "victim@example.com"
	var anons, linkedTo, merged, members []string
	var at []time.Time
	var points []float64
	for i := range 1000 {
		anons = append(anons, quoted("v", i))
		linkedTo = append(linkedTo, lead)
		at = append(at, time.Now())
	}
	for i := range 300 {
		merged = append(merged, quoted("l", i))
		members = append(members, quoted("l", i))
		points = append(points, 1)
	}
	members = append(members, "colleague")
	points = append(points, 2)
	if err := warehouse.Insert(ctx, conn, db, "identity_links", len(anons), []warehouse.Column{
		{Name: "anonymous_id", Values: anons}, {Name: "lead_id", Values: linkedTo}, {Name: "linked_at", Values: at}}); err != nil {
		t.Fatal(err)
	}
	if err := warehouse.Insert(ctx, conn, db, "mqa", 1, []warehouse.Column{
		{Name: "mqa_id", Values: []string{"q1"}}, {Name: "account_id", Values: []string{"acme"}},
		{Name: "crossed_at", Values: []time.Time{time.Now()}},
		{Name: "top_members.lead_id", Values: [][]string{members}},
		{Name: "top_members.points", Values: [][]float64{points}}}); err != nil {
		t.Fatal(err)
	}
	leads, found, err := warehouse.Linked(ctx, conn, db, lead)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != len(anons) {
		t.Fatalf("Linked found %d visitors, want %d", len(found), len(anons))
	}
	if _, err := warehouse.Accounts(ctx, conn, db, append(leads, merged...), found); err != nil {
		t.Fatalf("Accounts of %d long lead ids and %d visitors: %.300s", len(merged)+1, len(found), err)
	}
	if err := warehouse.EraseRows(ctx, conn, db, append(leads, merged...), found); err != nil {
		t.Fatalf("EraseRows of %d leads and %d visitors: %.300s", len(merged)+1, len(found), err)
	}
	if done, err := warehouse.WaitMutations(ctx, conn, db, time.Minute); err != nil || !done {
		t.Fatalf("mutations done = %v, %v", done, err)
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+db+".identity_links"); n != 0 {
		t.Errorf("%d identity_links rows left", n)
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+db+".mqa WHERE top_members.lead_id = ['colleague'] AND top_members.points = [2]"); n != 1 {
		t.Errorf("mqa top_members not reduced to the colleague")
	}
}

// When ClickHouse refuses a statement of an erasure, the error (which the
// erasure logs) does not quote the ids the statement names.
func TestEraseRowsErrorLeavesOutIDs(t *testing.T) {
	conn, cfg := warehousetest.Migrated(t, "erase_errids")
	secret := "jane.secret.person@example.com"
	// A tiny max_query_size: the server refuses the statement quoting it.
	ctx := clickhouse.Context(context.Background(), clickhouse.WithSettings(clickhouse.Settings{"max_query_size": 200}))
	_, _, err := warehouse.Linked(ctx, conn, cfg.Database, secret+strings.Repeat("x", 300))
	if err == nil || strings.Contains(err.Error(), "jane") {
		t.Errorf("Linked: %v; want an error without the id", err)
	}
	if _, err := warehouse.Accounts(ctx, conn, cfg.Database, nil, []string{secret + "-visitor" + strings.Repeat("y", 300)}); err == nil || strings.Contains(err.Error(), "jane") {
		t.Errorf("Accounts of a visitor: %v; want an error without the id", err)
	}
	err = warehouse.EraseRows(ctx, conn, cfg.Database, []string{secret + strings.Repeat("x", 300)}, []string{secret + "-visitor" + strings.Repeat("y", 300)})
	if err == nil || strings.Contains(err.Error(), "jane") {
		t.Errorf("EraseRows: %v; want an error without the ids", err)
	}
	t.Logf("EraseRows: %v", err)
}
