package sink

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/localsvc"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/warehouse"
)

// BenchmarkClusterInsert measures the two ways a sink can write a batch of
// events into a ClickHouse cluster (two shards, the first with two
// replicas), streamed in blocks as the sink does:
//
//   - distributed: one INSERT into the Distributed table through one node
//     (insert_distributed_sync), which splits each block by the sharding key
//     and forwards the other shard's rows;
//   - shard-local: the sink splits the batch by event id itself (as the sharding key) and inserts
//     each part into its shard's local table, the shards in parallel.
//
// Besides rows/s it reports the CPU the ClickHouse processes spent per row
// (/proc, every node, replication of the first shard included once the
// replicas are in sync) and the benchmark process's own CPU per row.
func BenchmarkClusterInsert(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	c, err := localsvc.StartClickHouseCluster(ctx, dir, "bench", localsvc.TestClusterReplicas...)
	if err != nil {
		if strings.Contains(err.Error(), "not installed") {
			testsvc.Required(b, "clickhouse-server and zookeeper", err.Error())
		}
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Stop() })
	fatal := func(err error) { // with the nodes' logs: a crash shows there
		b.Helper()
		b.Fatalf("%v%s", err, c.LogTail())
	}
	cfg := warehouse.Config{Addr: c.Nodes[0].Addr, Database: "bench", Username: "default", DialTimeout: 5 * time.Second, Cluster: c.Name}
	conn, err := warehouse.Open(ctx, cfg)
	if err != nil {
		fatal(err)
	}
	defer conn.Close()
	if err := warehouse.MigrateCluster(ctx, conn, cfg.Database, cfg.Cluster); err != nil {
		fatal(err)
	}
	// One connection to one replica of each shard, for shard-local inserts.
	var shardConns []driver.Conn
	for _, n := range c.Nodes {
		if n.Replica != 1 {
			continue
		}
		sc, err := warehouse.Open(ctx, warehouse.Config{Addr: n.Addr, Database: cfg.Database, Username: "default", DialTimeout: 5 * time.Second})
		if err != nil {
			fatal(err)
		}
		defer sc.Close()
		shardConns = append(shardConns, sc)
	}
	syncReplicas := func() {
		for _, n := range c.Nodes {
			nc, err := warehouse.Open(ctx, warehouse.Config{Addr: n.Addr, Database: cfg.Database, Username: "default", DialTimeout: 5 * time.Second})
			if err != nil {
				fatal(err)
			}
			if err := nc.Exec(ctx, "SYSTEM SYNC REPLICA "+cfg.Database+"."+warehouse.TableEvents+warehouse.LocalSuffix); err != nil {
				fatal(err)
			}
			nc.Close()
		}
	}
	const batch = 50_000
	evs := testEvents(batch)
	for i := range evs { // 5,000 visitors and 1,000 leads, not 17 and 11
		if evs[i].AnonymousID != "" {
			evs[i].AnonymousID = fmt.Sprintf("anon-%d", i%5000)
		}
		if evs[i].LeadID != "" {
			evs[i].LeadID = fmt.Sprintf("lead-%d", i%1000)
		}
	}
	parts := make([][]event.Event, len(shardConns))
	for _, e := range evs {
		h := fnv.New64a()
		h.Write([]byte(e.ID))
		s := h.Sum64() % uint64(len(parts))
		parts[s] = append(parts[s], e)
	}

	run := func(b *testing.B, insert func() error) {
		syncReplicas()
		chBefore, selfBefore := clusterCPU(b, c), selfCPU()
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			if err := insert(); err != nil {
				fatal(err)
			}
			n++
		}
		elapsed := b.Elapsed()
		syncReplicas()
		rows := float64(n * batch)
		b.ReportMetric(rows/elapsed.Seconds(), "rows/s")
		b.ReportMetric(float64((clusterCPU(b, c)-chBefore).Microseconds())/rows, "ch-µs/row")
		b.ReportMetric(float64((selfCPU()-selfBefore).Microseconds())/rows, "client-µs/row")
	}
	b.Run("distributed", func(b *testing.B) {
		var cols eventCols
		run(b, func() error { return insertBlocks(ctx, conn, cfg.Database, warehouse.TableEvents, evs, &cols) })
	})
	b.Run("shard-local", func(b *testing.B) {
		cols := make([]eventCols, len(parts))
		run(b, func() error {
			errs := make([]error, len(parts))
			var wg sync.WaitGroup
			for s := range parts {
				wg.Go(func() {
					errs[s] = insertBlocks(ctx, shardConns[s], cfg.Database, warehouse.TableEvents+warehouse.LocalSuffix, parts[s], &cols[s])
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// insertBlocks sends evs into database.table as one INSERT streamed in
// blocks of blockRows, as the sink's eventsInsert does.
func insertBlocks(ctx context.Context, conn driver.Conn, database, table string, evs []event.Event, cols *eventCols) error {
	batch, err := conn.PrepareBatch(ctx, warehouse.InsertQuery(database, table, cols.fill(nil)))
	if err != nil {
		return err
	}
	defer batch.Close()
	for len(evs) > 0 {
		n := min(len(evs), blockRows)
		if err := warehouse.AppendColumns(batch, table, cols.fill(evs[:n])); err != nil {
			return err
		}
		cols.release()
		if err := batch.Flush(); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return batch.Send()
}

// clusterCPU is the CPU time (user + system) the cluster's ClickHouse
// processes have used so far.
func clusterCPU(b *testing.B, c *localsvc.ClickHouseCluster) time.Duration {
	var total time.Duration
	for _, n := range c.Nodes {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.Pid()))
		if err != nil { // the node is gone: its logs say why
			b.Fatalf("%v%s", err, c.LogTail())
		}
		// Fields after the command name (which may hold spaces): utime and
		// stime are the 14th and 15th of the line.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	return total
}

// selfCPU is this process's CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
