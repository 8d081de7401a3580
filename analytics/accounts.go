package analytics

import (
	"context"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// AccountFunnelRow is one group's accounts per funnel step
// (account_funnel.sql): accounts whose people visited, then sent a form,
// then had an MQL, then the account an MQA, then won a deal.
type AccountFunnelRow struct {
	Group                            string // campaign of the account's first touch; "(none)" without one
	Accounts, Forms, MQLs, MQAs, Won uint64
}

// AccountFunnel runs account_funnel.sql.
func (r *Reporter) AccountFunnel(ctx context.Context, f Filter) ([]AccountFunnelRow, error) {
	var out []AccountFunnelRow
	err := r.query(ctx, AccountFunnel, f, func(rs driver.Rows) error {
		var row AccountFunnelRow
		if err := rs.Scan(&row.Group, &row.Accounts, &row.Forms, &row.MQLs, &row.MQAs, &row.Won); err != nil {
			return err
		}
		out = append(out, row)
		return nil
	})
	return out, err
}

// AccountROMI runs account_romi.sql: ROMI rows with revenue credited to the
// touches of every member of the deal's account.
func (r *Reporter) AccountROMI(ctx context.Context, f Filter) ([]ROMIRow, error) {
	var out []ROMIRow
	err := r.query(ctx, AccountROMI, f, func(rs driver.Rows) error {
		var row ROMIRow
		if err := rs.Scan(&row.Campaign, &row.Cost, &row.RevenueFirst, &row.RevenueLast, &row.RevenueLinear,
			&row.ROMIFirst, &row.ROMILast, &row.ROMILinear, &row.Currencies); err != nil {
			return err
		}
		out = append(out, row)
		return nil
	})
	return out, err
}

// AccountFunnelTable returns the account funnel as a Table, with the
// step-to-step conversion and a total.
func AccountFunnelTable(rows []AccountFunnelRow) Table {
	t := Table{Title: "Account funnel by campaign", Columns: []Column{
		{"campaign", Text}, {"accounts", Count}, {"forms", Count}, {"mqls", Count}, {"mqas", Count}, {"won", Count},
		{"visit_to_form", Rate}, {"mql_to_mqa", Rate}, {"mqa_to_won", Rate}, {"visit_to_won", Rate},
	}}
	row := func(r AccountFunnelRow) []any {
		return []any{r.Group, r.Accounts, r.Forms, r.MQLs, r.MQAs, r.Won,
			ratio(r.Forms, r.Accounts), ratio(r.MQAs, r.MQLs), ratio(r.Won, r.MQAs), ratio(r.Won, r.Accounts)}
	}
	total := AccountFunnelRow{Group: "(total)"}
	for _, r := range rows {
		t.Rows = append(t.Rows, row(r))
		total.Accounts += r.Accounts
		total.Forms += r.Forms
		total.MQLs += r.MQLs
		total.MQAs += r.MQAs
		total.Won += r.Won
	}
	t.Footer = row(total)
	return t
}

// AccountROMITable returns the account-level ROMI rows as a Table.
func AccountROMITable(rows []ROMIRow) Table {
	t := ROMITable(rows)
	t.Title = "Account-level ROMI per campaign"
	return t
}
