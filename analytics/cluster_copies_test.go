package analytics

import (
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// An email click's id is SHA-256(token, hour) (ingest/email.go), and its
// anonymous_id is the cookie of the browser that clicked: the same link
// clicked twice in one hour from two browsers, through two collectors or
// across a restart, is one event id twice with different anonymous ids.
// One server folds them (same type, day and id); a cluster must too: its
// events are sharded by event id, so both copies are on one shard, where
// FINAL folds them. (Sharded by the visitor's or lead's id, as before
// schema version 5, they landed on two shards and counted twice.)
func TestClusterEmailClickCopiesOnTwoAnonymousIDs(t *testing.T) {
	conn, cfg := warehousetest.MigratedCluster(t, "copycluster")
	db := cfg.Database
	// An anonymous id whose shard under the old key differs from the lead's.
	lead, anon := "lead-c", ""
	leadShard := warehousetest.Count(t, conn, "SELECT cityHash64('"+lead+"') % 2 + toUInt64(0)")
	for i := 0; anon == ""; i++ {
		a := fmt.Sprintf("anon-%d", i)
		if warehousetest.Count(t, conn, "SELECT cityHash64('"+a+"') % 2 + toUInt64(0)") != leadShard {
			anon = a
		}
	}
	loadClicks(t, conn, db, lead, anon)

	single, scfg := testDB(t)
	loadClicks(t, single, scfg.Database, lead, anon)

	if got, want := campaignRows(t, conn, db), campaignRows(t, single, scfg.Database); got != want {
		t.Errorf("campaigns: cluster %s, one server %s (same rows)", got, want)
	}
	if got, want := fmt.Sprint(rvROMI(t, conn, db)["spring"].RevenueLinear), fmt.Sprint(rvROMI(t, single, scfg.Database)["spring"].RevenueLinear); got != want {
		t.Errorf("romi linear revenue of spring: cluster %s, one server %s", got, want)
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM (SELECT event_id FROM "+db+".events FINAL WHERE event_id = 'ec-1')"); n != 1 {
		t.Errorf("events FINAL on the cluster holds %d rows of the click, want 1", n)
	}
}

// loadClicks stores a lead's visit, its email click twice (two browsers,
// one without the cookie) and a won deal.
func loadClicks(t *testing.T, conn driver.Conn, db, lead, anon string) {
	t.Helper()
	rvInsertEvents(t, conn, db, []rvEvent{
		{ID: "pv-1", Type: "page_view", At: rvAt("2026-03-02 09:00:00.000"), Anon: anon, Lead: lead, Campaign: "spring", UTMMedium: "cpc"},
		{ID: "ec-1", Type: "email_click", At: rvAt("2026-03-02 10:05:00.000"), Lead: lead, Campaign: "nurture"},
		{ID: "ec-1", Type: "email_click", At: rvAt("2026-03-02 10:20:00.000"), Anon: anon, Lead: lead, Campaign: "nurture"},
		{ID: "won", Type: "deal_won", At: rvAt("2026-03-09 10:00:00.000"), Lead: lead, Revenue: 900, Currency: "EUR"},
	})
	insert(t, conn, db+".identity_links", 1, map[string]any{
		"anonymous_id": []string{anon}, "lead_id": []string{lead},
		"linked_at": []time.Time{rvAt("2026-03-02 09:00:00.000")}, "event_id": []string{"pv-1"},
	})
}

func campaignRows(t *testing.T, conn driver.Conn, db string) string {
	t.Helper()
	rows, err := NewReporter(conn, db).Campaigns(t.Context(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%+v", rows)
}
