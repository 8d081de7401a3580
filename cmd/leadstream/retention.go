package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/leadstream/leadstream/warehouse"
)

// runRetention drops whole monthly partitions of ClickHouse older than
// -older-than: `leadstream retention -older-than 400d` lists them (dry run),
// and with -apply drops them.
func runRetention(ctx context.Context, args []string, log *slog.Logger) error {
	return retention(ctx, args, log, os.Stdout)
}

func retention(ctx context.Context, args []string, log *slog.Logger, out io.Writer) error {
	fs := flag.NewFlagSet("retention", flag.ContinueOnError)
	var cfg warehouse.Config
	cfg.RegisterFlags(fs)
	var older durationDays
	fs.Var(&older, "older-than", "drop the monthly partitions whose whole month is older than this (Go duration or days: 400d, 9600h); required")
	apply := fs.Bool("apply", false, "drop the partitions (without it, only list them: a dry run)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if older <= 0 {
		return errors.New("retention: -older-than is required and must be positive (e.g. -older-than 400d)")
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := cfg.SingleServer("retention"); err != nil {
		return err
	}
	conn, err := warehouse.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	before := time.Now().UTC().Add(-time.Duration(older))
	parts, err := warehouse.ExpiredPartitions(ctx, conn, cfg.Database, before)
	if err != nil {
		return err
	}
	action := "would drop"
	if *apply {
		action = "dropped"
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tMONTH\tROWS\tBYTES\tACTION")
	for _, p := range parts {
		if *apply {
			if err := warehouse.DropPartition(ctx, conn, cfg.Database, p); err != nil {
				tw.Flush()
				return err
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", p.Table, p.Month, p.Rows, p.Bytes, action)
	}
	tw.Flush()
	switch {
	case len(parts) == 0:
		fmt.Fprintf(out, "no monthly partition is wholly older than %s\n", before.Format(time.RFC3339))
	case !*apply:
		fmt.Fprintf(out, "dry run: %d partition(s) wholly older than %s; run again with -apply to drop them\n", len(parts), before.Format(time.RFC3339))
	default:
		log.Info("partitions dropped", "count", len(parts), "before", before)
	}
	return nil
}

// durationDays is a time.Duration flag that also takes whole days ("400d").
// A number of days that does not fit a time.Duration (about 292 years) is
// refused instead of wrapping around.
type durationDays time.Duration

// maxDays is the most whole days a time.Duration holds.
const maxDays = int64(math.MaxInt64 / (24 * time.Hour))

func (d *durationDays) String() string { return time.Duration(*d).String() }

func (d *durationDays) Set(s string) error {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseInt(n, 10, 64)
		if err != nil || days < 0 {
			if errors.Is(err, strconv.ErrRange) {
				return fmt.Errorf("%q: too long, at most %dd", s, maxDays)
			}
			return fmt.Errorf("%q: want a number of days (400d) or a Go duration (9600h)", s)
		}
		if days > maxDays {
			return fmt.Errorf("%q: too long, at most %dd", s, maxDays)
		}
		*d = durationDays(time.Duration(days) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q: want a number of days (400d) or a Go duration (9600h)", s)
	}
	*d = durationDays(v)
	return nil
}
