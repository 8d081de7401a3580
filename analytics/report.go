package analytics

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Filter restricts a report. Zero values mean no restriction.
type Filter struct {
	From, To time.Time // first and last day (inclusive); only the date counts
	Campaign string
}

// Reporter runs reports against one database.
type Reporter struct {
	conn driver.Conn
	db   string
}

// NewReporter returns a Reporter reading the leadstream tables of database.
func NewReporter(conn driver.Conn, database string) *Reporter {
	return &Reporter{conn: conn, db: database}
}

// query binds and runs one documented query, handing each row to scan.
func (r *Reporter) query(ctx context.Context, name Name, f Filter, scan func(driver.Rows) error) error {
	q, err := Bind(name, Params{Database: r.db, From: f.From, To: f.To, Campaign: f.Campaign})
	if err != nil {
		return err
	}
	rows, err := r.conn.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("running query %s on %s: %w", name, r.db, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("reading a row of query %s: %w", name, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading query %s: %w", name, err)
	}
	return nil
}

// Dimension is what a funnel is grouped by.
type Dimension string

// Funnel dimensions: the campaign or the channel of a person's first touch.
const (
	ByCampaign Dimension = "campaign"
	ByChannel  Dimension = "channel"
)

// FunnelRow is one group's people per funnel step.
type FunnelRow struct {
	Group                      string // campaign or channel; "(none)" without a campaign touch
	Visitors, Forms, MQLs, Won uint64
}

// Funnel is the funnel per group, as funnel_by_campaign.sql or
// funnel_by_channel.sql count it.
type Funnel struct {
	By   Dimension
	Rows []FunnelRow
}

// Total adds up the groups: every person is in exactly one group.
func (f *Funnel) Total() FunnelRow {
	t := FunnelRow{Group: "(total)"}
	for _, r := range f.Rows {
		t.Visitors += r.Visitors
		t.Forms += r.Forms
		t.MQLs += r.MQLs
		t.Won += r.Won
	}
	return t
}

// Funnel runs the funnel query of dimension by.
func (r *Reporter) Funnel(ctx context.Context, by Dimension, f Filter) (*Funnel, error) {
	name := FunnelByCampaign
	switch by {
	case ByCampaign:
	case ByChannel:
		name = FunnelByChannel
	default:
		return nil, fmt.Errorf("funnel by %q: want campaign or channel", by)
	}
	out := &Funnel{By: by}
	err := r.query(ctx, name, f, func(rs driver.Rows) error {
		var row FunnelRow
		if err := rs.Scan(&row.Group, &row.Visitors, &row.Forms, &row.MQLs, &row.Won); err != nil {
			return err
		}
		out.Rows = append(out.Rows, row)
		return nil
	})
	return out, err
}

// ROMIRow is one campaign's cost, attributed revenue and ROMI per
// attribution model (romi.sql). A ROMI is nil where the cost is 0.
type ROMIRow struct {
	Campaign                                 string
	Cost                                     float64
	RevenueFirst, RevenueLast, RevenueLinear float64
	ROMIFirst, ROMILast, ROMILinear          *float64
	Currencies                               string // comma-separated currencies of costs and revenue
}

// ROMI runs romi.sql.
func (r *Reporter) ROMI(ctx context.Context, f Filter) ([]ROMIRow, error) {
	var out []ROMIRow
	err := r.query(ctx, ROMI, f, func(rs driver.Rows) error {
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

// CampaignRow is one campaign's performance (campaign_performance.sql).
type CampaignRow struct {
	Campaign                          string
	Touches, People, Leads, MQLs, Won uint64
	Revenue, Cost                     float64
}

// Campaigns runs campaign_performance.sql.
func (r *Reporter) Campaigns(ctx context.Context, f Filter) ([]CampaignRow, error) {
	var out []CampaignRow
	err := r.query(ctx, CampaignPerformance, f, func(rs driver.Rows) error {
		var row CampaignRow
		if err := rs.Scan(&row.Campaign, &row.Touches, &row.People, &row.Leads, &row.MQLs, &row.Won, &row.Revenue, &row.Cost); err != nil {
			return err
		}
		out = append(out, row)
		return nil
	})
	return out, err
}

// VelocityRow is one model's time from first touch to MQL (mql_velocity.sql).
type VelocityRow struct {
	Model                        string
	MQLs                         uint64
	MedianDays, P90Days, AvgDays float64
}

// Velocity runs mql_velocity.sql.
func (r *Reporter) Velocity(ctx context.Context, f Filter) ([]VelocityRow, error) {
	var out []VelocityRow
	err := r.query(ctx, MQLVelocity, f, func(rs driver.Rows) error {
		var row VelocityRow
		if err := rs.Scan(&row.Model, &row.MQLs, &row.MedianDays, &row.P90Days, &row.AvgDays); err != nil {
			return err
		}
		out = append(out, row)
		return nil
	})
	return out, err
}

// BandRow is the number of leads in one score band of a model (score_bands.sql).
type BandRow struct {
	Model, Band string
	BandMin     int64 // lower bound; -1 for the band below the threshold
	Leads       uint64
}

// Bands runs score_bands.sql; it has no campaign filter.
func (r *Reporter) Bands(ctx context.Context, f Filter) ([]BandRow, error) {
	var out []BandRow
	err := r.query(ctx, ScoreBands, f, func(rs driver.Rows) error {
		var row BandRow
		if err := rs.Scan(&row.Model, &row.Band, &row.BandMin, &row.Leads); err != nil {
			return err
		}
		out = append(out, row)
		return nil
	})
	return out, err
}

// WeekRow is the MQL crossings of one week (mql_weekly.sql).
type WeekRow struct {
	Week time.Time // the Monday
	MQLs uint64
}

// Weekly runs mql_weekly.sql. Weeks without a crossing are missing; see
// FillWeeks.
func (r *Reporter) Weekly(ctx context.Context, f Filter) ([]WeekRow, error) {
	var out []WeekRow
	err := r.query(ctx, MQLWeekly, f, func(rs driver.Rows) error {
		var row WeekRow
		if err := rs.Scan(&row.Week, &row.MQLs); err != nil {
			return err
		}
		y, m, d := row.Week.Date()
		row.Week = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		out = append(out, row)
		return nil
	})
	return out, err
}

// monday returns the Monday of t's week, at midnight UTC.
func monday(t time.Time) time.Time {
	y, m, d := t.Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
}

// FillWeeks returns rows with a zero row for every missing week, from the
// week of from (or of the first row) to the week of to (or of the last row).
func FillWeeks(rows []WeekRow, from, to time.Time) []WeekRow {
	have := map[time.Time]uint64{}
	var first, last time.Time
	for i, r := range rows {
		have[r.Week] = r.MQLs
		if i == 0 || r.Week.Before(first) {
			first = r.Week
		}
		if i == 0 || r.Week.After(last) {
			last = r.Week
		}
	}
	if !from.IsZero() {
		first = monday(from)
	}
	if !to.IsZero() {
		last = monday(to)
	}
	if first.IsZero() || last.IsZero() {
		return nil
	}
	var out []WeekRow
	for w := first; !w.After(last); w = w.AddDate(0, 0, 7) {
		out = append(out, WeekRow{Week: w, MQLs: have[w]})
	}
	return out
}
