//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/localsvc"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/stream"
)

// TestSIGTERMWithClickHouseHung runs the sink and the notifier as processes
// on a ClickHouse of their own, lets them write, then stops the server's
// process (SIGSTOP: its port accepts, nothing answers) while a write waits
// for it (the sink's insert, the notifier's attempt records). SIGTERM must
// still stop each within a few seconds (the notifier: its 10 s drain, then
// the attempt rows still queued are given up, logged with their count), exit
// status 0, the sink's batch left uncommitted for the next owner.
func TestSIGTERMWithClickHouseHung(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	if _, err := exec.LookPath("clickhouse-server"); err != nil {
		testsvc.Required(t, "clickhouse-server", "the test stops a ClickHouse of its own")
	}
	dir := t.TempDir()
	e := &secureEnv{bin: buildLeadstream(t, dir)}
	for _, name := range []string{"sink", "notifier"} {
		t.Run(name, func(t *testing.T) { clickHouseHung(t, e, name) })
	}
}

func clickHouseHung(t *testing.T, e *secureEnv, name string) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := localsvc.StartClickHouse(ctx, filepath.Join(dir, "clickhouse"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	proc := newFreezer(t, srv.Pid())

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	kcfg := stream.Config{Brokers: cluster.ListenAddrs(), TopicPrefix: "leadstream.", Partitions: 2, ReplicationFactor: -1}
	if err := stream.EnsureTopics(ctx, kcfg); err != nil {
		t.Fatal(err)
	}
	var hooks atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		hooks.Add(1)
	}))
	defer receiver.Close()
	conf := filepath.Join(dir, "notify.yaml")
	if err := os.WriteFile(conf, []byte("destinations:\n  - {name: crm, type: webhook, url: \""+receiver.URL+"/hook\", secret: clickhouse-hung-test-secret-01}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	topic := stream.TopicEvents
	if name == "notifier" {
		topic = stream.TopicMQL
	}
	p, err := stream.NewProducer(ctx, kcfg.Producer(topic), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	send := func(from, to int) {
		t.Helper()
		now := time.Now().UTC().Truncate(time.Millisecond)
		var recs []stream.Record
		for i := from; i < to; i++ {
			lead := fmt.Sprintf("lead-%d", i%4)
			if name == "notifier" {
				v := fmt.Sprintf(`{"mql_id":%q,"lead_id":%q,"model":"default","score":105,"threshold":100,"crossed_at":%q,"trigger_event_id":"ev-%d","reasons":[]}`,
					event.MQLID(lead, "default", fmt.Sprint("ev-", i)), lead, now.Format(time.RFC3339Nano), i)
				recs = append(recs, stream.Record{Key: []byte(lead), Value: []byte(v)})
				continue
			}
			ev := event.Event{ID: fmt.Sprintf("ev-%d", i), Type: event.FormSubmit, EventTime: now, ReceivedAt: now, LeadID: lead}
			v, _ := event.Marshal(&ev)
			recs = append(recs, stream.Record{Key: []byte(ev.Key()), Value: v})
		}
		if err := p.Produce(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}

	r := e.start(t, name, map[string]string{
		"LEADSTREAM_KAFKA_BROKERS":    kcfg.Brokers[0],
		"LEADSTREAM_KAFKA_PARTITIONS": "2",
		"LEADSTREAM_CLICKHOUSE_ADDR":  srv.Addr,
		"LEADSTREAM_NOTIFY_CONFIG":    conf,
	})
	r.waitReady(t)
	send(0, 20)
	eventually(t, "the first records written", 30*time.Second, func() (bool, string) {
		_, page := get("http://"+r.addr+"/metrics", "")
		if name == "notifier" {
			n, _ := metricSum(page, "leadstream_notifier_recorded_attempts_total")
			return n == 20, fmt.Sprint(n, " attempts recorded")
		}
		return metricAtLeast(page, "leadstream_kafka_consume_batches_total", 1), tail(r.logs(), 2000)
	})

	proc.hang()
	send(20, 40)
	if name == "notifier" {
		eventually(t, "the next records delivered", 30*time.Second, func() (bool, string) {
			return hooks.Load() >= 40, fmt.Sprint(hooks.Load(), " delivered")
		})
	}
	time.Sleep(4 * time.Second) // the next write (the sink's flush each second) waits for the stopped server
	r.sigtermWithin(t, "ClickHouse hung", 12*time.Second)
	if name == "notifier" {
		// As documented: the rows ClickHouse never took are given up at
		// the end of the drain, with their count, not held for ever.
		if !strings.Contains(r.logs(), `msg="delivery attempts not written to clickhouse before shutdown" stage=notifier rows=20`) {
			t.Errorf("the notifier did not say which attempt rows it gave up:\n%s", tail(r.logs(), 4000))
		}
	} else if strings.Contains(r.logs(), "level=ERROR") {
		t.Errorf("%s logged an error stopping:\n%s", name, tail(r.logs(), 4000))
	}
}
