package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/notify"
	"github.com/leadstream/leadstream/stream"
)

// TestNotifierRole runs `leadstream notifier` as a process: configured only
// by its environment and a destinations file (the webhook secret from the
// environment), it delivers an MQL record from leadstream.mql and an MQA
// record from leadstream.mqa to a webhook, signed, records the attempts in
// ClickHouse, counts them in /metrics, and stops promptly on SIGTERM. A bad
// destinations file stops it at once, naming the line and the field.
func TestNotifierRole(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	e := &secureEnv{bin: buildLeadstream(t, dir)}
	const secret = "role-test-secret-0123456789"
	var mu sync.Mutex
	got := map[string]string{} // idempotency key -> kind
	var bad []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := notify.Verify([]byte(secret), r.Header.Get(notify.HeaderSignature), body, time.Now(), time.Minute); err != nil {
			bad = append(bad, err.Error())
		}
		if r.Header.Get("X-Team") != "sales" {
			bad = append(bad, "header X-Team missing")
		}
		got[r.Header.Get(notify.HeaderIdempotencyKey)] = r.Header.Get(notify.HeaderKind)
	}))
	t.Cleanup(hook.Close)
	conf := filepath.Join(dir, "notify.yaml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`destinations:
  - name: crm
    type: webhook
    url: %s/hook
    secret: {env: CRM_HOOK_SECRET}
    headers: {X-Team: sales}
`, hook.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	brokers := testsvc.Kafka(t)
	kcfg := stream.Config{Brokers: brokers, TopicPrefix: fmt.Sprintf("nr%d.", rand.Uint32()), Partitions: 2, ReplicationFactor: -1}
	chAddr := testsvc.ClickHouse(t)
	db := fmt.Sprintf("notifier_%d", rand.Uint32())
	t.Cleanup(func() { clickhouse(t, chAddr, "DROP DATABASE IF EXISTS "+db) })
	env := map[string]string{
		"LEADSTREAM_KAFKA_BROKERS":       strings.Join(brokers, ","),
		"LEADSTREAM_KAFKA_TOPIC_PREFIX":  kcfg.TopicPrefix,
		"LEADSTREAM_KAFKA_PARTITIONS":    "2",
		"LEADSTREAM_CLICKHOUSE_ADDR":     chAddr,
		"LEADSTREAM_CLICKHOUSE_DATABASE": db,
		"LEADSTREAM_NOTIFY_CONFIG":       conf,
		"LEADSTREAM_NOTIFY_RETRY_MIN":    "100ms",
		"CRM_HOOK_SECRET":                secret,
	}
	r := e.start(t, "notifier", env)
	r.waitReady(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := time.Now().UTC().Truncate(time.Millisecond)
	mql := event.MQL{MQLID: event.MQLID("lead-1", "default", "ev-1"), LeadID: "lead-1", Model: "default", Score: 105, Threshold: 100,
		CrossedAt: now, TriggerEventID: "ev-1", Reasons: []event.Reason{{Rule: "form-submit", Points: 30}}}
	mqa := event.MQA{MQAID: event.MQAID("acme", "default", "ev-2"), AccountID: "acme", Model: "default", Score: 160, Threshold: 150,
		CrossedAt: now, TriggerEventID: "ev-2", EngagedMembers: 2, Reasons: []event.Reason{{Rule: "members", Points: 130}},
		TopMembers: []event.Member{{LeadID: "lead-1", Points: 60}}}
	for suffix, rec := range map[string]any{stream.TopicMQL: mql, stream.TopicMQA: mqa} {
		p, err := stream.NewProducer(ctx, kcfg.Producer(suffix), quiet, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(rec)
		if err := p.Produce(ctx, []stream.Record{{Key: []byte("k"), Value: b}}); err != nil {
			t.Fatal(err)
		}
		p.Close()
	}
	eventually(t, "the MQL and the MQA delivered", 60*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return got[mql.MQLID] == notify.KindMQL && got[mqa.MQAID] == notify.KindMQA, fmt.Sprint(got)
	})
	mu.Lock()
	for _, b := range bad {
		t.Error(b)
	}
	mu.Unlock()
	eventually(t, "deliveries in /metrics", 10*time.Second, func() (bool, string) {
		_, page := get("http://"+r.addr+"/metrics", "")
		n, _ := metricSum(page, "leadstream_notifier_deliveries_total", `destination="crm"`, `result="delivered"`)
		return n == 2, fmt.Sprint(n)
	})
	eventually(t, "attempts in clickhouse", 30*time.Second, func() (bool, string) {
		// The table exists once the notifier's recorder first wrote.
		b, err := exec.Command("clickhouse-client", "--host", "127.0.0.1", "--port", portOf(chAddr), "-q",
			"SELECT kind, status, attempt FROM "+db+".notifications FINAL WHERE destination = 'crm' ORDER BY kind FORMAT CSV").CombinedOutput()
		out := strings.TrimSpace(string(b))
		return err == nil && out == "\"mqa\",\"delivered\",1\n\"mql\",\"delivered\",1", out
	})

	start := time.Now()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
		t.Fatal("the notifier did not stop within 15 s of SIGTERM")
	}
	if r.err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", r.err, tail(r.logs(), 3000))
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stopping took %v", took)
	}
	if strings.Contains(r.logs(), secret) {
		t.Error("the logs show the webhook secret")
	}

	t.Run("bad destinations file", func(t *testing.T) {
		badConf := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(badConf, []byte("destinations:\n  - name: crm\n    type: webhook\n    url: https://crm.example/hook\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		benv := map[string]string{}
		for k, v := range env {
			benv[k] = v
		}
		benv["LEADSTREAM_NOTIFY_CONFIG"] = badConf
		br := e.start(t, "notifier", benv)
		select {
		case <-br.done:
		case <-time.After(20 * time.Second):
			t.Fatal("still running with a destination without a secret")
		}
		if br.err == nil || !strings.Contains(br.logs(), "bad.yaml:2") || !strings.Contains(br.logs(), "destinations[0].secret: missing") {
			t.Errorf("exit %v, output:\n%s", br.err, tail(br.logs(), 2000))
		}
	})
}
