package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/leadstream/leadstream/internal/testsvc"
)

const (
	stackWriteKey   = "deploy-test-write-key"
	stackSecret     = "deploy-test-secret"
	stackHookSecret = "deploy-test-webhook-secret-0123456789"
)

// roles are leadstream's deployed roles, in start order.
var roles = []string{"collector", "processor", "sink", "notifier"}

// stack is the roles running against the test services: an in-process
// Kafka broker (kfake), the test Redis and the test ClickHouse; the
// notifier delivers to a webhook of the test's own.
type stack struct {
	brokers     []string
	prefix      string // topic prefix, unique per stack
	redis       string
	clickhouse  string
	database    string
	addrs       map[string]string // role -> host:port of its HTTP listener
	lead, anon  string            // of the journey posted by run
	eventsTotal int               // events the journey stored
	hook        *webhook          // the notifier's destination
	notifyDir   string            // the notifier's destinations file and webhook secret
}

// launcher starts one role with the given environment and returns a
// function that stops it with SIGTERM, failing the test unless it exits 0
// promptly. name tells the role; logs are the caller's to report. mounts are
// host directories the role reads files from (a container gets each
// read-only at the same path).
type launcher func(t *testing.T, role string, env, mounts []string) (stop func())

func newStack(t *testing.T) *stack {
	t.Helper()
	if _, err := exec.LookPath("clickhouse-client"); err != nil {
		testsvc.Required(t, "clickhouse-client", "the deploy tests read ClickHouse with it")
	}
	sfx := strconv.FormatUint(rand.Uint64(), 36)
	s := &stack{
		brokers:    testsvc.Kafka(t),
		prefix:     "deploy" + sfx + ".",
		redis:      testsvc.Redis(t),
		clickhouse: testsvc.ClickHouse(t),
		database:   "deploy_" + sfx,
		addrs:      map[string]string{},
		lead:       "lead-" + sfx + "@example.com",
		anon:       "anon-" + sfx,
		hook:       newWebhook(t, stackHookSecret),
	}
	s.notifyDir = writeNotifyConfig(t, s.hook)
	for _, r := range roles {
		s.addrs[r] = freeAddr(t)
	}
	t.Cleanup(func() { clickhouseQuery(t, s.clickhouse, "DROP DATABASE IF EXISTS "+s.database) })
	return s
}

// env is a role's environment: only variables that role has flags for
// (compose_test.go holds compose.yaml to the same rule).
func (s *stack) env(role string) []string {
	env := []string{
		"LEADSTREAM_KAFKA_BROKERS=" + strings.Join(s.brokers, ","),
		"LEADSTREAM_KAFKA_TOPIC_PREFIX=" + s.prefix,
		"LEADSTREAM_KAFKA_PARTITIONS=4",
		"LEADSTREAM_HTTP_ADDR=" + s.addrs[role],
		"LEADSTREAM_LOG_FORMAT=json",
	}
	switch role {
	case "collector":
		env = append(env, "LEADSTREAM_REDIS_ADDR="+s.redis, "LEADSTREAM_WRITE_KEYS="+stackWriteKey, "LEADSTREAM_SERVER_WRITE_KEYS="+stackWriteKey, "LEADSTREAM_SECRET_KEY="+stackSecret)
	case "processor":
		env = append(env, "LEADSTREAM_REDIS_ADDR="+s.redis, "LEADSTREAM_PROCESSOR_MAX_WAIT=10ms")
	case "sink":
		env = append(env, "LEADSTREAM_CLICKHOUSE_ADDR="+s.clickhouse, "LEADSTREAM_CLICKHOUSE_DATABASE="+s.database,
			"LEADSTREAM_SINK_FLUSH_INTERVAL=200ms")
	case "notifier":
		env = append(env, "LEADSTREAM_CLICKHOUSE_ADDR="+s.clickhouse, "LEADSTREAM_CLICKHOUSE_DATABASE="+s.database,
			"LEADSTREAM_NOTIFY_CONFIG="+filepath.Join(s.notifyDir, "notify.yaml"),
			"LEADSTREAM_NOTIFY_RETRY_MIN=100ms", "LEADSTREAM_NOTIFY_RETRY_MAX=1s")
	}
	return env
}

// mounts are the directories of files a role reads.
func (s *stack) mounts(role string) []string {
	if role == "notifier" {
		return []string{s.notifyDir}
	}
	return nil
}

// run starts the roles with launch, waits until each is ready, posts a
// visitor's journey that makes the lead an MQL, a bot's page view and requests
// that fail (400, 401), writes an undecodable record to the events topic, and
// waits until the lead is an MQL, the notifier has delivered it to the webhook
// (retrying after a 503) and every event is a row in ClickHouse; then
// takes ClickHouse's events table away for one event (failed inserts, retried
// until the table is back). It returns a function
// that stops the roles (also run at cleanup).
func (s *stack) run(t *testing.T, launch launcher) (stop func()) {
	t.Helper()
	var stops []func()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			for i := len(stops) - 1; i >= 0; i-- {
				stops[i]()
			}
		})
	}
	t.Cleanup(stop)
	for _, r := range roles {
		stops = append(stops, launch(t, r, s.env(r), s.mounts(r)))
	}
	for _, r := range roles {
		waitReady(t, r, "http://"+s.addrs[r]+"/readyz")
	}

	ts := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339Nano) // one time: no decay between events
	msg := func(id, typ, extra string) string {
		return fmt.Sprintf(`{"type":%q,"messageId":"%s-%s","timestamp":%q%s}`, typ, s.anon, id, ts, extra)
	}
	batch := `{"batch":[` + strings.Join([]string{
		msg("pv1", "page", fmt.Sprintf(`,"anonymousId":%q,"properties":{"url":"https://acme.example/?utm_campaign=spring","path":"/"}`, s.anon)),
		msg("pv2", "page", fmt.Sprintf(`,"anonymousId":%q,"properties":{"url":"https://acme.example/pricing","path":"/pricing"}`, s.anon)),
		msg("id1", "identify", fmt.Sprintf(`,"anonymousId":%q,"userId":%q,"traits":{"title":"VP Marketing","employees":500}`, s.anon, s.lead)),
		msg("fs1", "track", fmt.Sprintf(`,"anonymousId":%q,"userId":%q,"event":"Form Submitted","properties":{"form":"whitepaper"}`, s.anon, s.lead)),
		msg("ec1", "track", fmt.Sprintf(`,"userId":%q,"event":"Email Link Clicked","properties":{"campaign":"nurture-1"}`, s.lead)),
		// A headless browser's page view: stored flagged as a bot, never scored.
		msg("bot1", "page", fmt.Sprintf(`,"anonymousId":"bot-%s","context":{"userAgent":"Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0"}`, s.anon)),
	}, ",") + `]}`
	// page-view 5 + (page-view 5 + pricing 15) + fit 20+10 + form 30 + click 15 = 100 = threshold.
	s.eventsTotal = 5
	base := "http://" + s.addrs["collector"]
	if code, body := httpDo(t, "POST", base+"/v1/batch", stackWriteKey, batch); code != 200 {
		t.Fatalf("POST /v1/batch = %d %s", code, body)
	}
	if code, body := httpDo(t, "POST", base+"/v1/track", stackWriteKey, `{"userId":`); code != 400 {
		t.Errorf("malformed POST /v1/track = %d %s, want 400", code, body)
	}
	if code, body := httpDo(t, "POST", base+"/v1/track", "not-a-key", `{"userId":"x","event":"e"}`); code != 401 {
		t.Errorf("POST /v1/track with an unknown key = %d %s, want 401", code, body)
	}
	s.produceGarbage(t)

	testsvc.Eventually(t, "the journey's lead is an MQL in the lead API", 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		code, body := httpDo(t, "GET", base+"/v1/leads/"+s.lead, stackSecret, "")
		var v struct {
			Models map[string]struct {
				Score float64 `json:"score"`
				MQL   bool    `json:"mql"`
			} `json:"models"`
		}
		_ = json.Unmarshal([]byte(body), &v)
		return code == 200 && v.Models["default"].MQL, fmt.Sprintf("%d %s", code, body)
	})
	s.waitNotified(t)
	s.waitRows(t, "the journey's events are rows in ClickHouse")

	// A ClickHouse outage: the events table disappears, the next event's
	// insert fails (and is retried), the table comes back, the row lands.
	clickhouseQuery(t, s.clickhouse, fmt.Sprintf("RENAME TABLE %[1]s.events TO %[1]s.events_offline", s.database))
	late := fmt.Sprintf(`{"userId":%q,"event":"Webinar Attended","messageId":"%s-late"}`, s.lead, s.anon)
	if code, body := httpDo(t, "POST", base+"/v1/track", stackWriteKey, late); code != 200 {
		t.Fatalf("POST /v1/track = %d %s", code, body)
	}
	s.eventsTotal++
	testsvc.Eventually(t, "the sink reports a failed insert into events", 30*time.Second, 200*time.Millisecond, func() (bool, string) {
		_, body := httpDo(t, "GET", "http://"+s.addrs["sink"]+"/metrics", "", "")
		return strings.Contains(body, `leadstream_sink_insert_errors_total{table="events"}`), "no insert error yet"
	})
	clickhouseQuery(t, s.clickhouse, fmt.Sprintf("RENAME TABLE %[1]s.events_offline TO %[1]s.events", s.database))
	s.waitRows(t, "the event sent during the outage is a row in ClickHouse")
	return stop
}

// waitRows waits until ClickHouse holds every event of the journey.
func (s *stack) waitRows(t *testing.T, what string) {
	t.Helper()
	q := fmt.Sprintf("SELECT uniqExact(event_id) FROM %s.events WHERE lead_id = '%s' OR anonymous_id = '%s'", s.database, s.lead, s.anon)
	testsvc.Eventually(t, what, 30*time.Second, 200*time.Millisecond, func() (bool, string) {
		out, err := clickhouseTry(s.clickhouse, q)
		return err == nil && out == strconv.Itoa(s.eventsTotal), fmt.Sprintf("%q %v (want %d)", out, err, s.eventsTotal)
	})
}

// produceGarbage writes a record no stage can decode to the events topic:
// both consumers must dead-letter it.
func (s *stack) produceGarbage(t *testing.T) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	rec := &kgo.Record{Topic: s.prefix + "events", Key: []byte(s.anon), Value: []byte("\x00 this is not an event")}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatalf("producing an undecodable record: %v", err)
	}
}

// processLauncher runs the roles as processes of the leadstream binary.
func processLauncher(bin string) launcher {
	return func(t *testing.T, role string, env, _ []string) func() {
		t.Helper()
		var logs bytes.Buffer
		cmd := exec.Command(bin, role)
		cmd.Env = append(cleanEnv(), env...)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting leadstream %s: %v", role, err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("leadstream %s exited with %v after SIGTERM; logs:\n%s", role, err, logs.String())
					}
				case <-time.After(20 * time.Second):
					_ = cmd.Process.Kill()
					<-done
					t.Errorf("leadstream %s did not stop within 20s of SIGTERM; logs:\n%s", role, logs.String())
				}
			})
		}
		t.Cleanup(stop)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("leadstream %s logs:\n%s", role, logs.String())
			}
		})
		return stop
	}
}

// cleanEnv is this process's environment without LEADSTREAM_ variables, so
// roles see only what the test gives them.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LEADSTREAM_") {
			env = append(env, kv)
		}
	}
	return env
}

func waitReady(t *testing.T, what, url string) {
	t.Helper()
	testsvc.Eventually(t, what+" ready ("+url+")", 60*time.Second, 100*time.Millisecond, func() (bool, string) {
		resp, err := http.Get(url)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200, fmt.Sprintf("%d %s", resp.StatusCode, b)
	})
}

// httpDo sends a request with key as the Basic user name (when not empty)
// and returns the status and body.
func httpDo(t *testing.T, method, url, key, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.SetBasicAuth(key, "")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// freeAddr returns a loopback host:port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// clickhouseTry runs a query with the independent clickhouse-client.
func clickhouseTry(addr, q string) (string, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	out, err := exec.Command("clickhouse-client", "--host", "127.0.0.1", "--port", port, "-q", q).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("clickhouse-client %q: %v: %s", q, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

func clickhouseQuery(t testing.TB, addr, q string) string {
	t.Helper()
	out, err := clickhouseTry(addr, q)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
