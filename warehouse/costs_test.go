package warehouse_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

func TestParseCosts(t *testing.T) {
	f, err := os.Open("../analytics/testdata/costs.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	costs, err := warehouse.ParseCosts(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(costs) != 5 {
		t.Fatalf("parsed %d rows, want 5", len(costs))
	}
	c := costs[0]
	if c.Campaign != "spring" || c.Day != time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) || c.Channel != "paid_search" ||
		c.Cost.String() != "600.25" || c.Currency != "EUR" {
		t.Errorf("first row = %+v", c)
	}

	// Byte order mark, columns in another order and case, spaces, lower-case currency.
	costs, err = warehouse.ParseCosts(strings.NewReader("\ufeffDay, Campaign ,cost,currency,channel\n2026-03-02,spring, 12 ,eur,social\n\n2026-03-03,spring,0.0001,JPY,social\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(costs) != 2 || costs[0].Campaign != "spring" || costs[0].Cost.String() != "12" || costs[0].Currency != "EUR" ||
		costs[0].Day.Day() != 2 || costs[1].Cost.String() != "0.0001" {
		t.Errorf("costs = %+v", costs)
	}
}

func TestParseCostsErrors(t *testing.T) {
	const head = "campaign,day,channel,cost,currency\n"
	f := func(in string, want ...string) {
		t.Helper()
		costs, err := warehouse.ParseCosts(strings.NewReader(in))
		if !errors.Is(err, warehouse.ErrBadCosts) {
			t.Fatalf("warehouse.ParseCosts(%q) = %v, %v; want warehouse.ErrBadCosts", in, costs, err)
		}
		if costs != nil {
			t.Errorf("warehouse.ParseCosts(%q) returned rows with an error", in)
		}
		var ce *warehouse.CostsError
		if !errors.As(err, &ce) {
			t.Fatalf("error %T is not a *warehouse.CostsError", err)
		}
		var got []string
		for _, l := range ce.Lines {
			got = append(got, l.String())
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("warehouse.ParseCosts(%q) errors:\n%s\nwant:\n%s", in, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	f("", "line 1: empty file: want the header campaign,day,channel,cost,currency")
	f(head, "line 2: no cost lines after the header")
	f("campaign,day,cost,currency,region\n", "line 1: region: unknown column; the header must be campaign,day,channel,cost,currency",
		"line 1: channel: column missing from the header")
	f("campaign,day,channel,cost,currency,day\n", "line 1: day: column appears twice in the header")
	// Every bad line and field is reported, good lines in between included.
	f(head+
		"spring,2026-03-01,paid_search,600,EUR\n"+
		",2026-3-1,paid_search,abc,EURO\n"+
		"spring,2026-03-02,,-5,EUR\n"+
		"spring,2026-03-01,paid_search,1.5,EUR\n"+
		"spring,2026-03-03,email,1.23456,EUR\n"+
		"spring,2026-03-04,email,1e3,EUR\n"+
		"spring,2026-03-05,email,1,000.00,EUR\n"+
		"spring,1969-12-31,email,100000000000000,EUR\n",
		`line 3: campaign: is required`,
		`line 3: day: "2026-3-1" is not a date like 2026-03-01`,
		`line 3: cost: "abc" is not a number like 1234.50 (digits and a decimal point only)`,
		`line 3: currency: "EURO" is not a 3-letter ISO 4217 code like EUR`,
		`line 4: channel: is required (e.g. paid_search, social, email, display)`,
		`line 4: cost: -5 is negative`,
		`line 5: same campaign, day and channel as line 2`,
		`line 6: cost: 1.23456 has more than 4 decimals`,
		`line 7: cost: "1e3" is not a number like 1234.50 (digits and a decimal point only)`,
		`line 8: has 6 fields, want 5 (campaign,day,channel,cost,currency)`,
		`line 9: day: 1969-12-31 is outside 1970-01-01..2105-12-31`,
		`line 9: cost: 100000000000000 does not fit Decimal(18, 4)`)
	f(head+"spring,2026-03-01,email,\"5,EUR\n", `line 2: malformed CSV: extraneous or missing " in quoted-field`)
}

func TestImportCostsIsIdempotent(t *testing.T) {
	conn, cfg := warehousetest.Migrated(t, "warehousetest")
	ctx := context.Background()
	b, err := os.ReadFile("../analytics/testdata/costs.csv")
	if err != nil {
		t.Fatal(err)
	}
	costs, err := warehouse.ParseCosts(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	sum := func() string {
		var s string
		q := "SELECT toString(count()) || ' ' || toString(sum(cost)) FROM " + cfg.Database + ".campaign_costs FINAL"
		if err := conn.QueryRow(ctx, q).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	at := time.Now()
	for i := range 2 {
		// The second import carries the same imported_at, as a retried
		// import within one second would.
		if err := warehouse.ImportCosts(ctx, conn, cfg.Database, costs, at); err != nil {
			t.Fatalf("import #%d: %v", i+1, err)
		}
		if got := sum(); got != "5 1750.0000" {
			t.Errorf("after import #%d: count and sum of costs = %q, want \"5 1750.0000\"", i+1, got)
		}
	}
	// A corrected file replaces the figure it changes and keeps the others.
	fixed, err := warehouse.ParseCosts(strings.NewReader("campaign,day,channel,cost,currency\nwebinar,2026-03-01,email,450,EUR\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := warehouse.ImportCosts(ctx, conn, cfg.Database, fixed, at.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := sum(); got != "5 1700.0000" {
		t.Errorf("after a corrected import: %q, want \"5 1700.0000\"", got)
	}
	if err := warehouse.ImportCosts(ctx, conn, "bad-name", costs, at); !errors.Is(err, warehouse.ErrBadDatabase) {
		t.Errorf("warehouse.ImportCosts into a bad database name = %v", err)
	}
}
