//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/leadstream/leadstream/internal/localsvc"
	"github.com/leadstream/leadstream/internal/testsvc"
)

// TestDevRestartKeepsItsState stops `leadstream dev` (SIGTERM) and starts it
// again on the same data directory: the embedded broker keeps its topics
// and the groups' offsets, so nothing is read twice — the sink stores no
// second copy of an event and the processor scores none again — and what
// is sent afterwards counts on top of what was there.
func TestDevRestartKeepsItsState(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	redisAddr, chAddr := testsvc.Redis(t), testsvc.ClickHouse(t)
	dir := t.TempDir()
	bin := buildLeadstream(t, dir)
	httpPort, err := localsvc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	kafkaPort, err := localsvc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	db := fmt.Sprintf("devrestart_%d", rand.Uint32())
	t.Cleanup(func() { clickhouse(t, chAddr, "DROP DATABASE IF EXISTS "+db) })
	lead := fmt.Sprintf("restart-%d", rand.Uint32())
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		fmt.Sprintf("LEADSTREAM_HTTP_ADDR=127.0.0.1:%d", httpPort),
		fmt.Sprintf("LEADSTREAM_DEV_KAFKA_PORT=%d", kafkaPort),
		"LEADSTREAM_REDIS_ADDR=" + redisAddr,
		"LEADSTREAM_CLICKHOUSE_ADDR=" + chAddr,
		"LEADSTREAM_CLICKHOUSE_DATABASE=" + db,
		"LEADSTREAM_DATA_DIR=" + filepath.Join(dir, "data"),
		"LEADSTREAM_SINK_FLUSH_INTERVAL=200ms",
	}
	start := func() (stop func()) {
		t.Helper()
		var out testsvc.SyncBuffer
		cmd := exec.Command(bin, "dev")
		cmd.Env, cmd.Stdout, cmd.Stderr = env, &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		var waitErr error
		go func() { waitErr = cmd.Wait(); close(exited) }()
		stop = func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
				if waitErr != nil {
					t.Errorf("leadstream dev exited with %v\n%s", waitErr, tail(out.String(), 4000))
				}
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Errorf("leadstream dev did not stop within 30 s of SIGTERM\n%s", tail(out.String(), 4000))
			}
		}
		t.Cleanup(func() {
			select {
			case <-exited:
			default:
				stop()
			}
		})
		eventually(t, "leadstream dev ready", 90*time.Second, func() (bool, string) {
			select {
			case <-exited:
				t.Fatalf("leadstream dev exited: %v\n%s", waitErr, tail(out.String(), 4000))
			default:
			}
			code, body := get(base+"/readyz", "")
			return code == 200, fmt.Sprint(code, " ", body)
		})
		return stop
	}
	sent := 0
	page := func() {
		t.Helper()
		body := fmt.Sprintf(`{"userId":%q,"messageId":"%s-page-%d","name":"pricing","properties":{"url":"https://example.com/pricing"}}`, lead, lead, sent)
		req, _ := http.NewRequest("POST", base+"/v1/page", strings.NewReader(body))
		req.SetBasicAuth("dev-server-key", "")
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("page: %d", res.StatusCode)
		}
		sent++
	}
	stored := func(want int) {
		t.Helper()
		// count(), not uniqExact: a second copy of an event would show.
		q := fmt.Sprintf("SELECT count() FROM %s.events WHERE lead_id = '%s'", db, lead)
		eventually(t, fmt.Sprintf("%d rows of the lead", want), 60*time.Second, func() (bool, string) {
			got := clickhouseMaybe(chAddr, q)
			return got == fmt.Sprint(want), got
		})
	}
	score := func() float64 {
		t.Helper()
		code, body := get(base+"/v1/leads/"+lead, devSecretKey)
		var v struct {
			Models map[string]struct {
				Score float64 `json:"score"`
			} `json:"models"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &v) != nil {
			t.Fatalf("lead API: %d %s", code, body)
		}
		return v.Models["default"].Score
	}
	scored := func() (float64, float64) {
		_, page := get(base+"/metrics", "")
		s, _ := metricSum(page, "leadstream_processor_events_total", `result="scored"`)
		d, _ := metricSum(page, "leadstream_processor_events_total", `result="duplicate"`)
		return s, d
	}

	stop := start()
	for range 3 {
		page()
	}
	stored(3)
	eventually(t, "the pages scored", 30*time.Second, func() (bool, string) {
		s, _ := scored()
		return s == 3, fmt.Sprint(s, " scored")
	})
	before := score()
	if before <= 0 {
		t.Fatalf("the lead has no score after 3 pricing page views: %v", before)
	}
	stop()

	stop = start()
	// The broker kept the records (an event accepted just before a stop is
	// still there to be scored and stored)...
	if n := topicRecords(t, fmt.Sprintf("127.0.0.1:%d", kafkaPort), "leadstream.events", lead); n != 3 {
		t.Errorf("after the restart the events topic holds %d records of the lead, want 3", n)
	}
	// ...and the groups' offsets: nothing is read twice.
	time.Sleep(3 * time.Second) // what a re-read would have done by now
	stored(3)
	if s, d := scored(); s != 0 || d != 0 {
		t.Errorf("after the restart the processor handled the old events again: %v scored, %v duplicates", s, d)
	}
	if after := score(); math.Abs(after-before) > 0.01*before {
		t.Errorf("score %v before the restart, %v after", before, after)
	}
	page()
	stored(4)
	eventually(t, "the new page scored on top", 30*time.Second, func() (bool, string) {
		got := score()
		return math.Abs(got-before*4/3) < 0.02*before, fmt.Sprintf("score %v, want about %v", got, before*4/3)
	})
	stop()
}

// topicRecords counts the records of topic whose value names lead, read
// from the start of every partition.
func topicRecords(t *testing.T, broker, topic, lead string) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			if strings.Contains(string(r.Value), lead) {
				n++
			}
		})
	}
	return n
}
