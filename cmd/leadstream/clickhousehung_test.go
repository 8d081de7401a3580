//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/localsvc"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/stream"
)

// TestSIGTERMWithClickHouseHung runs the sink as a process on a ClickHouse
// of its own, lets it insert, then stops the server's process (SIGSTOP: its
// port accepts, nothing answers) while an insert waits for it. SIGTERM must
// still stop the sink within a few seconds, exit status 0, the batch left
// uncommitted for the next owner.
func TestSIGTERMWithClickHouseHung(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if _, err := exec.LookPath("clickhouse-server"); err != nil {
		testsvc.Required(t, "clickhouse-server", "the test stops a ClickHouse of its own")
	}
	dir := t.TempDir()
	e := &secureEnv{bin: buildLeadstream(t, dir)}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := localsvc.StartClickHouse(ctx, filepath.Join(dir, "clickhouse"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	proc, err := os.FindProcess(srv.Pid())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Signal(syscall.SIGCONT) })

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	kcfg := stream.Config{Brokers: cluster.ListenAddrs(), TopicPrefix: "leadstream.", Partitions: 2, ReplicationFactor: -1}
	if err := stream.EnsureTopics(ctx, kcfg); err != nil {
		t.Fatal(err)
	}
	p, err := stream.NewProducer(ctx, kcfg.Producer(stream.TopicEvents), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	send := func(from, to int) {
		t.Helper()
		now := time.Now().UTC().Truncate(time.Millisecond)
		var recs []stream.Record
		for i := from; i < to; i++ {
			ev := event.Event{ID: fmt.Sprintf("ev-%d", i), Type: event.FormSubmit, EventTime: now, ReceivedAt: now, LeadID: fmt.Sprintf("lead-%d", i%4)}
			v, _ := event.Marshal(&ev)
			recs = append(recs, stream.Record{Key: []byte(ev.Key()), Value: v})
		}
		if err := p.Produce(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}

	r := e.start(t, "sink", map[string]string{
		"LEADSTREAM_KAFKA_BROKERS":    kcfg.Brokers[0],
		"LEADSTREAM_KAFKA_PARTITIONS": "2",
		"LEADSTREAM_CLICKHOUSE_ADDR":  srv.Addr,
	})
	r.waitReady(t)
	send(0, 20)
	eventually(t, "the first batch inserted", 30*time.Second, func() (bool, string) {
		_, page := get("http://"+r.addr+"/metrics", "")
		return metricAtLeast(page, "leadstream_kafka_consume_batches_total", 1), tail(r.logs(), 2000)
	})

	if err := proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	send(20, 40)
	time.Sleep(4 * time.Second) // the next flush (1 s) waits for the stopped server
	select {
	case <-r.done:
		t.Fatalf("the sink exited while ClickHouse hung: %v\n%s", r.err, tail(r.logs(), 4000))
	default:
	}
	stopped := time.Now()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
		took := time.Since(stopped)
		t.Logf("sink stopped %v after SIGTERM with ClickHouse hung", took.Round(time.Millisecond))
		if r.err != nil {
			t.Errorf("sink exited with %v after SIGTERM\n%s", r.err, tail(r.logs(), 4000))
		}
		if took > 10*time.Second {
			t.Errorf("sink took %v to stop after SIGTERM with ClickHouse hung\n%s", took, tail(r.logs(), 4000))
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("sink did not stop within 60 s of SIGTERM with ClickHouse hung\n%s", tail(r.logs(), 4000))
	}
	if strings.Contains(r.logs(), "level=ERROR") {
		t.Errorf("the sink logged an error stopping:\n%s", tail(r.logs(), 4000))
	}
}
