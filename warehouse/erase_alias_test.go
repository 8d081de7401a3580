package warehouse_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// Erasing a lead that alias merged into another (merged_into) deletes the
// alias event that names it as previous id, as it deletes the identity
// link of that merge: no row names the erased lead afterwards (and a
// rescore cannot link the id to the other lead again). The other lead's
// own events stay.
func TestEraseRowsAliasOfMergedLead(t *testing.T) {
	conn, cfg := warehousetest.Migrated(t, "erase_alias")
	ctx := context.Background()
	db := cfg.Database
	old, survivor := "jane@old.example", "jane@new.example"
	now := time.Now().UTC().Truncate(time.Second)
	if err := warehouse.Insert(ctx, conn, db, "events", 3, []warehouse.Column{
		{Name: "event_id", Values: []string{"a1", "f1", "f2"}},
		{Name: "type", Values: []string{"alias", "form_submit", "form_submit"}},
		{Name: "event_time", Values: []time.Time{now, now, now}},
		{Name: "lead_id", Values: []string{survivor, old, survivor}},
		{Name: "previous_id", Values: []string{old, "", ""}}}); err != nil {
		t.Fatal(err)
	}
	if err := warehouse.Insert(ctx, conn, db, "identity_links", 1, []warehouse.Column{
		{Name: "anonymous_id", Values: []string{old}}, {Name: "lead_id", Values: []string{survivor}},
		{Name: "linked_at", Values: []time.Time{now}}, {Name: "event_id", Values: []string{"a1"}}}); err != nil {
		t.Fatal(err)
	}
	leads, anons, err := warehouse.Linked(ctx, conn, db, old)
	if err != nil {
		t.Fatal(err)
	}
	if err := warehouse.EraseRows(ctx, conn, db, leads, anons); err != nil {
		t.Fatal(err)
	}
	if done, err := warehouse.WaitMutations(ctx, conn, db, time.Minute); err != nil || !done {
		t.Fatalf("mutations done = %v, %v", done, err)
	}
	if got := strings.Join(queryStrings(t, conn, "SELECT event_id FROM "+db+".events ORDER BY event_id"), ","); got != "f2" {
		t.Errorf("events left %q, want the survivor's own f2 only (the alias event names the erased lead)", got)
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+db+".identity_links"); n != 0 {
		t.Errorf("%d identity links left, want none", n)
	}
}
