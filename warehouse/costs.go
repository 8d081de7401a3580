package warehouse

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"
)

// Cost is one row of campaign_costs: what a campaign spent on one day in one
// channel.
type Cost struct {
	Campaign string
	Day      time.Time // midnight UTC
	Channel  string
	Cost     decimal.Decimal
	Currency string // ISO 4217, upper case
}

// CostColumns is the header a costs CSV file must have (in any order).
var CostColumns = []string{"campaign", "day", "channel", "cost", "currency"}

// CostLineError is one problem of a costs CSV file.
type CostLineError struct {
	Line   int    // 1-based line of the file
	Field  string // column name; empty for the line as a whole
	Reason string
}

func (e CostLineError) String() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Reason)
}

// CostsError lists every bad line of a costs file. It matches ErrBadCosts.
type CostsError struct {
	Lines []CostLineError
}

func (e *CostsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v (%d problem(s), nothing imported):", ErrBadCosts, len(e.Lines))
	for _, l := range e.Lines {
		b.WriteString("\n  " + l.String())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrBadCosts) hold.
func (e *CostsError) Is(target error) bool { return target == ErrBadCosts }

var (
	currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)
	plainNumber  = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
)

// Costs fit campaign_costs.cost, Decimal(18, 4).
var maxCost = decimal.New(1, 18-costScale)

const costScale = 4

// Days a Date column holds on every ClickHouse version.
var (
	minCostDay = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxCostDay = time.Date(2105, 12, 31, 0, 0, 0, 0, time.UTC)
)

// ParseCosts reads a costs CSV file: a header line naming the columns of
// CostColumns (any order, any case), then one line per campaign, day and
// channel:
//
//	campaign,day,channel,cost,currency
//	spring,2026-03-01,paid_search,600.25,EUR
//
// It checks every line and returns either all rows or a *CostsError naming
// each bad line and field; a file with any bad line yields no rows, so an
// import is all or nothing.
func ParseCosts(r io.Reader) ([]Cost, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading costs file: %w", err)
	}
	b = bytes.TrimPrefix(b, []byte("\ufeff")) // spreadsheets write a byte order mark
	cr := csv.NewReader(bytes.NewReader(b))
	cr.FieldsPerRecord = -1 // checked below, with a better message
	cr.ReuseRecord = false
	var (
		bad  []CostLineError
		out  []Cost
		col  map[string]int
		seen = map[[3]string]int{} // key -> line
	)
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			// The reader cannot resynchronise reliably after malformed quoting.
			le := CostLineError{Reason: "malformed CSV: " + err.Error()}
			if pe := (*csv.ParseError)(nil); errors.As(err, &pe) {
				le.Line, le.Reason = pe.StartLine, "malformed CSV: "+pe.Err.Error()
			}
			bad = append(bad, le)
			break
		}
		line, _ := cr.FieldPos(0)
		if col == nil {
			col, bad = costHeader(rec, line, bad)
			if col == nil {
				break
			}
			continue
		}
		if len(rec) != len(CostColumns) {
			bad = append(bad, CostLineError{Line: line, Reason: fmt.Sprintf("has %d fields, want %d (%s)", len(rec), len(CostColumns), strings.Join(CostColumns, ","))})
			continue
		}
		c, errs := costRow(rec, col, line)
		if len(errs) > 0 {
			bad = append(bad, errs...)
			continue
		}
		key := [3]string{c.Campaign, c.Day.Format(time.DateOnly), c.Channel}
		if first, dup := seen[key]; dup {
			bad = append(bad, CostLineError{Line: line, Reason: fmt.Sprintf("same campaign, day and channel as line %d", first)})
			continue
		}
		seen[key] = line
		out = append(out, c)
	}
	if col == nil && len(bad) == 0 {
		bad = append(bad, CostLineError{Line: 1, Reason: "empty file: want the header " + strings.Join(CostColumns, ",")})
	}
	if len(bad) > 0 {
		return nil, &CostsError{Lines: bad}
	}
	if len(out) == 0 {
		return nil, &CostsError{Lines: []CostLineError{{Line: 2, Reason: "no cost lines after the header"}}}
	}
	return out, nil
}

// costHeader maps column names to their index, or reports what is wrong.
func costHeader(rec []string, line int, bad []CostLineError) (map[string]int, []CostLineError) {
	col := map[string]int{}
	n := len(bad)
	for i, name := range rec {
		name = strings.ToLower(strings.TrimSpace(name))
		switch _, known := col[name]; {
		case known:
			bad = append(bad, CostLineError{Line: line, Field: name, Reason: "column appears twice in the header"})
		case !isCostColumn(name):
			bad = append(bad, CostLineError{Line: line, Field: name, Reason: "unknown column; the header must be " + strings.Join(CostColumns, ",")})
		}
		col[name] = i
	}
	for _, name := range CostColumns {
		if _, ok := col[name]; !ok {
			bad = append(bad, CostLineError{Line: line, Field: name, Reason: "column missing from the header"})
		}
	}
	if len(bad) > n {
		return nil, bad
	}
	return col, bad
}

func isCostColumn(name string) bool {
	for _, c := range CostColumns {
		if c == name {
			return true
		}
	}
	return false
}

// costRow checks and converts one data line.
func costRow(rec []string, col map[string]int, line int) (Cost, []CostLineError) {
	var bad []CostLineError
	field := func(name string) string { return strings.TrimSpace(rec[col[name]]) }
	fail := func(name, reason string) { bad = append(bad, CostLineError{Line: line, Field: name, Reason: reason}) }

	c := Cost{Campaign: field("campaign"), Channel: field("channel"), Currency: strings.ToUpper(field("currency"))}
	if c.Campaign == "" {
		fail("campaign", "is required")
	}
	if raw := field("day"); raw == "" {
		fail("day", "is required (YYYY-MM-DD)")
	} else if d, err := time.Parse(time.DateOnly, raw); err != nil {
		fail("day", fmt.Sprintf("%q is not a date like 2026-03-01", raw))
	} else if d.Before(minCostDay) || d.After(maxCostDay) {
		fail("day", fmt.Sprintf("%s is outside 1970-01-01..2105-12-31", raw))
	} else {
		c.Day = d
	}
	if c.Channel == "" {
		fail("channel", "is required (e.g. paid_search, social, email, display)")
	}
	if raw := field("cost"); raw == "" {
		fail("cost", "is required")
	} else if strings.HasPrefix(raw, "-") && plainNumber.MatchString(raw[1:]) {
		fail("cost", fmt.Sprintf("%s is negative", raw))
	} else if d, err := decimal.NewFromString(raw); err != nil || !plainNumber.MatchString(raw) {
		fail("cost", fmt.Sprintf("%q is not a number like 1234.50 (digits and a decimal point only)", raw))
	} else if !d.Equal(d.Round(costScale)) {
		fail("cost", fmt.Sprintf("%s has more than %d decimals", raw, costScale))
	} else if d.GreaterThanOrEqual(maxCost) {
		fail("cost", fmt.Sprintf("%s does not fit Decimal(18, 4)", raw))
	} else {
		c.Cost = d
	}
	if !currencyCode.MatchString(c.Currency) {
		fail("currency", fmt.Sprintf("%q is not a 3-letter ISO 4217 code like EUR", field("currency")))
	}
	return c, bad
}

// ImportCosts writes costs into campaign_costs of database in one insert,
// stamped with importedAt. The table is a ReplacingMergeTree(imported_at)
// keyed by (campaign, day, channel): importing a file again replaces its
// rows instead of adding to them, and a corrected figure replaces the old
// one; queries read the table with FINAL. A row is never deleted by an
// import: to take a cost back, import it as 0.
func ImportCosts(ctx context.Context, conn driver.Conn, database string, costs []Cost, importedAt time.Time) error {
	if err := CheckDatabase(database); err != nil {
		return err
	}
	if len(costs) == 0 {
		return nil
	}
	at := importedAt.UTC().Truncate(time.Second)
	cols := []Column{
		{"campaign", Pluck(costs, func(c *Cost) string { return c.Campaign })},
		{"day", Pluck(costs, func(c *Cost) time.Time { return c.Day })},
		{"channel", Pluck(costs, func(c *Cost) string { return c.Channel })},
		{"cost", Pluck(costs, func(c *Cost) decimal.Decimal { return c.Cost })},
		{"currency", Pluck(costs, func(c *Cost) string { return c.Currency })},
		{"imported_at", Pluck(costs, func(*Cost) time.Time { return at })},
	}
	if err := Insert(ctx, conn, database, TableCampaignCosts, len(costs), cols); err != nil {
		return fmt.Errorf("importing costs: %w", err)
	}
	return nil
}
