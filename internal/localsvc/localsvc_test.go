package localsvc_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/localsvc"
	"github.com/leadstream/leadstream/internal/testsvc"
)

// need skips (or under CI fails) the test unless the binaries are in PATH.
func need(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			testsvc.Required(t, b, b+" is not in PATH")
		}
	}
}

func TestStartRedis(t *testing.T) {
	need(t, "redis-server")
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := localsvc.StartRedis(ctx, dir, 0, "--appendonly", "yes")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })

	if reply, err := localsvc.RedisCommand(ctx, s.Addr, "PING"); err != nil || reply != "PONG" {
		t.Fatalf("PING = %q, %v; want PONG", reply, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "appendonlydir")); err != nil {
		t.Errorf("extra args not applied (--appendonly yes): %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "redis.log")); err != nil {
		t.Errorf("no log file: %v", err)
	}

	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Stop", s.Addr)
	}
}

func TestStartRedisFailureShowsLog(t *testing.T) {
	need(t, "redis-server")
	t.Parallel()
	_, err := localsvc.StartRedis(context.Background(), t.TempDir(), 0, "--no-such-directive", "x")
	if err == nil {
		t.Fatal("StartRedis with a bad directive succeeded")
	}
	if !strings.Contains(err.Error(), "tail of") || !strings.Contains(err.Error(), "no-such-directive") {
		t.Fatalf("error lacks the server log tail: %v", err)
	}
}

func TestNotInstalled(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	ctx := context.Background()
	for _, tc := range []struct {
		bin   string
		start func() error
	}{
		{"redis-server", func() error { _, err := localsvc.StartRedis(ctx, t.TempDir(), 0); return err }},
		{"clickhouse-server", func() error { _, err := localsvc.StartClickHouse(ctx, t.TempDir(), 0, 0); return err }},
		{"redis-server", func() error { _, err := localsvc.StartRedisCluster(ctx, t.TempDir(), 3); return err }},
	} {
		err := tc.start()
		if !errors.Is(err, localsvc.ErrNotInstalled) || !strings.Contains(err.Error(), tc.bin) ||
			!strings.Contains(err.Error(), "apt-get install -y") {
			t.Errorf("%s: err = %v; want ErrNotInstalled naming the binary and apt-get", tc.bin, err)
		}
	}
}

func TestStartClickHouse(t *testing.T) {
	need(t, "clickhouse-server", "clickhouse-client")
	t.Parallel()
	s, err := localsvc.StartClickHouse(context.Background(), t.TempDir(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })

	_, port, _ := net.SplitHostPort(s.Addr)
	out, err := exec.Command("clickhouse-client", "--host", "127.0.0.1", "--port", port, "-q", "SELECT 1").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("clickhouse-client SELECT 1 = %q, %v", out, err)
	}
	if s.HTTPAddr == "" || s.HTTPAddr == s.Addr {
		t.Errorf("HTTPAddr = %q (Addr %q)", s.HTTPAddr, s.Addr)
	}

	start := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("clickhouse stopped in %v", time.Since(start).Round(time.Millisecond))
}

func TestStartRedisCluster(t *testing.T) {
	need(t, "redis-server", "redis-cli")
	t.Parallel()
	ctx := context.Background()
	c, err := localsvc.StartRedisCluster(ctx, t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })

	if len(c.Addrs) != 3 {
		t.Fatalf("Addrs = %v; want 3", c.Addrs)
	}
	for _, addr := range c.Addrs {
		info, err := localsvc.RedisCommand(ctx, addr, "CLUSTER INFO")
		if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
			t.Fatalf("%s CLUSTER INFO = %q, %v", addr, info, err)
		}
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func TestFreePort(t *testing.T) {
	p, err := localsvc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatalf("port %d from FreePort not bindable: %v", p, err)
	}
	l.Close()
}

func TestStartZooKeeper(t *testing.T) {
	if _, err := os.Stat("/usr/share/java/zookeeper.jar"); err != nil {
		testsvc.Required(t, "zookeeper", "the zookeeper package is not installed")
	}
	need(t, "java")
	t.Parallel()
	s, err := localsvc.StartZooKeeper(context.Background(), t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	if reply, err := localsvc.FourLetterWord(context.Background(), s.Addr, "srvr"); err != nil || !strings.Contains(reply, "Mode: standalone") {
		t.Fatalf("srvr = %q, %v", reply, err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

// A cluster of two shards, the first with two replicas: each node knows the
// layout and its macros, DDL ON CLUSTER reaches every node, rows written to
// one replica reach the other, and a stopped node starts again with its data.
func TestStartClickHouseCluster(t *testing.T) {
	need(t, "clickhouse-server", "clickhouse-client", "java")
	if _, err := os.Stat("/usr/share/java/zookeeper.jar"); err != nil {
		testsvc.Required(t, "zookeeper", "the zookeeper package is not installed")
	}
	t.Parallel()
	ctx := context.Background()
	c, err := localsvc.StartClickHouseCluster(ctx, t.TempDir(), "lscluster", 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	q := func(addr, query string) string {
		t.Helper()
		_, port, _ := net.SplitHostPort(addr)
		out, err := exec.Command("clickhouse-client", "--host", "127.0.0.1", "--port", port, "-q", query).CombinedOutput()
		if err != nil {
			t.Fatalf("%s on %s: %v\n%s", query, addr, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if len(c.Nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(c.Nodes))
	}
	for _, n := range c.Nodes {
		if got, want := q(n.Addr, "SELECT count() FROM system.clusters WHERE cluster = 'lscluster'"), "3"; got != want {
			t.Errorf("%s: %s replicas in lscluster, want %s", n.Addr, got, want)
		}
		want := fmt.Sprintf("replica\tr%d\nshard\t%d", n.Replica, n.Shard)
		if got := q(n.Addr, "SELECT macro, substitution FROM system.macros ORDER BY macro"); got != want {
			t.Errorf("%s macros:\n%s\nwant\n%s", n.Addr, got, want)
		}
	}
	q(c.Nodes[0].Addr, "CREATE DATABASE lstest ON CLUSTER lscluster")
	q(c.Nodes[0].Addr, "CREATE TABLE lstest.t ON CLUSTER lscluster (x UInt64) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/lstest/t', '{replica}') ORDER BY x")
	q(c.Nodes[1].Addr, "INSERT INTO lstest.t SELECT number FROM numbers(10)")
	q(c.Nodes[0].Addr, "SYSTEM SYNC REPLICA lstest.t")
	if got := q(c.Nodes[0].Addr, "SELECT count() FROM lstest.t"); got != "10" {
		t.Errorf("replica 1 of shard 1 holds %s rows, want the 10 written to replica 2", got)
	}
	if got := q(c.Nodes[2].Addr, "SELECT count() FROM lstest.t"); got != "0" {
		t.Errorf("shard 2 holds %s rows of shard 1", got)
	}

	if err := c.Nodes[1].Stop(); err != nil {
		t.Fatal(err)
	}
	q(c.Nodes[0].Addr, "INSERT INTO lstest.t SELECT number FROM numbers(10, 5)")
	if err := c.Nodes[1].Start(ctx); err != nil {
		t.Fatal(err)
	}
	q(c.Nodes[1].Addr, "SYSTEM SYNC REPLICA lstest.t")
	if got := q(c.Nodes[1].Addr, "SELECT count() FROM lstest.t"); got != "15" {
		t.Errorf("restarted replica holds %s rows, want 15", got)
	}
}
