package analytics

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadstream/leadstream/internal/testsvc"
)

// The fixture (analytics/testdata), in words. Campaigns and channels:
// spring (google/cpc = paid_search; once linkedin/paid_social = social),
// webinar (newsletter/email = email), retarget (linkedin/paid_social = social).
// Costs: spring 600.25 + 399.75 = 1000, webinar 500, retarget 200 (March) + 50 (April).
//
//	alice  anon-a1: [bot page view retarget 03-02 08:00], view spring 03-02 09:00,
//	       identify 03-03, form spring 03-03 09:05, MQL 03-05 21:00 (score 140),
//	       click webinar 03-06, WON 6000 03-20, view retarget 03-21
//	bob    open webinar 03-03 08:00 (lead id only), anon-b1: view webinar 03-03 08:05,
//	       view retarget 03-04 10:00, form (no campaign, links anon-b1) 03-04 10:10,
//	       MQL 03-10 08:00 (130) and again 03-28 12:00 (105), WON 3000 03-25
//	carol  anon-c1: view retarget 03-09 11:00, form retarget 03-09 11:10
//	dave   form webinar 03-11 09:00 (no page view), MQL 03-12 21:00 (100)
//	erin   anon-e1 only: view spring (linkedin/paid_social) 03-04
//	frank  anon-f1 only: view without campaign 03-05
//	crawler anon-bot1: [bot page view spring 03-06]
//	gina   anon-g1: view spring 03-16, alias anon-g1 -> lead-gina 03-17, WON 1000 03-30
//	hank   WON 500 03-31 (no touch), [bot deal_won 99999 03-31]
//	ivan   view spring 04-02, WON 2000 04-03
//
// [bracketed] events are bot-flagged and must change nothing.

var march = Filter{From: day(2026, 3, 1), To: day(2026, 3, 31)}

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
func fp(x float64) *float64                    { return &x }

// Funnel levels (windowFunnel, strict order, 90 days): alice 4 (view, form,
// MQL, won), bob 4 (view 08:05, form, MQL, won), carol 2, dave 0 (a form but
// no view before it), erin 1, frank 1, gina 1 (won without form or MQL),
// hank 0, ivan 1. Group = campaign of the first non-bot touch: alice spring
// (the earlier retarget view is a bot's), bob webinar, carol retarget, dave
// webinar, erin spring, gina spring, ivan spring, frank and hank (none).
var (
	wantFunnelCampaign = []FunnelRow{
		{"spring", 4, 1, 1, 1},   // alice 4, erin 1, gina 1, ivan 1
		{"(none)", 1, 0, 0, 0},   // frank 1, hank 0
		{"retarget", 1, 1, 0, 0}, // carol 2
		{"webinar", 1, 1, 1, 1},  // bob 4, dave 0
	}
	// Channels of those first touches: erin's spring view came from social.
	wantFunnelChannel = []FunnelRow{
		{"paid_search", 3, 1, 1, 1}, // alice, gina, ivan
		{"social", 2, 1, 0, 0},      // carol 2, erin 1
		{"(none)", 1, 0, 0, 0},      // frank, hank
		{"email", 1, 1, 1, 1},       // bob (email open), dave
	}
	// March: ivan's April events drop out.
	wantFunnelCampaignMarch = []FunnelRow{{"spring", 3, 1, 1, 1}, {"(none)", 1, 0, 0, 0}, {"retarget", 1, 1, 0, 0}, {"webinar", 1, 1, 1, 1}}
	wantFunnelChannelMarch  = []FunnelRow{{"paid_search", 2, 1, 1, 1}, {"social", 2, 1, 0, 0}, {"(none)", 1, 0, 0, 0}, {"email", 1, 1, 1, 1}}
)

// ROMI. Deals and their non-bot campaign touches before the deal, in order:
//
//	alice 6000: spring 03-02, spring 03-03, webinar 03-06  (retarget 03-21 is after)
//	bob   3000: webinar 03-03 08:00, webinar 08:05, retarget 03-04
//	gina  1000: spring (anonymous view, linked by alias)
//	hank   500: none -> (none)     ivan 2000 (April): spring
//
// first touch: spring 6000+1000+2000 = 9000, webinar 3000, retarget 0, (none) 500
// last touch:  spring 1000+2000 = 3000, webinar 6000, retarget 3000, (none) 500
// linear:      spring 4000+1000+2000 = 7000, webinar 2000+2000 = 4000, retarget 1000, (none) 500
// ROMI = (revenue - cost) / cost: spring (9000-1000)/1000 = 8, (3000-1000)/1000 = 2, 6;
// webinar (3000-500)/500 = 5, 11, 7; retarget cost 250: -1, 11, 3.
var wantROMI = []ROMIRow{
	{"(none)", 0, 500, 500, 500, nil, nil, nil, "EUR"},
	{"retarget", 250, 0, 3000, 1000, fp(-1), fp(11), fp(3), "EUR"},
	{"spring", 1000, 9000, 3000, 7000, fp(8), fp(2), fp(6), "EUR"},
	{"webinar", 500, 3000, 6000, 4000, fp(5), fp(11), fp(7), "EUR"},
}

// March: without ivan's deal and the April retarget cost (200 left).
// spring: first 7000 -> 6, last 1000 -> 0, linear 5000 -> 4; retarget: -1, 14, 4.
var wantROMIMarch = []ROMIRow{
	{"(none)", 0, 500, 500, 500, nil, nil, nil, "EUR"},
	{"retarget", 200, 0, 3000, 1000, fp(-1), fp(14), fp(4), "EUR"},
	{"spring", 1000, 7000, 1000, 5000, fp(6), fp(0), fp(4), "EUR"},
	{"webinar", 500, 3000, 6000, 4000, fp(5), fp(11), fp(7), "EUR"},
}

// Campaign performance (influence). touches: spring = alice view+form, erin,
// gina, ivan = 5; webinar = alice click, bob open+view, dave form = 4;
// retarget = alice 03-21 view, bob view, carol view+form = 4 (bot views left
// out). people / leads: spring alice, erin, gina, ivan = 4 / 3 (erin is
// anonymous); webinar alice, bob, dave = 3 / 3; retarget alice, bob, carol.
// MQLs touched before: alice by spring, bob by webinar and retarget, dave by
// webinar. Won deals touched before: spring alice, gina, ivan = 9000;
// webinar alice, bob = 9000; retarget bob = 3000.
var (
	wantCampaigns = []CampaignRow{
		{"retarget", 4, 3, 3, 1, 1, 3000, 250},
		{"spring", 5, 4, 3, 1, 3, 9000, 1000},
		{"webinar", 4, 3, 3, 2, 2, 9000, 500},
	}
	wantCampaignsMarch = []CampaignRow{
		{"retarget", 4, 3, 3, 1, 1, 3000, 200},
		{"spring", 4, 3, 2, 1, 2, 7000, 1000}, // no ivan
		{"webinar", 4, 3, 3, 2, 2, 9000, 500},
	}
)

// Velocity, first non-bot touch to first MQL: alice 03-02 09:00 -> 03-05 21:00
// = 3.5 days (not from the bot's 08:00 view), bob 03-03 08:00 -> 03-10 08:00
// = 7, dave 03-11 09:00 -> 03-12 21:00 = 1.5. Sorted 1.5, 3.5, 7: median =
// rank floor(0.5*3) = 1 -> 3.5, p90 = rank floor(0.9*3) = 2 -> 7, mean 4.
// First campaign touch webinar: bob and dave: 1.5, 7 -> median rank 1 -> 7.
var (
	wantVelocity        = []VelocityRow{{"default", 3, 3.5, 7, 4}}
	wantVelocityWebinar = []VelocityRow{{"default", 2, 7, 7, 4.25}}
)

// Weekly MQL crossings (Mondays): alice 03-05 -> 03-02; bob 03-10 and dave
// 03-12 -> 03-09; bob's second crossing 03-28 -> 03-23.
var wantWeekly = []WeekRow{{day(2026, 3, 2), 1}, {day(2026, 3, 9), 2}, {day(2026, 3, 23), 1}}

// Accounts (account_members.jsonl, mqa.jsonl): acme = alice and bob (group
// calls); dave joined acme, then moved to globex on 03-15, so he counts in
// globex only; carol's group call came from her anonymous id (linked to her
// by her form); hank is in initech.example by his e-mail domain. acme is an
// MQA on 03-10 09:00.
//
// Account funnel (windowFunnel over the members' steps, 90 days): acme visit
// 03-02 (alice), form 03-03, MQL 03-05, MQA 03-10, won 03-20 = 5, first touch
// spring (alice 03-02 09:00 before bob's webinar open 03-03); globex visit
// 03-09 (carol), form 03-09, MQL 03-12 (dave) = 3, first touch retarget;
// initech.example: a deal without a visit = 0, '(none)'.
// 1-9 March: acme's MQA (03-10), dave's MQL and the deals drop out: acme 3
// (visit, form, MQL), globex 2, and initech.example has nothing in the period.
var (
	wantAccountFunnel = []AccountFunnelRow{
		{"retarget", 1, 1, 1, 0, 0},
		{"spring", 1, 1, 1, 1, 1},
		{"(none)", 0, 0, 0, 0, 0},
	}
	wantAccountFunnelEarly = []AccountFunnelRow{
		{"retarget", 1, 1, 0, 0, 0},
		{"spring", 1, 1, 1, 0, 0},
	}
)

// Account-level ROMI. acme's touches (alice's and bob's): spring 03-02 09:00,
// webinar 03-03 08:00, webinar 03-03 08:05, spring 03-03 09:05, retarget
// 03-04 10:00, webinar 03-06 09:00, retarget 03-21 10:00.
//
//	alice 6000 (03-20): the first six: first spring, last webinar,
//	                    linear spring 2000, webinar 3000, retarget 1000
//	bob   3000 (03-25): all seven: first spring, last retarget,
//	                    linear 3000/7 each: spring 2, webinar 3, retarget 2
//	hank   500: initech.example has no touch -> (none)
//	gina, ivan: in no account, left out.
//
// spring: first 9000, last 0, linear 2000 + 6000/7 = 2857.14; ROMI 8, -1, 1.8571
// webinar: 0, 6000, 3000 + 9000/7 = 4285.71; ROMI -1, 11, 7.5714
// retarget (cost 250): 0, 3000, 1000 + 6000/7 = 1857.14; ROMI -1, 11, 6.4286
var wantAccountROMI = []ROMIRow{
	{"(none)", 0, 500, 500, 500, nil, nil, nil, "EUR"},
	{"retarget", 250, 0, 3000, 1857.14, fp(-1), fp(11), fp(6.4286), "EUR"},
	{"spring", 1000, 9000, 0, 2857.14, fp(8), fp(-1), fp(1.8571), "EUR"},
	{"webinar", 500, 0, 6000, 4285.71, fp(-1), fp(11), fp(7.5714), "EUR"},
}

// Score bands: known leads alice, bob, carol, dave, gina, hank, ivan; latest
// crossing: alice 140, bob 105 (not 130), dave 100; the other four have none.
var (
	wantBands = []BandRow{
		{"default", "<100", -1, 4},
		{"default", "[100, 125)", 100, 2},
		{"default", "[125, 150)", 125, 1},
	}
	wantBandsMarch = []BandRow{{"default", "<100", -1, 3}, {"default", "[100, 125)", 100, 2}, {"default", "[125, 150)", 125, 1}}
)

func TestReportsOnFixture(t *testing.T) {
	conn, cfg := testDB(t)
	tables := []string{"events", "identity_links", "mql", "campaign_costs", "account_members", "mqa"}
	// Merges stopped: the replayed copies stay until OPTIMIZE below, so the
	// queries must fold them themselves.
	for _, tb := range tables {
		runSQL(t, conn, "SYSTEM STOP MERGES "+cfg.Database+"."+tb)
	}
	r := NewReporter(conn, cfg.Database)

	loadFixture(t, conn, cfg.Database)
	checkAll(t, "first load", r, cfg.Addr, cfg.Database)

	loadFixture(t, conn, cfg.Database) // the sink inserting the same batch again
	for _, tb := range tables {
		raw, final := rowCount(t, conn, cfg.Database+"."+tb, ""), rowCount(t, conn, cfg.Database+"."+tb, "FINAL")
		if raw != 2*final {
			t.Fatalf("%s: %d rows, %d with FINAL; the replay should have doubled them", tb, raw, final)
		}
	}
	checkAll(t, "after a replay", r, cfg.Addr, cfg.Database)

	for _, tb := range tables {
		runSQL(t, conn, "SYSTEM START MERGES "+cfg.Database+"."+tb)
		runSQL(t, conn, "OPTIMIZE TABLE "+cfg.Database+"."+tb+" FINAL")
	}
	if raw := rowCount(t, conn, cfg.Database+".events", ""); raw != 25 {
		t.Fatalf("events after OPTIMIZE FINAL: %d rows, want 25", raw)
	}
	checkAll(t, "after merges", r, cfg.Addr, cfg.Database)
}

// checkAll asserts every documented query, as an analyst runs it and through
// the report code with filters, against the hand-computed numbers.
func checkAll(t *testing.T, phase string, r *Reporter, addr, db string) {
	t.Helper()
	ctx := context.Background()
	eq := func(what string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %s: %v", phase, what, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %s:\n got %s\nwant %s", phase, what, show(got), show(want))
		}
	}
	funnel := func(by Dimension, f Filter) []FunnelRow {
		fn, err := r.Funnel(ctx, by, f)
		if err != nil {
			t.Fatalf("%s: funnel by %s: %v", phase, by, err)
		}
		return fn.Rows
	}
	eq("funnel by campaign", funnel(ByCampaign, Filter{}), wantFunnelCampaign, nil)
	eq("funnel by channel", funnel(ByChannel, Filter{}), wantFunnelChannel, nil)
	eq("funnel by campaign, March", funnel(ByCampaign, march), wantFunnelCampaignMarch, nil)
	eq("funnel by channel, March", funnel(ByChannel, march), wantFunnelChannelMarch, nil)
	eq("funnel of spring", funnel(ByCampaign, Filter{Campaign: "spring"}), wantFunnelCampaign[:1], nil)
	// People whose first touch was spring, by channel: alice, gina, ivan
	// (paid_search) and erin (social).
	eq("funnel by channel of spring", funnel(ByChannel, Filter{Campaign: "spring"}), []FunnelRow{{"paid_search", 3, 1, 1, 1}, {"social", 1, 0, 0, 0}}, nil)

	romi, err := r.ROMI(ctx, Filter{})
	eq("romi", romi, wantROMI, err)
	romi, err = r.ROMI(ctx, march)
	eq("romi, March", romi, wantROMIMarch, err)
	romi, err = r.ROMI(ctx, Filter{Campaign: "spring", From: march.From, To: march.To})
	eq("romi of spring, March", romi, wantROMIMarch[2:3], err)

	camps, err := r.Campaigns(ctx, Filter{})
	eq("campaigns", camps, wantCampaigns, err)
	camps, err = r.Campaigns(ctx, march)
	eq("campaigns, March", camps, wantCampaignsMarch, err)
	camps, err = r.Campaigns(ctx, Filter{Campaign: "webinar"})
	eq("campaigns, webinar", camps, wantCampaigns[2:], err)

	vel, err := r.Velocity(ctx, Filter{})
	eq("velocity", vel, wantVelocity, err)
	vel, err = r.Velocity(ctx, march)
	eq("velocity, March", vel, wantVelocity, err)
	vel, err = r.Velocity(ctx, Filter{Campaign: "webinar"})
	eq("velocity, webinar", vel, wantVelocityWebinar, err)
	vel, err = r.Velocity(ctx, Filter{From: day(2026, 4, 1)})
	eq("velocity, April", vel, []VelocityRow(nil), err)

	weeks, err := r.Weekly(ctx, Filter{})
	eq("weekly", weeks, wantWeekly, err)
	weeks, err = r.Weekly(ctx, Filter{Campaign: "webinar"}) // bob twice, dave
	eq("weekly, webinar", weeks, wantWeekly[1:], err)

	bands, err := r.Bands(ctx, Filter{})
	eq("bands", bands, wantBands, err)
	bands, err = r.Bands(ctx, march)
	eq("bands, March", bands, wantBandsMarch, err)

	acc, err := r.AccountFunnel(ctx, Filter{})
	eq("account funnel", acc, wantAccountFunnel, err)
	acc, err = r.AccountFunnel(ctx, march)
	eq("account funnel, March", acc, wantAccountFunnel, err)
	acc, err = r.AccountFunnel(ctx, Filter{Campaign: "spring"})
	eq("account funnel of spring", acc, wantAccountFunnel[1:2], err)
	acc, err = r.AccountFunnel(ctx, Filter{From: day(2026, 3, 1), To: day(2026, 3, 9)})
	eq("account funnel, 1-9 March", acc, wantAccountFunnelEarly, err)
	aromi, err := r.AccountROMI(ctx, Filter{})
	eq("account romi", aromi, wantAccountROMI, err)
	aromi, err = r.AccountROMI(ctx, Filter{Campaign: "webinar"})
	eq("account romi of webinar", aromi, wantAccountROMI[3:], err)

	checkClient(t, phase, addr, db)
}

// checkClient runs every documented file through clickhouse-client, as an
// analyst would (only the database name changed), and compares its output.
func checkClient(t *testing.T, phase, addr, db string) {
	t.Helper()
	if _, err := exec.LookPath("clickhouse-client"); err != nil {
		testsvc.Required(t, "clickhouse-client", "the documented queries are checked as analysts run them")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	want := map[Name]string{
		FunnelByCampaign:    tsv(wantFunnelCampaign, "Group", "Visitors", "Forms", "MQLs", "Won"),
		FunnelByChannel:     tsv(wantFunnelChannel, "Group", "Visitors", "Forms", "MQLs", "Won"),
		MQLVelocity:         tsv(wantVelocity, "Model", "MQLs", "MedianDays", "P90Days", "AvgDays"),
		MQLWeekly:           tsv(wantWeekly, "Week", "MQLs"),
		ScoreBands:          tsv(wantBands, "Model", "Band", "BandMin", "Leads"),
		CampaignPerformance: tsv(wantCampaigns, "Campaign", "Touches", "People", "Leads", "MQLs", "Won", "Revenue", "Cost"),
		ROMI: tsv(wantROMI, "Campaign", "Cost", "RevenueFirst", "RevenueLast", "RevenueLinear",
			"ROMIFirst", "ROMILast", "ROMILinear", "Currencies"),
		AccountFunnel: tsv(wantAccountFunnel, "Group", "Accounts", "Forms", "MQLs", "MQAs", "Won"),
		AccountROMI: tsv(wantAccountROMI, "Campaign", "Cost", "RevenueFirst", "RevenueLast", "RevenueLinear",
			"ROMIFirst", "ROMILast", "ROMILinear", "Currencies"),
	}
	tableRef := regexp.MustCompile(`\bleadstream\.`)
	for _, name := range Names() {
		q, err := SQL(name)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("clickhouse-client", "--host", "127.0.0.1", "--port", port, "--multiquery")
		cmd.Stdin = strings.NewReader(tableRef.ReplaceAllString(q, db+"."))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: clickhouse-client < %s.sql: %v\n%s", phase, name, err, out)
		}
		if got := string(out); got != want[name] {
			t.Errorf("%s: clickhouse-client < %s.sql:\n%s\nwant:\n%s", phase, name, got, want[name])
		}
	}
}

// tsv renders the named fields of rows as clickhouse-client prints them.
func tsv[T any](rows []T, fields ...string) string {
	var b strings.Builder
	for _, r := range rows {
		v := reflect.ValueOf(r)
		for i, f := range fields {
			if i > 0 {
				b.WriteByte('\t')
			}
			switch x := v.FieldByName(f).Interface().(type) {
			case *float64:
				if x == nil {
					b.WriteString(`\N`)
				} else {
					b.WriteString(strconv.FormatFloat(*x, 'f', -1, 64))
				}
			case float64:
				b.WriteString(strconv.FormatFloat(x, 'f', -1, 64))
			case time.Time:
				b.WriteString(x.Format(time.DateOnly))
			default:
				fmt.Fprint(&b, x)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func show(v any) string {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice {
		return fmt.Sprintf("%+v", v)
	}
	var parts []string
	for i := range rv.Len() {
		e := rv.Index(i)
		var fs []string
		for j := range e.NumField() {
			f := e.Field(j)
			if f.Kind() == reflect.Pointer {
				if f.IsNil() {
					fs = append(fs, "nil")
				} else {
					fs = append(fs, fmt.Sprint(f.Elem().Interface()))
				}
				continue
			}
			if tm, ok := f.Interface().(time.Time); ok {
				fs = append(fs, tm.Format(time.DateOnly))
				continue
			}
			fs = append(fs, fmt.Sprint(f.Interface()))
		}
		parts = append(parts, "{"+strings.Join(fs, " ")+"}")
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func runSQL(t *testing.T, conn driver.Conn, q string) {
	t.Helper()
	if err := conn.Exec(context.Background(), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func rowCount(t *testing.T, conn driver.Conn, table, final string) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM "+table+" "+final).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
