// Command withsvc runs a command with local Redis and ClickHouse servers (and
// optionally a Redis Cluster) available to it. It is how `make test` runs the
// test suite:
//
//	go run ./internal/localsvc/cmd/withsvc [-dir DIR] [-cluster] -- go test -race ./...
//
// The servers listen on free loopback ports with their data under DIR (by
// default a new temporary directory, removed afterwards). Their addresses
// are printed to stderr and exported to the command as
// LEADSTREAM_TEST_REDIS_ADDR, LEADSTREAM_TEST_CLICKHOUSE_ADDR (native
// protocol) and, with -cluster, LEADSTREAM_TEST_REDIS_CLUSTER_ADDRS
// (comma-separated) and LEADSTREAM_TEST_CLICKHOUSE_CLUSTER (a ClickHouse
// cluster of two shards, the first with two replicas, coordinated by a
// ZooKeeper: NAME@HOST:PORT,…). SIGINT and SIGTERM are forwarded to the command; the
// servers are stopped when it exits, and withsvc exits with its exit code.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/leadstream/leadstream/internal/localsvc"
)

func main() { os.Exit(run()) }

func run() int {
	dir := flag.String("dir", "", "directory for server data and logs (default: a temporary directory, removed afterwards)")
	cluster := flag.Bool("cluster", false, "also start a 3-master Redis Cluster and a ClickHouse cluster (ZooKeeper, 2 shards, the first with 2 replicas)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: withsvc [-dir DIR] [-cluster] -- CMD [ARGS...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		return 2
	}

	// A signal cancels start-up, or is forwarded to the running command.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var child atomic.Pointer[os.Process]
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		for sig := range sigs {
			cancel()
			if p := child.Load(); p != nil {
				_ = p.Signal(sig)
			}
		}
	}()

	root := *dir
	if root == "" {
		tmp, err := os.MkdirTemp("", "leadstream-withsvc-")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(tmp)
		root = tmp
	}

	env, stop, err := startServices(ctx, root, *cluster)
	defer func() {
		if err := stop(); err != nil {
			fmt.Fprintln(os.Stderr, "withsvc:", err)
		}
	}()
	if err != nil {
		return fail(err)
	}

	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), env...)
	if ctx.Err() != nil {
		return fail(errors.New("interrupted"))
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "withsvc:", err)
		return 127
	}
	child.Store(cmd.Process)
	if ctx.Err() != nil { // a signal arrived between the check and Store
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	default:
		return fail(err)
	}
}

// startServices starts the servers under root and returns the environment
// entries describing them and a function stopping them (valid even when
// err != nil, stopping whatever had started).
func startServices(ctx context.Context, root string, cluster bool) (env []string, stop func() error, err error) {
	var stops []func() error
	stop = func() error {
		var errs []error
		for _, s := range stops {
			errs = append(errs, s())
		}
		return errors.Join(errs...)
	}
	announce := func(name, envVar, addr string) {
		fmt.Fprintf(os.Stderr, "withsvc: %-13s %s (%s)\n", name, addr, envVar)
		env = append(env, envVar+"="+addr)
	}

	redis, err := localsvc.StartRedis(ctx, filepath.Join(root, "redis"), 0)
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, redis.Stop)
	announce("redis", localsvc.EnvRedisAddr, redis.Addr)

	ch, err := localsvc.StartClickHouse(ctx, filepath.Join(root, "clickhouse"), 0, 0)
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, ch.Stop)
	announce("clickhouse", localsvc.EnvClickHouseAddr, ch.Addr)

	if cluster {
		c, err := localsvc.StartRedisCluster(ctx, filepath.Join(root, "redis-cluster"), 3)
		if err != nil {
			return nil, stop, err
		}
		stops = append(stops, c.Stop)
		announce("redis-cluster", localsvc.EnvRedisClusterAddrs, strings.Join(c.Addrs, ","))

		chc, err := localsvc.StartClickHouseCluster(ctx, filepath.Join(root, "clickhouse-cluster"), localsvc.TestClusterName, localsvc.TestClusterReplicas...)
		if err != nil {
			return nil, stop, err
		}
		stops = append(stops, chc.Stop)
		announce("ch-cluster", localsvc.EnvClickHouseCluster, chc.Name+"@"+strings.Join(chc.Addrs(), ","))
	}
	return env, stop, nil
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "withsvc:", err)
	return 1
}
