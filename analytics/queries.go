package analytics

import (
	"embed"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/leadstream/leadstream/warehouse"
)

//go:embed sql/*.sql
var files embed.FS

// Name names one query: its file is sql/<Name>.sql.
type Name string

// The documented
const (
	FunnelByCampaign    Name = "funnel_by_campaign"
	FunnelByChannel     Name = "funnel_by_channel"
	MQLVelocity         Name = "mql_velocity"
	MQLWeekly           Name = "mql_weekly"
	ScoreBands          Name = "score_bands"
	CampaignPerformance Name = "campaign_performance"
	ROMI                Name = "romi"
	AccountFunnel       Name = "account_funnel"
	AccountROMI         Name = "account_romi"
)

// DefaultDatabase is the database the files are written against.
const DefaultDatabase = "leadstream"

// The filter literals of the files; see the package comment.
const (
	fromMarker     = "toDate('2000-01-01') /*from*/"
	toMarker       = "toDate('2100-12-31') /*to*/"
	campaignMarker = "'' /*campaign*/"
)

// Date range a filter may use: ClickHouse's Date holds 1970-01-01 to 2105 on
// every version.
var (
	minDay = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxDay = time.Date(2105, 12, 31, 0, 0, 0, 0, time.UTC)
)

// Sentinel errors of Bind and SQL.
var (
	// ErrUnknownQuery means no file of that name exists.
	ErrUnknownQuery = errors.New("unknown query")
	// ErrFilterUnsupported means a filter was given that the query does not
	// have (score_bands has no campaign filter).
	ErrFilterUnsupported = errors.New("filter not supported")
	// ErrBadParams means a database name that is not a plain identifier, a
	// date outside 1970..2105, or From after To.
	ErrBadParams = errors.New("bad query parameters")
)

// Params are the values Bind puts into a query. Zero values mean no filter.
type Params struct {
	Database string    // replaces "leadstream." before table names; "" = leadstream
	From, To time.Time // first and last day of the period (inclusive); only the date counts
	Campaign string    // one campaign only
}

// SQL returns the text of a query file as documented.
func SQL(name Name) (string, error) {
	b, err := files.ReadFile("sql/" + string(name) + ".sql")
	if err != nil {
		return "", fmt.Errorf("%w %q", ErrUnknownQuery, name)
	}
	return string(b), nil
}

var (
	tableRef = regexp.MustCompile(`\bleadstream\.(events|identity_links|mql|campaign_costs|account_members|mqa)\b`)
)

// Bind returns the query with p's database and filters in place, ready to
// send over the native protocol (the trailing semicolon removed).
func Bind(name Name, p Params) (string, error) {
	q, err := SQL(name)
	if err != nil {
		return "", err
	}
	if p.Database != "" && p.Database != DefaultDatabase {
		if err := warehouse.CheckDatabase(p.Database); err != nil {
			return "", fmt.Errorf("%w: %w", ErrBadParams, err)
		}
		q = tableRef.ReplaceAllString(q, p.Database+".$1")
	}
	if !p.From.IsZero() && !p.To.IsZero() && dateOf(p.From).After(dateOf(p.To)) {
		return "", fmt.Errorf("%w: from %s is after to %s", ErrBadParams, p.From.Format(time.DateOnly), p.To.Format(time.DateOnly))
	}
	for _, f := range []struct {
		name, marker string
		set          bool
		value        func() (string, error)
	}{
		{"from", fromMarker, !p.From.IsZero(), func() (string, error) { return dateLiteral("from", p.From) }},
		{"to", toMarker, !p.To.IsZero(), func() (string, error) { return dateLiteral("to", p.To) }},
		{"campaign", campaignMarker, p.Campaign != "", func() (string, error) { return stringLiteral(p.Campaign) + " /*campaign*/", nil }},
	} {
		if !f.set {
			continue
		}
		if !strings.Contains(q, f.marker) {
			return "", fmt.Errorf("%w: %s has no %s filter", ErrFilterUnsupported, name, f.name)
		}
		v, err := f.value()
		if err != nil {
			return "", err
		}
		q = strings.ReplaceAll(q, f.marker, v)
	}
	return strings.TrimRight(strings.TrimSpace(q), ";"), nil
}

func dateOf(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func dateLiteral(which string, t time.Time) (string, error) {
	d := dateOf(t)
	if d.Before(minDay) || d.After(maxDay) {
		return "", fmt.Errorf("%w: %s %s is outside 1970-01-01..2105-12-31", ErrBadParams, which, d.Format(time.DateOnly))
	}
	return "toDate('" + d.Format(time.DateOnly) + "') /*" + which + "*/", nil
}

// stringLiteral quotes s as a ClickHouse string literal.
func stringLiteral(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
