package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// `leadstream retention -older-than` lists the expired months without
// dropping them, and drops them with -apply; the flag is required.
func TestRetentionCommand(t *testing.T) {
	conn, cfg := warehousetest.Migrated(t, "retention_cmd")
	ctx := context.Background()
	now := time.Now().UTC()
	old, recent := now.AddDate(-2, 0, 0), now.Add(-time.Hour)
	if err := warehouse.Insert(ctx, conn, cfg.Database, "events", 2, []warehouse.Column{
		{Name: "event_id", Values: []string{"old", "recent"}}, {Name: "event_time", Values: []time.Time{old, recent}}}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	run := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := retention(ctx, append([]string{"-clickhouse.addr", cfg.Addr, "-clickhouse.database", cfg.Database}, args...), log, &out); err != nil {
			t.Fatalf("retention %q: %v", args, err)
		}
		return out.String()
	}
	count := func() uint64 { return warehousetest.Count(t, conn, "SELECT count() FROM "+cfg.Database+".events") }
	month := old.Format("200601")
	out := run("-older-than", "400d")
	if !strings.Contains(out, "events") || !strings.Contains(out, month) || !strings.Contains(out, "would drop") || !strings.Contains(out, "dry run: 1 partition") {
		t.Errorf("dry run printed:\n%s", out)
	}
	if n := count(); n != 2 {
		t.Fatalf("the dry run dropped rows: %d left", n)
	}
	if out := run("-older-than", "9600h", "-apply"); !strings.Contains(out, month) || !strings.Contains(out, "dropped") {
		t.Errorf("-apply printed:\n%s", out)
	}
	if n := count(); n != 1 {
		t.Errorf("%d rows left after -apply, want the recent one", n)
	}
	if out := run("-older-than", "400d"); !strings.Contains(out, "no monthly partition") {
		t.Errorf("after -apply:\n%s", out)
	}
	for _, args := range [][]string{{}, {"-older-than", "0"}, {"-older-than", "ten days"}} {
		if err := retention(ctx, append([]string{"-clickhouse.addr", cfg.Addr}, args...), log, io.Discard); err == nil {
			t.Errorf("retention %q succeeded, want an error", args)
		}
	}
}

// With a ClickHouse cluster, retention refuses before connecting, naming
// the cluster: dropping partitions of every shard's local tables is not
// built yet.
func TestRetentionRefusesCluster(t *testing.T) {
	err := retention(context.Background(), []string{"-clickhouse.addr", "127.0.0.1:1", "-clickhouse.cluster", "lstest", "-older-than", "400d", "-apply"},
		slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	if !errors.Is(err, warehouse.ErrClusterUnsupported) || !strings.Contains(err.Error(), `"lstest"`) {
		t.Errorf("retention with a cluster: %v, want ErrClusterUnsupported naming it", err)
	}
}
