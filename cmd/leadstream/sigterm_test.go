//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/localsvc"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/stream"
)

var built struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// builtBinary builds the leadstream binary once per test binary.
func builtBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "leadstream-bin-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "leadstream")
		built.out, built.err = exec.Command("go", "build", "-o", built.path, ".").CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("building leadstream: %v\n%s", built.err, built.out)
	}
	return built.path
}

// TestSIGTERMDuringRetry runs the real processor and sink binaries, stops
// the Redis or ClickHouse they write to while events arrive, and sends
// SIGTERM while they retry the batch: each must exit 0 within a few seconds
// (its drain timeout is 30 s), leaving the batch uncommitted for the next
// owner.
func TestSIGTERMDuringRetry(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := builtBinary(t)
	for _, role := range []string{"processor", "sink"} {
		t.Run(role, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			dir := t.TempDir()
			// Its own server, which the test stops.
			var (
				srv *localsvc.Server
				err error
				env []string
			)
			if role == "processor" {
				if _, lerr := exec.LookPath("redis-server"); lerr != nil {
					testsvc.Required(t, "redis-server", "the test stops a Redis of its own")
				}
				srv, err = localsvc.StartRedis(ctx, filepath.Join(dir, "redis"), 0)
				env = []string{"LEADSTREAM_REDIS_ADDR=" + fmt.Sprint(addrOf(srv))}
			} else {
				if _, lerr := exec.LookPath("clickhouse-server"); lerr != nil {
					testsvc.Required(t, "clickhouse-server", "the test stops a ClickHouse of its own")
				}
				srv, err = localsvc.StartClickHouse(ctx, filepath.Join(dir, "clickhouse"), 0, 0)
				env = []string{"LEADSTREAM_CLICKHOUSE_ADDR=" + addrOf(srv)}
			}
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Stop()
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
			if err != nil {
				t.Fatal(err)
			}
			defer cluster.Close()
			kcfg := stream.Config{Brokers: cluster.ListenAddrs(), TopicPrefix: "leadstream.", Partitions: 2, ReplicationFactor: -1}
			if err := stream.EnsureTopics(ctx, kcfg); err != nil {
				t.Fatal(err)
			}
			port, err := localsvc.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, role)
			cmd.Env = append(append(os.Environ(), env...), "LEADSTREAM_KAFKA_BROKERS="+kcfg.Brokers[0], fmt.Sprintf("LEADSTREAM_HTTP_ADDR=127.0.0.1:%d", port))
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			var logs testsvc.SyncBuffer
			cmd.Stderr = &logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() {
				if t.Failed() {
					t.Logf("%s logs:\n%s", role, logs.String())
				}
			}()

			producer, err := stream.NewProducer(ctx, kcfg.Producer(stream.TopicEvents), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer producer.Close()
			produce := func(id string) {
				e := event.Event{ID: id, Type: event.FormSubmit, EventTime: time.Now().UTC().Truncate(time.Millisecond), LeadID: "lead-" + id}
				e.ReceivedAt = e.EventTime
				v, _ := event.Marshal(&e)
				if err := producer.Produce(ctx, []stream.Record{{Key: []byte(e.Key()), Value: v}}); err != nil {
					t.Fatal(err)
				}
			}
			// A first event is handled: the role works.
			produce("first")
			metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
			eventually(t, role+" committed a batch", 30*time.Second, func() (bool, string) {
				return metricAtLeast(httpGet(metrics), "leadstream_kafka_consume_batches_total", 1), logs.String()
			})

			// Its store goes away; the next batch fails and is retried.
			if err := srv.Stop(); err != nil {
				t.Logf("stopping the server: %v", err)
			}
			produce("second")
			eventually(t, role+" retrying the batch", 30*time.Second, func() (bool, string) {
				return strings.Count(logs.String(), "batch failed, retrying") >= 2, logs.String()
			})
			stopped := time.Now()
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				took := time.Since(stopped)
				if err != nil {
					t.Fatalf("%s exited with %v after SIGTERM", role, err)
				}
				if took > 10*time.Second {
					t.Fatalf("%s took %v to stop after SIGTERM during a retry; want well under its 30 s drain timeout", role, took)
				}
				t.Logf("%s stopped %v after SIGTERM while retrying a batch", role, took.Round(time.Millisecond))
			case <-time.After(25 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("%s did not stop within 25 s of SIGTERM while retrying a batch", role)
			}
		})
	}
}

func addrOf(s *localsvc.Server) string { return s.Addr }

func httpGet(url string) string {
	res, err := (&http.Client{Timeout: 2 * time.Second}).Get(url)
	if err != nil {
		return ""
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// metricAtLeast reports whether the sum of a counter's series in a
// Prometheus text page is at least min.
func metricAtLeast(page, name string, min float64) bool {
	var sum float64
	for _, line := range strings.Split(page, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum >= min
}
