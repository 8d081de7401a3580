package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

type nativeResult struct {
	Rows           int64     `json:"rows"`
	FileBytes      int64     `json:"native_file_bytes"`
	Seconds        float64   `json:"seconds"`
	Runs           []float64 `json:"runs_seconds"`
	ClientStartSec float64   `json:"client_startup_seconds"`
	RowsPerS       float64   `json:"rows_per_second"`
	Command        string    `json:"command"`
}

// clickhouseCeiling exports rows the sink wrote as a Native file and times
// clickhouse-client inserting it into an empty copy of the table.
func (h *harness) clickhouseCeiling(ctx context.Context) error {
	h.logf("ceiling clickhouse_native")
	ch := func(q string, stdin, stdout *os.File) (string, error) { return h.clickhouse(ctx, q, stdin, stdout) }
	// Let the merges of the sink's parts finish, so they do not slow the insert.
	h.waitMerges(ctx)
	// DESCRIBE lists the columns in table order (18.16's system.columns has no position).
	desc, err := ch("DESCRIBE TABLE "+sinkDatabase+".events FORMAT TSV", nil, nil)
	if err != nil {
		return err
	}
	var names []string
	for _, line := range strings.Split(desc, "\n") {
		if name, _, _ := strings.Cut(line, "\t"); name != "" && name != "ingested_at" {
			names = append(names, name)
		}
	}
	cols := strings.Join(names, ", ")
	file := filepath.Join(h.dir, "events.native")
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	_, err = ch(fmt.Sprintf("SELECT %s FROM %s.events LIMIT %d FORMAT Native", cols, sinkDatabase, h.nativeRows), nil, f)
	f.Close()
	if err != nil {
		return err
	}
	rowsOut, err := ch(fmt.Sprintf("SELECT count() FROM (SELECT 1 FROM %s.events LIMIT %d)", sinkDatabase, h.nativeRows), nil, nil)
	if err != nil {
		return err
	}
	rows, _ := strconv.ParseInt(rowsOut, 10, 64)
	t := time.Now()
	if _, err := ch("SELECT 1", nil, nil); err != nil {
		return err
	}
	startup := time.Since(t)
	r := nativeResult{Rows: rows, ClientStartSec: startup.Seconds(),
		Command: "clickhouse-client --query \"INSERT INTO bench_sink.events_native_N (<the sink's columns>) FORMAT Native\" < events.native (best of 3, each into a fresh copy of the table)"}
	// Best of three inserts, each into an empty copy of the table: the
	// ceiling is what ClickHouse can take, and single runs are noisy here.
	for i := 1; i <= 3; i++ {
		table := fmt.Sprintf("%s.events_native_%d", sinkDatabase, i)
		if _, err := ch("CREATE TABLE "+table+" AS "+sinkDatabase+".events", nil, nil); err != nil {
			return err
		}
		in, err := os.Open(file)
		if err != nil {
			return err
		}
		st, _ := in.Stat()
		r.FileBytes = st.Size()
		t = time.Now()
		_, err = ch(fmt.Sprintf("INSERT INTO %s (%s) FORMAT Native", table, cols), in, nil)
		el := time.Since(t)
		in.Close()
		if err != nil {
			return err
		}
		got, err := ch("SELECT count() FROM "+table, nil, nil)
		if err != nil || got != rowsOut {
			return fmt.Errorf("native insert: %s holds %s rows, want %s (%v)", table, got, rowsOut, err)
		}
		r.Runs = append(r.Runs, el.Seconds())
		if r.Seconds == 0 || el.Seconds() < r.Seconds {
			r.Seconds = el.Seconds()
		}
		if _, err := ch("DROP TABLE "+table, nil, nil); err != nil {
			return err
		}
	}
	r.RowsPerS = float64(rows) / r.Seconds
	h.rep.addCeiling(&ceiling{ID: "clickhouse_native", What: "clickhouse-client INSERT … FORMAT Native of the same rows", Figure: r.RowsPerS, Unit: "rows/s", Detail: r})
	h.logf("  %s rows, best of %.2fs/%.2fs/%.2fs (client start-up %.2fs included): %s rows/s", num(float64(rows)), r.Runs[0], r.Runs[1], r.Runs[2], r.ClientStartSec, num(r.RowsPerS))
	return nil
}

// clickhouse runs one query with clickhouse-client and returns its output
// (or writes it to stdout when given).
func (h *harness) clickhouse(ctx context.Context, q string, stdin, stdout *os.File) (string, error) {
	cmd := exec.CommandContext(ctx, "clickhouse-client", "--host", "127.0.0.1", "--port", h.chPort(), "--query", q)
	var out, serr strings.Builder
	cmd.Stdin = stdin
	if stdout != nil {
		cmd.Stdout = stdout
	} else {
		cmd.Stdout = &out
	}
	cmd.Stderr = &serr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("clickhouse-client %q: %w: %s", q, err, serr.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// waitMerges waits (up to 30 s) until ClickHouse runs no background merge,
// so an earlier scenario's parts do not take CPU from the next one.
func (h *harness) waitMerges(ctx context.Context) {
	for range 60 {
		if n, err := h.clickhouse(ctx, "SELECT count() FROM system.merges", nil, nil); err != nil || n == "0" {
			return
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
}
