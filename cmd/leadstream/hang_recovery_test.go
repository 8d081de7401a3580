//go:build linux

package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/localsvc"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/stream"
)

// TestPipelineRecoversFromHangs runs the collector, the processor and the
// sink as processes on a broker, a Redis and a ClickHouse of their own, and
// hangs each service in turn (SIGSTOP) for 15 s while they run, then lets it
// go on: without a restart, every role comes back by itself; while Kafka
// hangs the collector answers 503 (never 200); while Redis or ClickHouse
// hangs it keeps taking events; and every event it accepted lands in
// ClickHouse and is scored exactly once, each lead crossing its threshold
// once.
func TestPipelineRecoversFromHangs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	e := &secureEnv{bin: buildLeadstream(t, dir)}
	k := startKfake(t, buildKfake(t))
	testsvc.Redis(t) // under CI: fails when redis-server is missing
	testsvc.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	redisSrv, err := localsvc.StartRedis(ctx, filepath.Join(dir, "redis"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { redisSrv.Stop() })
	chSrv, err := localsvc.StartClickHouse(ctx, filepath.Join(dir, "clickhouse"), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chSrv.Stop() })
	redisAddr, chAddr := redisSrv.Addr, chSrv.Addr
	frozen := map[string]*freezer{"kafka": k.freezer, "redis": newFreezer(t, redisSrv.Pid()), "clickhouse": newFreezer(t, chSrv.Pid())}
	kcfg := stream.Config{Brokers: []string{k.addr}, TopicPrefix: "leadstream.", Partitions: 2, ReplicationFactor: -1}
	if err := stream.EnsureTopics(ctx, kcfg); err != nil {
		t.Fatal(err)
	}
	rulesPath := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesPath, []byte(killRules), 0o644); err != nil {
		t.Fatal(err)
	}
	db := fmt.Sprintf("hangs_%d", rand.Uint32())
	run := fmt.Sprintf("hang%d-", rand.Uint32())
	env := map[string]string{
		"LEADSTREAM_KAFKA_BROKERS":       k.addr,
		"LEADSTREAM_KAFKA_PARTITIONS":    "2",
		"LEADSTREAM_REDIS_ADDR":          redisAddr,
		"LEADSTREAM_CLICKHOUSE_ADDR":     chAddr,
		"LEADSTREAM_CLICKHOUSE_DATABASE": db,
		"LEADSTREAM_RULES":               rulesPath,
		"LEADSTREAM_WRITE_KEYS":          "k1",
		"LEADSTREAM_SERVER_WRITE_KEYS":   "s1",
	}
	var roles []*role
	for _, name := range []string{"collector", "processor", "sink"} {
		r := e.start(t, name, env)
		r.waitReady(t)
		roles = append(roles, r)
	}
	collector, processor := roles[0], roles[1]

	post := func(path, body string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+collector.addr+path, strings.NewReader(body))
		req.SetBasicAuth("s1", "")
		req.Header.Set("Content-Type", "application/json")
		res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		var b strings.Builder
		buf := make([]byte, 512)
		n, _ := res.Body.Read(buf)
		b.Write(buf[:n])
		return res.StatusCode, b.String()
	}
	pages := 0
	sendPages := func(n int) {
		t.Helper()
		for range n {
			body := fmt.Sprintf(`{"userId":"%slead-%d","messageId":"%spage-%d","name":"p","properties":{"url":"https://example.com/p"}}`, run, pages%4, run, pages)
			if code, b := post("/v1/page", body); code != 200 {
				t.Fatalf("page %d: %d %s", pages, code, b)
			}
			pages++
		}
	}
	landed := func(want int) {
		t.Helper()
		eventually(t, fmt.Sprintf("%d page views in clickhouse", want), 90*time.Second, func() (bool, string) {
			got := clickhouseMaybe(chAddr, fmt.Sprintf("SELECT uniqExact(event_id) FROM %s.events WHERE type = 'page_view'", db))
			return got == fmt.Sprint(want), got
		})
	}

	sendPages(20)
	landed(20)

	for i, svc := range []string{"kafka", "redis", "clickhouse"} {
		frozen[svc].hang()
		hungAt := time.Now()
		if svc == "kafka" {
			code, body := post("/v1/track", fmt.Sprintf(`{"userId":"%sother","event":"while-hung","messageId":"%shung-1"}`, run, run))
			if code == 200 {
				t.Fatalf("the collector answered 200 while Kafka hung: %s", body)
			}
			t.Logf("an event sent while Kafka hung: %d %s", code, body)
			eventually(t, "the collector unready while Kafka hangs", 30*time.Second, func() (bool, string) {
				c, b := get("http://"+collector.addr+"/readyz", "")
				return c == 503, fmt.Sprint(c, " ", b)
			})
		} else {
			// The collector does not need them to take events; the
			// processor or the sink waits, retrying.
			time.Sleep(time.Second)
			sendPages(20)
		}
		time.Sleep(15*time.Second - time.Since(hungAt))
		frozen[svc].resume()
		resumed := time.Now()
		for _, r := range roles {
			eventually(t, r.name+" ready again after "+svc+" hung", 90*time.Second, func() (bool, string) {
				c, b := get("http://"+r.addr+"/readyz", "")
				return c == 200, fmt.Sprint(c, " ", b)
			})
		}
		if svc == "kafka" {
			sendPages(20)
		}
		landed(20 * (i + 2))
		t.Logf("%s hung 15 s: every role ready and every page view stored %v after it went on", svc, time.Since(resumed).Round(time.Millisecond))
	}
	for _, r := range roles {
		select {
		case <-r.done:
			t.Fatalf("%s exited: %v\n%s", r.name, r.err, tail(r.logs(), 4000))
		default:
		}
	}

	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: redisAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	store := leadstate.NewStore(rdb)
	eventually(t, "every page view scored once", 90*time.Second, func() (bool, string) {
		for l := range 4 {
			rec, err := store.ReadLead(ctx, fmt.Sprintf("%slead-%d", run, l))
			if err != nil {
				t.Fatal(err)
			}
			var v float64
			if rec.State != nil && rec.State.Model("steady") != nil {
				v = rec.State.Model("steady").V
			}
			if math.Abs(v-100) > 1e-9 {
				_, page := get("http://"+processor.addr+"/metrics", "")
				s, _ := metricSum(page, "leadstream_processor_events_total", `result="scored"`)
				d, _ := metricSum(page, "leadstream_processor_events_total", `result="duplicate"`)
				return false, fmt.Sprintf("lead-%d: steady score %v, want 100 (20 page views × 5); processor scored %v, duplicates %v", l, v, s, d)
			}
		}
		return true, ""
	})
	// Each lead reached the steady model's threshold (100) once: one MQL.
	eventually(t, "one MQL per lead in clickhouse", 60*time.Second, func() (bool, string) {
		got := clickhouseMaybe(chAddr, fmt.Sprintf("SELECT count(), uniqExact(mql_id) FROM %s.mql WHERE model = 'steady'", db))
		return got == "4\t4", got
	})
}
