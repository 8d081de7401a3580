//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
)

// TestSIGTERMWithRedisHung runs the processor as a process on a Redis of
// its own, lets it score, then stops the Redis process (SIGSTOP: the port
// still accepts, nothing answers — a hung server or a network dropping
// packets) while a batch waits for it. SIGTERM must still stop the processor
// within a few seconds, exit status 0, the batch left uncommitted; once
// Redis is back, a new processor scores each event exactly once.
func TestSIGTERMWithRedisHung(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	testsvc.Redis(t) // fails under CI when redis-server is missing
	dir := t.TempDir()
	e := &secureEnv{bin: buildLeadstream(t, dir)}
	chAddr := testsvc.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv := testsvc.PrivateRedis(t)
	proc := newFreezer(t, srv.Pid())
	rulesPath := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesPath, []byte(killRules), 0o644); err != nil {
		t.Fatal(err)
	}
	rules, err := scoring.Parse(rulesPath, []byte(killRules))
	if err != nil {
		t.Fatal(err)
	}

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	kcfg := stream.Config{Brokers: cluster.ListenAddrs(), TopicPrefix: "leadstream.", Partitions: 2, ReplicationFactor: -1}
	if err := stream.EnsureTopics(ctx, kcfg); err != nil {
		t.Fatal(err)
	}
	db := fmt.Sprintf("redishung_%d", rand.Uint32())
	t.Cleanup(func() { clickhouse(t, chAddr, "DROP DATABASE IF EXISTS "+db) })
	env := map[string]string{
		"LEADSTREAM_KAFKA_BROKERS":       kcfg.Brokers[0],
		"LEADSTREAM_KAFKA_PARTITIONS":    "2",
		"LEADSTREAM_REDIS_ADDR":          srv.Addr,
		"LEADSTREAM_CLICKHOUSE_ADDR":     chAddr,
		"LEADSTREAM_CLICKHOUSE_DATABASE": db,
		"LEADSTREAM_RULES":               rulesPath,
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := stream.NewProducer(ctx, kcfg.Producer(stream.TopicEvents), quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)
	var events []event.Event
	send := func(from, to int) {
		t.Helper()
		var recs []stream.Record
		for i := from; i < to; i++ {
			ev := event.Event{ID: fmt.Sprintf("ev-%d", i), Type: event.FormSubmit, EventTime: now.Add(time.Duration(i) * time.Millisecond),
				ReceivedAt: now, LeadID: fmt.Sprintf("lead-%d", i%4)}
			events = append(events, ev)
			v, _ := event.Marshal(&ev)
			recs = append(recs, stream.Record{Key: []byte(ev.Key()), Value: v})
		}
		if err := p.Produce(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	scored := func(r *role) float64 {
		_, page := get("http://"+r.addr+"/metrics", "")
		n, _ := metricSum(page, "leadstream_processor_events_total", `result="scored"`)
		return n
	}

	r := e.start(t, "processor", env)
	r.waitReady(t)
	send(0, 20)
	eventually(t, "the first events scored", 30*time.Second, func() (bool, string) {
		n := scored(r)
		return n == 20, fmt.Sprint(n, " scored")
	})

	// The same leads again: their states are in the processor's cache, so
	// the batch reaches its commit, which waits for the stopped Redis.
	proc.hang()
	send(20, 40)
	time.Sleep(3 * time.Second)
	r.sigtermWithin(t, "Redis hung", 10*time.Second)
	if !strings.Contains(r.logs(), "stopped with work unfinished") {
		t.Errorf("the processor's log does not say the batch was left unfinished:\n%s", tail(r.logs(), 4000))
	}

	// Redis back: the next owner scores what was left, each event once
	// (the abandoned write may have landed when Redis woke up).
	proc.resume()
	r2 := e.start(t, "processor", env)
	r2.waitReady(t)
	eventually(t, "the rest scored once", 60*time.Second, func() (bool, string) {
		_, page := get("http://"+r2.addr+"/metrics", "")
		s, _ := metricSum(page, "leadstream_processor_events_total", `result="scored"`)
		d, _ := metricSum(page, "leadstream_processor_events_total", `result="duplicate"`)
		return s+d == 20, fmt.Sprintf("%v scored, %v duplicates", s, d)
	})
	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	store := leadstate.NewStore(rdb)
	for lead, models := range expectedScores(t, rules, events) {
		rec, err := store.ReadLead(ctx, lead)
		if err != nil {
			t.Fatal(err)
		}
		for model, want := range models {
			var v float64
			if rec.State != nil && rec.State.Model(model) != nil {
				v = rec.State.Model(model).V
			}
			if math.Abs(v-want.v) > 1e-9*math.Max(1, math.Abs(want.v)) {
				t.Errorf("%s %s: score %v, want %v (each of its events once)", lead, model, v, want.v)
			}
		}
	}
}

// sigtermWithin checks that the role still runs, sends it SIGTERM and
// checks that it exits 0 within bound (when is what the test did to it).
func (r *role) sigtermWithin(t *testing.T, when string, bound time.Duration) {
	t.Helper()
	select {
	case <-r.done:
		t.Fatalf("%s exited with %s: %v\n%s", r.name, when, r.err, tail(r.logs(), 4000))
	default:
	}
	stopped := time.Now()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
		took := time.Since(stopped)
		t.Logf("%s stopped %v after SIGTERM with %s", r.name, took.Round(time.Millisecond), when)
		if r.err != nil {
			t.Errorf("%s exited with %v after SIGTERM\n%s", r.name, r.err, tail(r.logs(), 4000))
		}
		if took > bound {
			t.Errorf("%s took %v to stop after SIGTERM with %s, over %v\n%s", r.name, took, when, bound, tail(r.logs(), 4000))
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not stop within 60 s of SIGTERM with %s\n%s", r.name, when, tail(r.logs(), 4000))
	}
}
