package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/leadstream/leadstream/warehouse"
)

const costsUsage = "usage: leadstream costs import [flags] FILE.csv   (header: campaign,day,channel,cost,currency)"

// runCosts imports campaign spend for ROMI: `leadstream costs import FILE.csv`.
// A file with any bad line imports nothing and lists every problem as
// FILE:LINE: field: reason; importing the same file again changes nothing.
func runCosts(ctx context.Context, args []string, log *slog.Logger) error {
	if helpAsked(args) {
		fmt.Println(costsUsage + "\n\nIts flags: leadstream costs import -h")
		return nil
	}
	if len(args) < 1 || args[0] != "import" {
		return errors.New(costsUsage)
	}
	fs := flag.NewFlagSet("costs import", flag.ContinueOnError)
	var cfg warehouse.Config
	cfg.RegisterFlags(fs)
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	switch {
	case fs.NArg() == 0:
		return errors.New(costsUsage)
	case fs.NArg() > 1 && strings.HasPrefix(fs.Arg(1), "-"):
		return fmt.Errorf("costs import: flags go before FILE (got %q after it)\n%s", fs.Arg(1), costsUsage)
	case fs.NArg() > 1:
		return fmt.Errorf("costs import: one FILE only, got %q\n%s", fs.Args(), costsUsage)
	}
	path := fs.Arg(0)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("costs import: %w", err)
	}
	defer f.Close()
	costs, err := warehouse.ParseCosts(f)
	var bad *warehouse.CostsError
	if errors.As(err, &bad) {
		for _, l := range bad.Lines {
			fmt.Fprintf(os.Stderr, "%s:%s\n", path, strings.TrimPrefix(l.String(), "line "))
		}
		return fmt.Errorf("%s: %d bad line(s) or field(s), nothing imported", path, len(bad.Lines))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	conn, err := warehouse.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := warehouse.MigrateCluster(ctx, conn, cfg.Database, cfg.Cluster); err != nil {
		return err
	}
	if err := warehouse.ImportCosts(ctx, conn, cfg.Database, costs, time.Now()); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	campaigns := map[string]bool{}
	first, last := costs[0].Day, costs[0].Day
	for _, c := range costs {
		campaigns[c.Campaign] = true
		if c.Day.Before(first) {
			first = c.Day
		}
		if c.Day.After(last) {
			last = c.Day
		}
	}
	names := make([]string, 0, len(campaigns))
	for c := range campaigns {
		names = append(names, c)
	}
	sort.Strings(names)
	fmt.Printf("%s: imported %d cost rows into %s.%s (campaigns %s; days %s to %s)\n", path, len(costs), cfg.Database,
		warehouse.TableCampaignCosts, strings.Join(names, ", "), first.Format(time.DateOnly), last.Format(time.DateOnly))
	log.Debug("costs imported", "rows", len(costs))
	return nil
}
