package warehouse_test

import (
	"context"
	"testing"
	"time"

	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// EraseRows deletes the notifier's delivery attempts of the erased lead's
// MQL records (notifications.subject_id = the lead id), and keeps those of
// other leads and of accounts (kind mqa, whose subject is an account id).
func TestEraseRowsDeletesNotifications(t *testing.T) {
	conn, cfg := warehousetest.Migrated(t, "erase_notif")
	ctx := context.Background()
	db := cfg.Database
	lead, other := "jane'o@example.com", "bob@example.com"
	now := time.Now().UTC()
	if err := warehouse.Insert(ctx, conn, db, warehouse.TableNotifications, 4, []warehouse.Column{
		{Name: "destination", Values: []string{"crm", "crm", "crm", "crm"}},
		{Name: "kind", Values: []string{"mql", "mql", "mql", "mqa"}},
		{Name: "mql_id", Values: []string{"m1", "m1", "m2", "q1"}},
		{Name: "subject_id", Values: []string{lead, lead, other, lead}}, // an account named like the lead
		{Name: "attempt", Values: []uint32{1, 2, 1, 1}},
		{Name: "attempted_at", Values: []time.Time{now, now, now, now}}}); err != nil {
		t.Fatal(err)
	}
	leads, anons, err := warehouse.Linked(ctx, conn, db, lead)
	if err != nil {
		t.Fatal(err)
	}
	if err := warehouse.EraseRows(ctx, conn, db, leads, anons); err != nil {
		t.Fatal(err)
	}
	if done, err := warehouse.WaitMutations(ctx, conn, db, time.Minute); err != nil || !done {
		t.Fatalf("mutations done = %v, %v", done, err)
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+db+".notifications WHERE kind = 'mql' AND subject_id = 'jane\\'o@example.com'"); n != 0 {
		t.Errorf("%d notifications rows of the erased lead left", n)
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+db+".notifications"); n != 2 {
		t.Errorf("%d notifications rows left, want 2 (the other lead's, the account's)", n)
	}
	found := false
	for _, tb := range warehouse.ErasedTables {
		found = found || tb == warehouse.TableNotifications
	}
	if !found {
		t.Errorf("ErasedTables %q does not list %s: erasures would not wait for its mutation", warehouse.ErasedTables, warehouse.TableNotifications)
	}
}
