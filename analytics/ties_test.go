package analytics

// Ties: steps of the funnels in the same second, first touches in the same
// millisecond. Each report must give one answer, run after run.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// runs is how often a tie test repeats a report: the order in which
// ClickHouse 18.16's windowFunnel sees events of equal timestamps changed
// from run to run (threads, merges of partial states).
const runs = 20

// An MQL's crossed_at is the time of the event that triggered it (scoring
// always does this): a form and the crossing it caused tie to the
// millisecond, and the funnel must count visit -> form -> MQL, by campaign
// and by channel.
func TestFunnelMQLSameTimeAsForm(t *testing.T) {
	conn, cfg := testDB(t)
	db := cfg.Database
	const n = 40
	var evs []rvEvent
	for i := 0; i < n; i++ {
		lead := fmt.Sprintf("lead-%02d", i)
		evs = append(evs,
			rvEvent{ID: "pv-" + lead, Type: "page_view", At: rvAt(fmt.Sprintf("2026-03-02 09:%02d:00.000", i)), Lead: lead, Campaign: "spring", UTMMedium: "cpc"},
			rvEvent{ID: "fs-" + lead, Type: "form_submit", At: rvAt(fmt.Sprintf("2026-03-02 10:%02d:00.500", i)), Lead: lead})
	}
	rvInsertEvents(t, conn, db, evs)
	for i := 0; i < n; i++ {
		lead := fmt.Sprintf("lead-%02d", i)
		rvInsertMQL(t, conn, db, "mql-"+lead, lead, rvAt(fmt.Sprintf("2026-03-02 10:%02d:00.500", i)), "fs-"+lead)
	}
	for _, dim := range []Dimension{ByCampaign, ByChannel} {
		var got []string
		bad := false
		for run := 0; run < runs; run++ {
			fn, err := NewReporter(conn, db).Funnel(context.Background(), dim, Filter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(fn.Rows) != 1 {
				t.Fatalf("funnel by %s = %+v", dim, fn.Rows)
			}
			r := fn.Rows[0]
			got = append(got, fmt.Sprintf("%d/%d/%d", r.Visitors, r.Forms, r.MQLs))
			bad = bad || r.Visitors != n || r.Forms != n || r.MQLs != n
		}
		if bad {
			t.Errorf("funnel by %s, visitors/forms/mqls over %d runs: %v, want %d/%d/%d each time", dim, runs, got, n, n, n)
		}
	}
}

// The form that makes a lead an MQL often makes its account an MQA: the
// form, the MQL and the MQA carry one time.
func TestAccountFunnelCrossingsSameTimeAsForm(t *testing.T) {
	conn, cfg := testDB(t)
	db := cfg.Database
	const n = 40
	var evs []rvEvent
	var accts, leads, srcs, ids []string
	var joined []time.Time
	var joinedMs []uint64
	for i := 0; i < n; i++ {
		lead, acct := fmt.Sprintf("lead-%02d", i), fmt.Sprintf("acct-%02d", i)
		pv := rvAt(fmt.Sprintf("2026-03-02 09:%02d:00.000", i))
		evs = append(evs,
			rvEvent{ID: "pv-" + lead, Type: "page_view", At: pv, Lead: lead, Campaign: "spring", UTMMedium: "cpc"},
			rvEvent{ID: "fs-" + lead, Type: "form_submit", At: rvAt(fmt.Sprintf("2026-03-02 10:%02d:00.500", i)), Lead: lead})
		accts, leads, srcs, ids = append(accts, acct), append(leads, lead), append(srcs, "group"), append(ids, "g-"+lead)
		joined, joinedMs = append(joined, pv), append(joinedMs, uint64(pv.UnixMilli()))
	}
	rvInsertEvents(t, conn, db, evs)
	insert(t, conn, db+".account_members", n, map[string]any{
		"account_id": accts, "lead_id": leads, "anonymous_id": make([]string, n), "source": srcs,
		"joined_at": joined, "joined_at_ms": joinedMs, "event_id": ids,
	})
	for i := 0; i < n; i++ {
		lead, acct := fmt.Sprintf("lead-%02d", i), fmt.Sprintf("acct-%02d", i)
		form := rvAt(fmt.Sprintf("2026-03-02 10:%02d:00.500", i))
		rvInsertMQL(t, conn, db, "mql-"+lead, lead, form, "fs-"+lead)
		rvInsertMQA(t, conn, db, "mqa-"+acct, acct, form, "fs-"+lead)
	}
	var got []string
	bad := false
	for run := 0; run < runs; run++ {
		rows, err := NewReporter(conn, db).AccountFunnel(context.Background(), Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 {
			t.Fatalf("account funnel = %+v", rows)
		}
		r := rows[0]
		got = append(got, fmt.Sprintf("%d/%d/%d/%d", r.Accounts, r.Forms, r.MQLs, r.MQAs))
		bad = bad || r.Accounts != n || r.Forms != n || r.MQLs != n || r.MQAs != n
	}
	if bad {
		t.Errorf("account funnel accounts/forms/mqls/mqas over %d runs: %v, want %d/%d/%d/%d each time", runs, got, n, n, n, n)
	}
}

func rvInsertMQA(t *testing.T, conn driver.Conn, db, id, acct string, at time.Time, trigger string) {
	t.Helper()
	insert(t, conn, db+".mqa", 1, map[string]any{
		"mqa_id": []string{id}, "account_id": []string{acct}, "model": []string{"default"},
		"score": []float64{150}, "threshold": []float64{150},
		"crossed_at": []time.Time{at}, "crossed_at_ms": []uint64{uint64(at.UnixMilli())},
		"trigger_event_id": []string{trigger}, "engaged_members": []uint32{1},
	})
}

// The funnels' window and order are those of windowFunnel(7776000) over
// event_time, to the second: a step 90 days after the visit (in seconds,
// whatever the milliseconds) counts, a second later not; a visit and a
// form in the same second count in that order, a form a second before
// the visit not.
func TestFunnelWindowAndSameSecondOrder(t *testing.T) {
	conn, cfg := testDB(t)
	db := cfg.Database
	visit := rvAt("2026-01-05 10:00:00.900")
	in := visit.Add(90 * 24 * time.Hour).Add(-800 * time.Millisecond) // 90 days later to the second (10:00:00.100)
	out := visit.Add(90*24*time.Hour + 100*time.Millisecond)          // 10:00:01.000: a second too late
	leads := []struct {
		lead      string
		form      time.Time
		wantForms uint64
		wantMQL   bool
		mqlAt     time.Time
	}{
		{lead: "in-window", form: in, wantForms: 1, wantMQL: true, mqlAt: in},
		{lead: "past-window", form: out, wantForms: 0},
		// the form in the visit's second, 800 ms before it: funnel order.
		{lead: "same-second", form: rvAt("2026-01-05 10:00:00.100"), wantForms: 1},
		{lead: "second-before", form: rvAt("2026-01-05 09:59:59.999"), wantForms: 0},
	}
	var evs []rvEvent
	for _, l := range leads {
		evs = append(evs,
			rvEvent{ID: "pv-" + l.lead, Type: "page_view", At: visit, Lead: l.lead, Campaign: l.lead},
			rvEvent{ID: "fs-" + l.lead, Type: "form_submit", At: l.form, Lead: l.lead})
	}
	rvInsertEvents(t, conn, db, evs)
	for _, l := range leads {
		if l.wantMQL {
			rvInsertMQL(t, conn, db, "mql-"+l.lead, l.lead, l.mqlAt, "fs-"+l.lead)
		}
	}
	fn, err := NewReporter(conn, db).Funnel(context.Background(), ByCampaign, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]FunnelRow{}
	for _, r := range fn.Rows {
		got[r.Group] = r
	}
	for _, l := range leads {
		r := got[l.lead]
		wantMQLs := uint64(0)
		if l.wantMQL {
			wantMQLs = 1
		}
		if r.Visitors != 1 || r.Forms != l.wantForms || r.MQLs != wantMQLs {
			t.Errorf("%s: %+v, want 1 visitor, %d forms, %d MQLs", l.lead, r, l.wantForms, wantMQLs)
		}
	}
}

// Two first touches in the same millisecond: the funnels, the MQL reports'
// campaign filter and ROMI's first touch all pick the campaign first in
// alphabetical order (romi.sql sorts (time, campaign) tuples), whatever
// order the rows are read in (here bravo's first: FINAL reads in sort key
// order, and its event id sorts first).
func TestFirstTouchTieAlphabetical(t *testing.T) {
	conn, cfg := testDB(t)
	db := cfg.Database
	at := rvAt("2026-03-02 09:00:00.123")
	rvInsertEvents(t, conn, db, []rvEvent{
		{ID: "pv-1", Type: "page_view", At: at, Lead: "lead-t", Campaign: "bravo", UTMMedium: "social"},
		{ID: "pv-2", Type: "page_view", At: at, Lead: "lead-t", Campaign: "alpha", UTMMedium: "cpc"},
		{ID: "won", Type: "deal_won", At: rvAt("2026-03-09 10:00:00.000"), Lead: "lead-t", Revenue: 100, Currency: "EUR"},
	})
	rvInsertMQL(t, conn, db, "mql-t", "lead-t", rvAt("2026-03-03 10:00:00.000"), "pv-2")
	r := NewReporter(conn, db)
	ctx := context.Background()

	if romi := rvROMI(t, conn, db); romi["alpha"].RevenueFirst != 100 || romi["bravo"].RevenueFirst != 0 {
		t.Fatalf("romi first touch: alpha %+v, bravo %+v; want the revenue on alpha", romi["alpha"], romi["bravo"])
	}
	for run := 0; run < runs; run++ {
		fc, err := r.Funnel(ctx, ByCampaign, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(fc.Rows) != 1 || fc.Rows[0].Group != "alpha" {
			t.Fatalf("run %d: funnel by campaign = %+v, want the lead under alpha", run, fc.Rows)
		}
		fch, err := r.Funnel(ctx, ByChannel, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(fch.Rows) != 1 || fch.Rows[0].Group != "paid_search" {
			t.Fatalf("run %d: funnel by channel = %+v, want the lead under paid_search (alpha's)", run, fch.Rows)
		}
		for _, c := range []struct {
			campaign string
			want     uint64
		}{{"alpha", 1}, {"bravo", 0}} {
			v, err := r.Velocity(ctx, Filter{Campaign: c.campaign})
			if err != nil {
				t.Fatal(err)
			}
			var velocity uint64
			for _, row := range v {
				velocity += row.MQLs
			}
			w, err := r.Weekly(ctx, Filter{Campaign: c.campaign})
			if err != nil {
				t.Fatal(err)
			}
			var weekly uint64
			for _, row := range w {
				weekly += row.MQLs
			}
			if velocity != c.want || weekly != c.want {
				t.Fatalf("run %d: campaign %s: velocity %d MQLs, weekly %d, want %d", run, c.campaign, velocity, weekly, c.want)
			}
		}
	}
}
