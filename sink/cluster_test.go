package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/localsvc"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// On a cluster the sink writes through the Distributed tables: every event
// comes back whole through them, and a retried batch folds under FINAL as
// on one server.
func TestWriteOnCluster(t *testing.T) {
	conn, cfg := warehousetest.MigratedCluster(t, "sinkcluster")
	ctx := context.Background()
	const n = 1000
	r := &rows{events: testEvents(n), mqls: testMQLs()}
	w := writer{conn: conn, db: cfg.Database, m: newMetrics(nil)}
	for range 2 {
		if err := w.write(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	db := cfg.Database
	for table, want := range map[string]uint64{"events": n, "mql": 2, "identity_links": uint64(len(identityLinks(r.events)))} {
		if got := warehousetest.Count(t, conn, "SELECT count() FROM "+db+"."+table+" FINAL"); got != want {
			t.Errorf("%s FINAL count = %d, want %d", table, got, want)
		}
	}
	stored := storedEvents(t, conn, db)
	if len(stored) != n {
		t.Errorf("%d distinct events through the Distributed table, want %d", len(stored), n)
	}
	for _, e := range r.events {
		if got := stored[e.ID]; !reflect.DeepEqual(got, asStored(e)) {
			t.Fatalf("event %s round trip:\n got %+v\nwant %+v", e.ID, got, asStored(e))
		}
	}
	checkMQLs(t, conn, db)
}

// The whole sink writing into a cluster (two shards, the first with two
// replicas) of its own while a replica is stopped and started again: the
// events sent before, while and after it is down are all stored, once
// under FINAL, and the restarted replica catches up with every row of its
// shard. The stopped node is the one the sink talks to (the first address
// of clickhouse.addr), so the sink fails over to the next one too.
func TestSinkOnClusterReplicaRestart(t *testing.T) {
	c, err := localsvc.StartClickHouseCluster(context.Background(), t.TempDir(), "lsreplica", localsvc.TestClusterReplicas...)
	if errors.Is(err, localsvc.ErrNotInstalled) {
		testsvc.Required(t, "clickhouse-server and zookeeper", err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	chCfg := warehouse.Config{Addr: strings.Join(c.Addrs(), ","), Database: "sinkreplica", Username: "default", DialTimeout: 5 * time.Second, Cluster: c.Name}
	kcfg := stream.Config{TopicPrefix: "leadstream.", Partitions: testsvc.KafkaPartitions, ReplicationFactor: -1}
	kcfg.Brokers = testsvc.Kafka(t, kcfg.Topic(stream.TopicEvents), kcfg.Topic(stream.TopicMQL), kcfg.Topic(stream.TopicMQA), kcfg.Topic(stream.TopicDeadLetter))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	const n = 900
	evs := testEvents(n)
	for i := range evs { // 300 visitors, so both shards get rows
		evs[i].AnonymousID = fmt.Sprintf("anon-%d", i%300)
	}
	wave := func(evs []event.Event) {
		t.Helper()
		var recs []stream.Record
		for i := range evs {
			b, err := event.Marshal(&evs[i])
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, stream.Record{Key: []byte(evs[i].Key()), Value: b})
		}
		produce(ctx, t, kcfg, stream.TopicEvents, recs)
	}

	s, err := New(Config{Kafka: kcfg, ClickHouse: chCfg, BatchSize: 50, FlushInterval: 50 * time.Millisecond, Group: "clickhouse"}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(runCtx) }()

	// Reads go through the second replica of the first shard, up all along.
	reader, err := warehouse.Open(ctx, warehouse.Config{Addr: c.Nodes[1].Addr, Database: chCfg.Database, Username: "default", DialTimeout: 5 * time.Second, Cluster: c.Name})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	stored := func(want uint64) func() bool {
		return func() bool {
			var got uint64
			err := reader.QueryRow(ctx, "SELECT uniqExact(event_id) FROM "+chCfg.Database+".events").Scan(&got)
			return err == nil && got >= want
		}
	}
	wave(evs[:300])
	waitFor(t, runErr, stored(300))

	down := c.Nodes[0]
	if err := down.Stop(); err != nil {
		t.Fatal(err)
	}
	wave(evs[300:600])
	waitFor(t, runErr, stored(600))
	if err := down.Start(ctx); err != nil {
		t.Fatal(err)
	}
	wave(evs[600:])
	waitFor(t, runErr, stored(n))

	var rows, final uint64
	if err := reader.QueryRow(ctx, "SELECT count() FROM "+chCfg.Database+".events FINAL").Scan(&final); err != nil {
		t.Fatal(err)
	}
	if final != n {
		t.Errorf("events FINAL = %d, want %d", final, n)
	}
	// Each replica of the first shard holds the same rows, the restarted
	// one included; with the second shard's they make up every event.
	local := chCfg.Database + ".events" + warehouse.LocalSuffix
	perNode := make([]uint64, len(c.Nodes))
	ids := make([]uint64, len(c.Nodes))
	for i, nd := range c.Nodes {
		nc, err := warehouse.Open(ctx, warehouse.Config{Addr: nd.Addr, Database: chCfg.Database, Username: "default", DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Exec(ctx, "SYSTEM SYNC REPLICA "+local); err != nil {
			t.Fatal(err)
		}
		if err := nc.QueryRow(ctx, "SELECT count(), uniqExact(event_id) FROM "+local).Scan(&perNode[i], &ids[i]); err != nil {
			t.Fatal(err)
		}
		nc.Close()
	}
	rows = perNode[0]
	if perNode[0] != perNode[1] || ids[0] != ids[1] {
		t.Errorf("shard 1: the restarted replica holds %d rows (%d events), the other %d (%d)", perNode[0], ids[0], perNode[1], ids[1])
	}
	if ids[1]+ids[2] != n || ids[1] == 0 || ids[2] == 0 {
		t.Errorf("the shards hold %d + %d events, want %d, each some", ids[1], ids[2], n)
	}
	t.Logf("rows per node %v (a batch retried while the node was going down is stored twice, folded by FINAL); first shard %d", perNode, rows)

	stop()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run returned %v after cancel", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
