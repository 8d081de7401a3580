package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/leadstream/leadstream/erasure"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
)

const eraseUsage = "usage: leadstream erase [flags] LEAD_ID   (flags before the id; -wait bounds the wait for ClickHouse)"

// runErase erases a person (GDPR art. 17): `leadstream erase LEAD_ID`
// deletes the lead's and its visitors' state in Redis and rows in
// ClickHouse, and publishes a tombstone on the erasures topic (package
// erasure). It prints what it erased as JSON; it fails when ClickHouse has
// not finished deleting within -wait (run it again: it is idempotent).
func runErase(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("erase", flag.ContinueOnError)
	var (
		kcfg  stream.Config
		rcfg  leadstate.Config
		chcfg warehouse.Config
	)
	kcfg.RegisterFlags(fs)
	rcfg.RegisterFlags(fs)
	chcfg.RegisterFlags(fs)
	wait := fs.Duration("wait", 5*time.Minute, "how long to wait for ClickHouse to finish deleting the rows (its ALTER TABLE … DELETE mutations)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() == 0:
		return errors.New(eraseUsage)
	case fs.NArg() > 1 && strings.HasPrefix(fs.Arg(1), "-"):
		return fmt.Errorf("erase: flags go before LEAD_ID (got %q after it)\n%s", fs.Arg(1), eraseUsage)
	case fs.NArg() > 1:
		return fmt.Errorf("erase: one LEAD_ID at a time, got %d arguments\n%s", fs.NArg(), eraseUsage)
	case fs.Arg(0) == "":
		return errors.New("erase: LEAD_ID is empty\n" + eraseUsage)
	case *wait < 0:
		return fmt.Errorf("erase: -wait must not be negative, got %s", *wait)
	}
	if err := errors.Join(kcfg.Validate(), rcfg.Validate(), chcfg.Validate()); err != nil {
		return err
	}
	if err := stream.EnsureTopics(ctx, kcfg); err != nil {
		log.Warn("could not create topics; expecting them to exist", "err", err)
	}
	rdb, err := leadstate.Open(ctx, rcfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	e := erasure.New(erasure.Config{Kafka: kcfg, ClickHouse: chcfg}, leadstate.NewStore(rdb), log, nil)
	defer e.Close()
	res, err := e.Erase(ctx, fs.Arg(0), *wait)
	if err != nil {
		return err
	}
	out, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stdout, string(out))
	if !res.Done {
		return fmt.Errorf("erase: ClickHouse has not finished deleting the rows within -wait %s; run the same command again to follow it", *wait)
	}
	return nil
}
