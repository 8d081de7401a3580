// Package testsvc gives tests the external services they need: Redis, a Redis
// Cluster, ClickHouse and an in-process Kafka (kfake).
//
// Redis, RedisCluster, ClickHouse and ClickHouseCluster use the addresses exported by the test
// runner (`make test`, i.e. cmd/withsvc under internal/localsvc) when set.
// Otherwise they start the server once per test binary via package localsvc,
// in a temporary directory; the server is killed when the test binary exits
// (Pdeathsig) and its directory is removed by a later test binary. When
// neither is possible the test is skipped, or failed when CI=true, so that CI
// never silently skips.
//
// Servers are shared by all tests of a binary (and, under `make test`, by all
// packages), so tests must isolate their data: unique key prefixes in Redis,
// unique database or table names in ClickHouse.
package testsvc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/leadstream/leadstream/internal/localsvc"
)

// KafkaPartitions is the partition count of topics created by Kafka and
// KafkaCluster, seeded or auto-created.
const KafkaPartitions = 4

// Required skips the test, or fails it when the environment variable CI is
// "true", because what (a binary or service) is unavailable; why says what is
// missing. Tests that need an external binary (e.g. kcat) use it so that CI
// never skips them.
func Required(t testing.TB, what, why string) {
	t.Helper()
	msg := fmt.Sprintf("%s is required: %s; run the tests with `make test` "+
		"after deploy/install-deps.sh", what, why)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " [CI=true: not skipping]")
	}
	t.Skip(msg)
}

// Redis returns the host:port of a Redis server: $LEADSTREAM_TEST_REDIS_ADDR,
// or one started once per test binary.
func Redis(t testing.TB) string {
	t.Helper()
	return service(t, localsvc.EnvRedisAddr, "redis-server", &redisSrv,
		func(s string) string { return s },
		func(dir string) (string, error) {
			s, err := localsvc.StartRedis(context.Background(), filepath.Join(dir, "redis"), 0)
			if err != nil {
				return "", err
			}
			return s.Addr, nil
		})
}

// RedisCluster returns the master addresses of a 3-master Redis Cluster:
// $LEADSTREAM_TEST_REDIS_CLUSTER_ADDRS, or one started once per test binary.
func RedisCluster(t testing.TB) []string {
	t.Helper()
	return service(t, localsvc.EnvRedisClusterAddrs, "redis-server and redis-cli", &clusterSrv,
		func(s string) []string { return strings.Split(s, ",") },
		func(dir string) ([]string, error) {
			c, err := localsvc.StartRedisCluster(context.Background(), filepath.Join(dir, "redis-cluster"), 3)
			if err != nil {
				return nil, err
			}
			return c.Addrs, nil
		})
}

// ClickHouse returns the native-protocol host:port of a ClickHouse server:
// $LEADSTREAM_TEST_CLICKHOUSE_ADDR, or one started once per test binary.
func ClickHouse(t testing.TB) string {
	t.Helper()
	return service(t, localsvc.EnvClickHouseAddr, "clickhouse-server", &clickHouseSrv,
		func(s string) string { return s },
		func(dir string) (string, error) {
			s, err := localsvc.StartClickHouse(context.Background(), filepath.Join(dir, "clickhouse"), 0, 0)
			if err != nil {
				return "", err
			}
			return s.Addr, nil
		})
}

// CHCluster is a ClickHouse cluster the tests share.
type CHCluster struct {
	Name  string   // its name in remote_servers: clickhouse.cluster
	Addrs []string // every node's native host:port, shard by shard
}

// Addr is the clickhouse.addr that reaches the cluster through any node.
func (c CHCluster) Addr() string { return strings.Join(c.Addrs, ",") }

// ClickHouseCluster returns a ClickHouse cluster of two shards, the first
// with two replicas (localsvc.TestClusterReplicas), coordinated by a
// ZooKeeper: $LEADSTREAM_TEST_CLICKHOUSE_CLUSTER, or one started once per
// test binary. Tests that stop nodes start their own with
// localsvc.StartClickHouseCluster.
func ClickHouseCluster(t testing.TB) CHCluster {
	t.Helper()
	return service(t, localsvc.EnvClickHouseCluster, "clickhouse-server and zookeeper", &chClusterSrv,
		func(s string) CHCluster {
			name, addrs, _ := strings.Cut(s, "@")
			return CHCluster{Name: name, Addrs: strings.Split(addrs, ",")}
		},
		func(dir string) (CHCluster, error) {
			c, err := localsvc.StartClickHouseCluster(context.Background(), filepath.Join(dir, "clickhouse-cluster"), localsvc.TestClusterName, localsvc.TestClusterReplicas...)
			if err != nil {
				return CHCluster{}, err
			}
			return CHCluster{Name: c.Name, Addrs: c.Addrs()}, nil
		})
}

// Kafka starts an in-process single-broker kfake cluster, closed when the test
// ends, and returns its broker addresses. The given topics are created with
// KafkaPartitions partitions; others are auto-created on demand.
func Kafka(t testing.TB, topics ...string) []string {
	t.Helper()
	_, addrs := KafkaCluster(t, topics...)
	return addrs
}

// KafkaCluster is Kafka, also returning the cluster for tests that control it
// (e.g. to inject failures).
func KafkaCluster(t testing.TB, topics ...string) (*kfake.Cluster, []string) {
	t.Helper()
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(KafkaPartitions),
	}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(KafkaPartitions, topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("testsvc: start kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

// lazy holds a value computed at most once per test binary.
type lazy[T any] struct {
	once sync.Once
	v    T
	err  error
}

// The servers started by this test binary. They are never stopped: they die
// with the process.
var (
	redisSrv      lazy[string]
	clusterSrv    lazy[[]string]
	clickHouseSrv lazy[string]
	chClusterSrv  lazy[CHCluster]
)

// service returns parse($env) if env is set, otherwise the value from the
// server start starts (once) under this binary's scratch directory. A missing
// binary leads to Required; any other start-up failure fails the test.
func service[T any](t testing.TB, env, bins string, l *lazy[T], parse func(string) T, start func(dir string) (T, error)) T {
	t.Helper()
	if v := os.Getenv(env); v != "" {
		return parse(v)
	}
	l.once.Do(func() {
		dir, err := scratchDir()
		if err != nil {
			l.err = err
			return
		}
		l.v, l.err = start(dir)
	})
	if errors.Is(l.err, localsvc.ErrNotInstalled) {
		Required(t, bins, fmt.Sprintf("%s is not set and %v", env, l.err))
	}
	if l.err != nil {
		t.Fatalf("testsvc: %s is not set and starting a local server failed: %v", env, l.err)
	}
	return l.v
}

const scratchPrefix = "leadstream-testsvc-"

// scratch is this binary's directory for server data, locked (flock on
// .lock) for the life of the process so other binaries can tell it is in use.
var scratch struct {
	once sync.Once
	dir  string
	lock *os.File // kept open: closing it would release the lock
	err  error
}

// scratchDir creates (once) and returns this binary's scratch directory,
// first removing those left behind by exited test binaries.
func scratchDir() (string, error) {
	scratch.once.Do(func() {
		removeStale()
		dir, err := os.MkdirTemp("", scratchPrefix)
		if err == nil {
			// Lock under a temporary name, then rename: removeStale never
			// sees an unlocked .lock of a live directory.
			tmp := filepath.Join(dir, ".lock.tmp")
			if scratch.lock, err = lockFile(tmp, os.O_CREATE); err == nil {
				err = os.Rename(tmp, filepath.Join(dir, ".lock"))
			}
		}
		if err != nil {
			scratch.err = fmt.Errorf("testsvc: scratch dir: %w", err)
			return
		}
		scratch.dir = dir
	})
	return scratch.dir, scratch.err
}

// removeStale removes scratch directories whose .lock no process holds. A
// directory without .lock is still being created and is left alone.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), scratchPrefix+"*"))
	for _, dir := range dirs {
		f, err := lockFile(filepath.Join(dir, ".lock"), 0)
		if err != nil {
			continue
		}
		_ = os.RemoveAll(dir)
		f.Close()
	}
}

// lockFile opens path with the extra flags and takes an exclusive,
// non-blocking flock on it.
func lockFile(path string, flags int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|flags, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// EachRedis runs f as a subtest against a single Redis ("single") and against
// the 3-master Redis Cluster ("cluster"), passing the address string that
// leadstream's redis.addr takes (several comma-separated = cluster).
func EachRedis(t *testing.T, f func(t *testing.T, addr string)) {
	t.Helper()
	backends := []struct {
		name string
		addr func(testing.TB) string
	}{
		{"single", Redis},
		{"cluster", func(t testing.TB) string { return strings.Join(RedisCluster(t), ",") }},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.addr(t)) })
	}
}

// Eventually polls f every interval until it reports true, and fails the test
// with f's last state when timeout passes first.
func Eventually(t testing.TB, what string, timeout, interval time.Duration, f func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s; last state: %s", what, timeout, state)
		}
		time.Sleep(interval)
	}
}

// SecureKafka starts an in-process kfake broker that requires TLS (when
// tc is not nil) and SASL with one superuser (when mechanism is not
// empty), closed when the test ends, and returns its addresses. The
// topics are created with KafkaPartitions partitions.
func SecureKafka(t testing.TB, tc *tls.Config, mechanism, user, pass string, topics ...string) (*kfake.Cluster, []string) {
	t.Helper()
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DefaultNumPartitions(KafkaPartitions),
	}
	if tc != nil {
		opts = append(opts, kfake.TLS(tc))
	}
	if mechanism != "" {
		opts = append(opts, kfake.EnableSASL(), kfake.Superuser(mechanism, user, pass))
	}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(KafkaPartitions, topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("testsvc: start kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

// PrivateRedisCluster starts a 3-master Redis Cluster of the test's own
// (for a test that takes nodes away or restarts them), with args added to
// every node's command line, stopped when the test ends. Without
// redis-server it skips, or fails under CI=true.
func PrivateRedisCluster(t testing.TB, args ...string) *localsvc.Cluster {
	t.Helper()
	return private(t, func(ctx context.Context, dir string) (*localsvc.Cluster, error) {
		return localsvc.StartRedisClusterWith(ctx, dir, 3, args...)
	})
}

// PrivateRedis starts a redis-server of the test's own (for a test that
// stops it, freezes it or gives it its own settings), with args added to its
// command line, stopped when the test ends. Without redis-server it skips,
// or fails under CI=true.
func PrivateRedis(t testing.TB, args ...string) *localsvc.Server {
	t.Helper()
	return private(t, func(ctx context.Context, dir string) (*localsvc.Server, error) {
		return localsvc.StartRedis(ctx, dir, 0, args...)
	})
}

// private starts Redis servers of the test's own in a directory of its own
// with start, stopped when the test ends.
func private[S interface{ Stop() error }](t testing.TB, start func(ctx context.Context, dir string) (S, error)) S {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := start(ctx, t.TempDir())
	if errors.Is(err, localsvc.ErrNotInstalled) {
		Required(t, "redis-server", err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}
