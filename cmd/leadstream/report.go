package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/leadstream/leadstream/analytics"
	"github.com/leadstream/leadstream/warehouse"
)

// reportKinds are the reports `leadstream report` prints, in help order.
var reportKinds = []string{"funnel", "romi", "campaigns", "velocity", "bands", "weekly", "accounts", "account-romi"}

const reportUsage = "usage: leadstream report funnel|romi|campaigns|velocity|bands|weekly|accounts|account-romi [flags]\n" +
	"       leadstream report [KIND] -html FILE [flags]   (also writes the HTML report)"

// runReport prints one analytics report, and with -html writes the HTML
// page, from the documented queries (analytics/sql) run against ClickHouse.
func runReport(ctx context.Context, args []string) error {
	kind := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		kind, args = args[0], args[1:]
	}
	name := "report"
	if kind != "" {
		name += " " + kind
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var cfg warehouse.Config
	cfg.RegisterFlags(fs)
	format := fs.String("format", "table", "output format: table (aligned text), csv or json")
	from := fs.String("from", "", "first day of the period, YYYY-MM-DD (inclusive); empty = from the start")
	to := fs.String("to", "", "last day of the period, YYYY-MM-DD (inclusive); empty = up to now")
	campaign := fs.String("campaign", "", "only this campaign (for funnel, velocity and weekly: people whose first touch was in it)")
	by := fs.String("by", "campaign", "funnel only: group by the campaign or the channel of the first touch")
	htmlFile := fs.String("html", "", "also write one self-contained HTML page (funnel, ROMI, MQLs per week, tables) to this file")
	if err := parse(fs, args); err != nil {
		return err
	}
	if kind == "" && *htmlFile == "" {
		return errors.New(reportUsage)
	}
	if kind != "" && !slices.Contains(reportKinds, kind) {
		return fmt.Errorf("report: unknown report %q, want one of %s\n%s", kind, strings.Join(reportKinds, ", "), reportUsage)
	}
	write, ok := map[string]func(io.Writer, analytics.Table) error{
		"table": nil, "csv": analytics.WriteCSV, "json": analytics.WriteJSON,
	}[*format]
	if !ok {
		return fmt.Errorf("report: -format %q: want table, csv or json", *format)
	}
	var f analytics.Filter
	var err error
	if f.From, err = parseDay("from", *from); err != nil {
		return err
	}
	if f.To, err = parseDay("to", *to); err != nil {
		return err
	}
	f.Campaign = *campaign

	conn, err := warehouse.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	r := analytics.NewReporter(conn, cfg.Database)

	if kind != "" {
		t, err := runReportKind(ctx, r, kind, analytics.Dimension(*by), f)
		if err != nil {
			return err
		}
		if write == nil {
			fmt.Printf("%s · %s\n\n", t.Title, describe(f))
			write = analytics.WriteText
		}
		if err := write(os.Stdout, t); err != nil {
			return fmt.Errorf("writing the report: %w", err)
		}
	}
	if *htmlFile != "" {
		page, err := r.Page(ctx, f)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(*htmlFile, func(w io.Writer) error { return analytics.WriteHTML(w, page) }); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wrote the HTML report to %s\n", *htmlFile)
	}
	return nil
}

func runReportKind(ctx context.Context, r *analytics.Reporter, kind string, by analytics.Dimension, f analytics.Filter) (analytics.Table, error) {
	switch kind {
	case "funnel":
		fn, err := r.Funnel(ctx, by, f)
		if err != nil {
			return analytics.Table{}, err
		}
		return fn.Table(), nil
	case "romi":
		rows, err := r.ROMI(ctx, f)
		return analytics.ROMITable(rows), err
	case "campaigns":
		rows, err := r.Campaigns(ctx, f)
		return analytics.CampaignTable(rows), err
	case "velocity":
		rows, err := r.Velocity(ctx, f)
		return analytics.VelocityTable(rows), err
	case "bands":
		rows, err := r.Bands(ctx, f)
		return analytics.BandTable(rows), err
	case "weekly":
		rows, err := r.Weekly(ctx, f)
		return analytics.WeekTable(analytics.FillWeeks(rows, f.From, f.To)), err
	case "accounts":
		rows, err := r.AccountFunnel(ctx, f)
		return analytics.AccountFunnelTable(rows), err
	case "account-romi":
		rows, err := r.AccountROMI(ctx, f)
		return analytics.AccountROMITable(rows), err
	}
	return analytics.Table{}, fmt.Errorf("BUG: unhandled report %q", kind)
}

func parseDay(flagName, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("report: -%s %q: want a date like 2026-03-01", flagName, s)
	}
	return d, nil
}

func describe(f analytics.Filter) string {
	p := "all time"
	switch {
	case !f.From.IsZero() && !f.To.IsZero():
		p = f.From.Format(time.DateOnly) + " to " + f.To.Format(time.DateOnly)
	case !f.From.IsZero():
		p = "from " + f.From.Format(time.DateOnly)
	case !f.To.IsZero():
		p = "up to " + f.To.Format(time.DateOnly)
	}
	if f.Campaign != "" {
		p += " · campaign " + f.Campaign
	}
	return p
}

// writeFileAtomic writes path through a temporary file in the same
// directory, so a reader never sees half a report.
func writeFileAtomic(path string, fill func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := fill(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
