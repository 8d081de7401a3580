//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/stream"
)

// TestSIGTERMWithKafkaDown runs each role that reads or writes Kafka as a
// process, lets it work, then takes its only broker away: each keeps
// running (retrying), and SIGTERM then stops it within a few seconds,
// exit status 0 — Kafka being down must not hold a shutdown.
func TestSIGTERMWithKafkaDown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	sigtermWithKafkaGone(t, func(t *testing.T) (string, func()) {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		closed := false
		t.Cleanup(func() {
			if !closed {
				cluster.Close()
			}
		})
		return cluster.ListenAddrs()[0], func() { cluster.Close(); closed = true }
	}, "Kafka down", 10*time.Second)
}

// TestSIGTERMWithKafkaHung is TestSIGTERMWithKafkaDown with the broker
// stopped (SIGSTOP of its process: connections stay open, nothing answers,
// as with a hung host or a network dropping packets) instead of closed.
func TestSIGTERMWithKafkaHung(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildKfake(t)
	sigtermWithKafkaGone(t, func(t *testing.T) (string, func()) {
		k := startKfake(t, bin)
		return k.addr, k.hang
	}, "Kafka hung", 12*time.Second)
}

// buildKfake builds internal/localsvc/cmd/kfake: a broker as a process of
// its own, which a test can stop (SIGSTOP) and let go on (SIGCONT).
func buildKfake(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kfake")
	if out, err := exec.Command("go", "build", "-o", bin, "../../internal/localsvc/cmd/kfake").CombinedOutput(); err != nil {
		t.Fatalf("building kfake: %v\n%s", err, out)
	}
	return bin
}

// kfakeProc is a running kfake process, which the test can hang and let go
// on.
type kfakeProc struct {
	*freezer
	addr string
}

func startKfake(t *testing.T, bin string) *kfakeProc {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("kfake did not say its address: %v", err)
	}
	return &kfakeProc{freezer: newFreezer(t, cmd.Process.Pid), addr: strings.TrimSpace(addr)}
}

// freezer hangs a server's process as a frozen host or a network dropping
// packets would (SIGSTOP: its connections stay open, nothing answers) and
// lets it go on (SIGCONT); the end of the test lets it go on in any case.
type freezer struct {
	t *testing.T
	p *os.Process
}

func newFreezer(t *testing.T, pid int) *freezer {
	t.Helper()
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Signal(syscall.SIGCONT) })
	return &freezer{t: t, p: p}
}

func (f *freezer) hang()   { f.signal(syscall.SIGSTOP) }
func (f *freezer) resume() { f.signal(syscall.SIGCONT) }

func (f *freezer) signal(sig syscall.Signal) {
	if err := f.p.Signal(sig); err != nil {
		f.t.Fatal(err)
	}
}

// sigtermWithKafkaGone runs each role against the broker broker starts,
// takes the broker away while the role works (takeAway), then checks that
// SIGTERM stops the role within bound, exit status 0.
func sigtermWithKafkaGone(t *testing.T, broker func(*testing.T) (string, func()), how string, bound time.Duration) {
	dir := t.TempDir()
	e := &secureEnv{bin: buildLeadstream(t, dir)}
	redisAddr, chAddr := testsvc.Redis(t), testsvc.ClickHouse(t)
	conf := filepath.Join(dir, "notify.yaml")
	if err := os.WriteFile(conf, []byte("destinations:\n  - {name: crm, type: webhook, url: \"http://127.0.0.1:9/hook\", secret: kafka-down-test-secret-0123}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"collector", "processor", "sink", "notifier"} {
		t.Run(name, func(t *testing.T) {
			addr, takeAway := broker(t)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			kcfg := stream.Config{Brokers: []string{addr}, TopicPrefix: "leadstream.", Partitions: 2, ReplicationFactor: -1}
			if err := stream.EnsureTopics(ctx, kcfg); err != nil {
				t.Fatal(err)
			}
			db := fmt.Sprintf("kafkadown_%d", rand.Uint32())
			t.Cleanup(func() { clickhouse(t, chAddr, "DROP DATABASE IF EXISTS "+db) })
			r := e.start(t, name, map[string]string{
				"LEADSTREAM_KAFKA_BROKERS":       kcfg.Brokers[0],
				"LEADSTREAM_KAFKA_PARTITIONS":    "2",
				"LEADSTREAM_REDIS_ADDR":          redisAddr,
				"LEADSTREAM_CLICKHOUSE_ADDR":     chAddr,
				"LEADSTREAM_CLICKHOUSE_DATABASE": db,
				"LEADSTREAM_NOTIFY_CONFIG":       conf,
				"LEADSTREAM_WRITE_KEYS":          "k1",
				"LEADSTREAM_SERVER_WRITE_KEYS":   "s1",
			})
			r.waitReady(t)
			// Work in flight when Kafka goes: a crossing for the processor
			// to publish, rows for the sink, a delivery for the notifier.
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			now := time.Now().UTC().Truncate(time.Millisecond)
			switch name {
			case "processor", "sink":
				p, err := stream.NewProducer(ctx, kcfg.Producer(stream.TopicEvents), quiet, nil)
				if err != nil {
					t.Fatal(err)
				}
				var recs []stream.Record
				for i := range 40 {
					ev := event.Event{ID: fmt.Sprintf("ev-%d", i), Type: event.FormSubmit, EventTime: now, ReceivedAt: now, LeadID: fmt.Sprintf("lead-%d", i%4)}
					v, _ := event.Marshal(&ev)
					recs = append(recs, stream.Record{Key: []byte(ev.Key()), Value: v})
				}
				if err := p.Produce(ctx, recs); err != nil {
					t.Fatal(err)
				}
				p.Close()
			case "notifier":
				p, err := stream.NewProducer(ctx, kcfg.Producer(stream.TopicMQL), quiet, nil)
				if err != nil {
					t.Fatal(err)
				}
				v := fmt.Sprintf(`{"mql_id":%q,"lead_id":"lead-1","model":"default","score":105,"threshold":100,"crossed_at":%q,"trigger_event_id":"ev-1","reasons":[]}`,
					event.MQLID("lead-1", "default", "ev-1"), now.Format(time.RFC3339Nano))
				if err := p.Produce(ctx, []stream.Record{{Key: []byte("lead-1"), Value: []byte(v)}}); err != nil {
					t.Fatal(err)
				}
				p.Close()
			}
			// The processor and the sink lose Kafka mid-batch (their
			// crossings and commits still to write), the others when idle.
			if name != "processor" && name != "sink" {
				time.Sleep(500 * time.Millisecond)
			}
			takeAway()
			answer := make(chan string, 1)
			if name == "collector" {
				// A request waiting for Kafka when the signal comes: never a 200.
				go func() {
					req, _ := http.NewRequest("POST", "http://"+r.addr+"/v1/track", strings.NewReader(`{"anonymousId":"a-1","event":"x"}`))
					req.SetBasicAuth("s1", "")
					req.Header.Set("Content-Type", "application/json")
					res, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
					if err != nil {
						answer <- err.Error()
						return
					}
					b, _ := io.ReadAll(res.Body)
					res.Body.Close()
					answer <- fmt.Sprintf("%d %s", res.StatusCode, b)
				}()
			}
			time.Sleep(3 * time.Second) // retrying by now
			r.sigtermWithin(t, how, bound)
			if name == "collector" {
				a := <-answer
				t.Logf("the request waiting for Kafka (%s): %s", how, a)
				if !strings.HasPrefix(a, "503 ") {
					t.Errorf("a request waiting for Kafka at SIGTERM got %q, want a 503", a)
				}
			}
		})
	}
}
