//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/localsvc"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadapi"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
	"github.com/twmb/franz-go/pkg/kfake"
)

// secureEnv is a deployment with every connection over TLS with a client
// certificate and every service behind a password: Kafka (kfake, SASL
// SCRAM-SHA-256), Redis (TLS-only redis-server, ACL users for the collector
// and the processor, default user off) and ClickHouse (clickhouse-server's
// secure native port, user with a password). Secrets are in files only.
type secureEnv struct {
	bin        string
	dir        string
	ca         *testsvc.CA
	client     testsvc.KeyPair
	kafka      *kfake.Cluster
	brokers    []string
	redis      *localsvc.Server
	clickhouse *localsvc.Server
	secrets    map[string]string // name -> value, each also in a file
	files      map[string]string // name -> path
	prefix     string            // topic prefix
	db         string
}

func newSecureEnv(t *testing.T) *secureEnv {
	t.Helper()
	e := &secureEnv{dir: t.TempDir(), secrets: map[string]string{}, files: map[string]string{},
		prefix: fmt.Sprintf("sec%d.", rand.Uint32()), db: fmt.Sprintf("sec_%d", rand.Uint32())}
	e.bin = buildLeadstream(t, e.dir)
	for _, name := range []string{"kafka", "redis-collector", "redis-processor", "clickhouse", "secret-key", "token-keys", "write-keys", "server-write-keys"} {
		v := fmt.Sprintf("%s-%016x", name, rand.Uint64())
		switch name {
		case "token-keys":
			v = "k1:" + v
		}
		e.secrets[name] = v
		e.files[name] = filepath.Join(e.dir, name+".secret")
		if err := os.WriteFile(e.files[name], []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.ca = testsvc.NewCA(t, "leadstream-test")
	e.client = e.ca.Client(t, "leadstream")
	e.kafka, e.brokers = testsvc.SecureKafka(t, testsvc.ServerTLS(e.ca.Server(t, "kafka"), e.ca), stream.SASLScramSHA256, "leadstream", e.secrets["kafka"])
	var args []string
	args = append(args, "--user", "default", "off")
	args = append(args, append([]string{"--user", "ls-collector", "on", ">" + e.secrets["redis-collector"]}, strings.Fields(leadstate.ACLReader)...)...)
	args = append(args, append([]string{"--user", "ls-processor", "on", ">" + e.secrets["redis-processor"]}, strings.Fields(leadstate.ACLWriter)...)...)
	e.redis = testsvc.SecureRedis(t, e.ca, true, args...)
	e.clickhouse = testsvc.SecureClickHouse(t, e.ca, true, map[string]string{"leadstream": e.secrets["clickhouse"]})
	return e
}

// buildLeadstream builds the binary into dir.
func buildLeadstream(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "leadstream")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building leadstream: %v\n%s", err, out)
	}
	return bin
}

// env is the environment of a role: every secure setting, secrets from files.
func (e *secureEnv) env(role string) map[string]string {
	m := map[string]string{
		"LEADSTREAM_KAFKA_BROKERS":             strings.Join(e.brokers, ","),
		"LEADSTREAM_KAFKA_TOPIC_PREFIX":        e.prefix,
		"LEADSTREAM_KAFKA_PARTITIONS":          "4",
		"LEADSTREAM_KAFKA_TLS":                 "true",
		"LEADSTREAM_KAFKA_TLS_CA_FILE":         e.ca.CAFile,
		"LEADSTREAM_KAFKA_TLS_CERT_FILE":       e.client.CertFile,
		"LEADSTREAM_KAFKA_TLS_KEY_FILE":        e.client.KeyFile,
		"LEADSTREAM_KAFKA_TLS_SERVER_NAME":     "localhost",
		"LEADSTREAM_KAFKA_SASL_MECHANISM":      stream.SASLScramSHA256,
		"LEADSTREAM_KAFKA_SASL_USERNAME":       "leadstream",
		"LEADSTREAM_KAFKA_SASL_PASSWORD_FILE":  e.files["kafka"],
		"LEADSTREAM_REDIS_ADDR":                e.redis.Addr,
		"LEADSTREAM_REDIS_TLS":                 "true",
		"LEADSTREAM_REDIS_TLS_CA_FILE":         e.ca.CAFile,
		"LEADSTREAM_REDIS_TLS_CERT_FILE":       e.client.CertFile,
		"LEADSTREAM_REDIS_TLS_KEY_FILE":        e.client.KeyFile,
		"LEADSTREAM_CLICKHOUSE_ADDR":           e.clickhouse.Addr,
		"LEADSTREAM_CLICKHOUSE_DATABASE":       e.db,
		"LEADSTREAM_CLICKHOUSE_USERNAME":       "leadstream",
		"LEADSTREAM_CLICKHOUSE_PASSWORD_FILE":  e.files["clickhouse"],
		"LEADSTREAM_CLICKHOUSE_TLS":            "true",
		"LEADSTREAM_CLICKHOUSE_TLS_CA_FILE":    e.ca.CAFile,
		"LEADSTREAM_CLICKHOUSE_TLS_CERT_FILE":  e.client.CertFile,
		"LEADSTREAM_CLICKHOUSE_TLS_KEY_FILE":   e.client.KeyFile,
		"LEADSTREAM_PROCESSOR_MAX_WAIT":        "10ms",
		"LEADSTREAM_SINK_FLUSH_INTERVAL":       "100ms",
		"LEADSTREAM_WRITE_KEYS_FILE":           e.files["write-keys"],
		"LEADSTREAM_SERVER_WRITE_KEYS_FILE":    e.files["server-write-keys"],
		"LEADSTREAM_SECRET_KEY_FILE":           e.files["secret-key"],
		"LEADSTREAM_TOKEN_KEYS_FILE":           e.files["token-keys"],
		"LEADSTREAM_LOG_LEVEL":                 "debug",
		"LEADSTREAM_COLLECTOR_PRODUCE_TIMEOUT": "5s",
	}
	switch role {
	case "collector":
		m["LEADSTREAM_REDIS_USERNAME"], m["LEADSTREAM_REDIS_PASSWORD_FILE"] = "ls-collector", e.files["redis-collector"]
	default:
		m["LEADSTREAM_REDIS_USERNAME"], m["LEADSTREAM_REDIS_PASSWORD_FILE"] = "ls-processor", e.files["redis-processor"]
	}
	return m
}

// role is a running leadstream process.
type role struct {
	name string
	cmd  *exec.Cmd
	addr string             // its HTTP address
	out  testsvc.SyncBuffer // its stdout and stderr
	done chan struct{}
	err  error
}

func (r *role) logs() string { return r.out.String() }

// start runs `leadstream name` with env (and nothing else from the
// environment but PATH and HOME), stopped with SIGTERM when the test ends.
func (e *secureEnv) start(t *testing.T, name string, env map[string]string) *role {
	t.Helper()
	port, err := localsvc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	r := &role{name: name, addr: fmt.Sprintf("127.0.0.1:%d", port), done: make(chan struct{})}
	r.cmd = exec.Command(e.bin, name)
	r.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "LEADSTREAM_HTTP_ADDR=" + r.addr}
	for k, v := range env {
		r.cmd.Env = append(r.cmd.Env, k+"="+v)
	}
	r.cmd.Stderr, r.cmd.Stdout = &r.out, &r.out
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(15 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.done
			t.Errorf("%s did not stop within 15 s of SIGTERM", name)
		}
		if t.Failed() {
			t.Logf("%s logs:\n%s", name, tail(r.logs(), 6000))
		}
	})
	return r
}

func tail(s string, n int) string { return s[max(0, len(s)-n):] }

// get fetches a URL of a role.
func get(url, user string) (int, string) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, err.Error()
	}
	if user != "" {
		req.SetBasicAuth(user, "")
	}
	res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func (r *role) waitReady(t *testing.T) {
	t.Helper()
	eventually(t, r.name+" ready", 60*time.Second, func() (bool, string) {
		select {
		case <-r.done:
			t.Fatalf("%s exited: %v\n%s", r.name, r.err, tail(r.logs(), 4000))
		default:
		}
		code, body := get("http://"+r.addr+"/readyz", "")
		return code == 200, fmt.Sprint(code, " ", body)
	})
}

// metricSum sums the samples of a metric family in a Prometheus text page
// whose label text contains every part of match.
func metricSum(page, name string, match ...string) (float64, bool) {
	sum, found := 0.0, false
next:
	for _, line := range strings.Split(page, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, m := range match {
			if !strings.Contains(line, m) {
				continue next
			}
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
			found = true
		}
	}
	return sum, found
}

// TestSecurePipeline runs the collector, the processor and the sink as
// separate processes with every connection over TLS and authenticated, and
// follows a lead's journey: HTTP → Kafka → score in Redis (read back through
// the collector's read-only Redis user) → rows in ClickHouse → MQL record read
// from Kafka. No secret is on a command line, in a log or in -h. Then it
// takes Redis and Kafka away and watches /readyz say so.
func TestSecurePipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts servers")
	}
	e := newSecureEnv(t)
	col := e.start(t, "collector", e.env("collector"))
	col.waitReady(t)
	proc := e.start(t, "processor", e.env("processor"))
	snk := e.start(t, "sink", e.env("sink"))
	proc.waitReady(t)
	snk.waitReady(t)
	// The server key: the batch holds an email click, as a sending system posts it.
	writeKey, secretKey := e.secrets["server-write-keys"], e.secrets["secret-key"]

	sfx := fmt.Sprintf("%d", rand.Uint32())
	lead, anon := "lead-"+sfx+"@example.com", "anon-"+sfx
	ts := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339Nano)
	msg := func(id, typ, extra string) string {
		return fmt.Sprintf(`{"type":%q,"messageId":"%s-%s","timestamp":%q%s}`, typ, sfx, id, ts, extra)
	}
	batch := `{"batch":[` + strings.Join([]string{
		msg("pv1", "page", fmt.Sprintf(`,"anonymousId":%q,"properties":{"url":"https://acme.example/","path":"/"}`, anon)),
		msg("pv2", "page", fmt.Sprintf(`,"anonymousId":%q,"properties":{"url":"https://acme.example/pricing","path":"/pricing"}`, anon)),
		msg("id1", "identify", fmt.Sprintf(`,"anonymousId":%q,"userId":%q,"traits":{"title":"VP Marketing","employees":500}`, anon, lead)),
		msg("fs1", "track", fmt.Sprintf(`,"anonymousId":%q,"userId":%q,"event":"Form Submitted","properties":{"form":"whitepaper"}`, anon, lead)),
		msg("ec1", "track", fmt.Sprintf(`,"userId":%q,"event":"Email Link Clicked"`, lead)),
	}, ",") + `]}`
	req, _ := http.NewRequest("POST", "http://"+col.addr+"/v1/batch", strings.NewReader(batch))
	req.SetBasicAuth(writeKey, "")
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("POST /v1/batch = %d %s", res.StatusCode, body)
	}

	// The score, through the collector's lead API on its read-only Redis user.
	eventually(t, "lead is an MQL in the API", 30*time.Second, func() (bool, string) {
		code, body := get("http://"+col.addr+"/v1/leads/"+lead, secretKey)
		var v leadapi.LeadView
		_ = json.Unmarshal([]byte(body), &v)
		return code == 200 && v.Models["default"].MQL, fmt.Sprint(code, " ", body)
	})

	// The rows, over the secure native port.
	ctx := context.Background()
	conn, err := warehouse.Open(ctx, warehouse.Config{Addr: e.clickhouse.Addr, Database: e.db, Username: "leadstream", Password: e.secrets["clickhouse"],
		DialTimeout: 5 * time.Second, TLS: true, TLSCAFile: e.ca.CAFile, TLSCertFile: e.client.CertFile, TLSKeyFile: e.client.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	count := func(q string) uint64 {
		var n uint64
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			return 0
		}
		return n
	}
	eventually(t, "events and the MQL in clickhouse", 30*time.Second, func() (bool, string) {
		ev := count(fmt.Sprintf("SELECT count() FROM %s.events FINAL WHERE event_id LIKE '%s-%%'", e.db, sfx))
		mq := count(fmt.Sprintf("SELECT count() FROM %s.mql FINAL WHERE lead_id = '%s'", e.db, lead))
		return ev == 5 && mq == 1, fmt.Sprintf("events %d, mql %d", ev, mq)
	})

	// The MQL record, read back over TLS + SASL by a consumer of our own.
	sec := stream.Security{TLS: true, CAFile: e.ca.CAFile, CertFile: e.client.CertFile, KeyFile: e.client.KeyFile,
		SASLMechanism: stream.SASLScramSHA256, SASLUsername: "leadstream", SASLPassword: e.secrets["kafka"]}
	rec := readSecureMQL(t, e.brokers, sec, e.prefix+stream.TopicMQL)
	if rec.LeadID != lead || rec.Model != "default" || rec.MQLID != event.MQLID(lead, "default", rec.TriggerEventID) {
		t.Fatalf("mql record %+v", rec)
	}
	// No independent client here: kcat's librdkafka 2.0.2 wants SaslHandshake
	// v0, which kfake does not offer (v1 only), so it cannot log in to kfake.

	// Metrics: build info, lag per partition, apply duration once per event.
	var page string
	eventually(t, "lag of every partition on the processor's /metrics", 15*time.Second, func() (bool, string) {
		_, page = get("http://"+proc.addr+"/metrics", "")
		for p := range 4 {
			if _, ok := metricSum(page, "leadstream_kafka_consumer_lag_records", fmt.Sprintf(`partition="%d"`, p), `group="scoring"`); !ok {
				return false, fmt.Sprintf("no lag series for partition %d", p)
			}
		}
		return true, ""
	})
	if _, ok := metricSum(page, "leadstream_build_info", `goversion="go`); !ok {
		t.Error("no leadstream_build_info on the processor")
	}
	applied, _ := metricSum(page, "leadstream_processor_apply_duration_seconds_count")
	scored, _ := metricSum(page, "leadstream_processor_events_total", `result="scored"`)
	dup, _ := metricSum(page, "leadstream_processor_events_total", `result="duplicate"`)
	merges, _ := metricSum(page, "leadstream_processor_merges_total")
	if applied != scored+dup+merges || applied == 0 {
		t.Errorf("apply duration observed %v times for %v scored + %v duplicate events + %v merges", applied, scored, dup, merges)
	}

	// No secret on a command line, in a log line or in -h.
	help := exec.Command(e.bin, "collector", "-h")
	help.Env = []string{"PATH=" + os.Getenv("PATH"), "LEADSTREAM_SECRET_KEY=" + secretKey, "LEADSTREAM_REDIS_PASSWORD=" + e.secrets["redis-collector"]}
	helpOut, _ := help.CombinedOutput()
	for _, want := range []string{"LEADSTREAM_KAFKA_SASL_PASSWORD_FILE", "LEADSTREAM_SECRET_KEY_FILE", "LEADSTREAM_REDIS_PASSWORD_FILE", "LEADSTREAM_KAFKA_TLS_CA_FILE"} {
		if !strings.Contains(string(helpOut), want) {
			t.Errorf("collector -h does not list %s", want)
		}
	}
	for _, r := range []*role{col, proc, snk} {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", r.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range e.secrets {
			for _, part := range strings.Split(v, ",") {
				if strings.Contains(string(cmdline), part) || strings.Contains(r.logs(), part) || strings.Contains(string(helpOut), part) {
					t.Errorf("secret %s shows in the command line, logs or -h of %s", name, r.name)
				}
			}
		}
	}

	// Lost connections show in /readyz: Redis for the processor, then Kafka
	// for every role.
	if err := e.redis.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "processor not ready without redis", 15*time.Second, func() (bool, string) {
		code, body := get("http://"+proc.addr+"/readyz", "")
		return code == 503 && strings.Contains(body, "redis"), fmt.Sprint(code, " ", body)
	})
	e.kafka.Close()
	for _, r := range []*role{col, snk} {
		eventually(t, r.name+" not ready without kafka", 20*time.Second, func() (bool, string) {
			code, body := get("http://"+r.addr+"/readyz", "")
			return code == 503 && strings.Contains(body, "kafka"), fmt.Sprint(code, " ", body)
		})
	}
	// Losing a service is not a reason to exit: the roles wait, unready.
	time.Sleep(2 * time.Second)
	for _, r := range []*role{col, proc, snk} {
		select {
		case <-r.done:
			t.Errorf("%s exited when a service went away: %v\n%s", r.name, r.err, tail(r.logs(), 2000))
		default:
		}
	}
}

// readSecureMQL reads the first MQL record of topic with the given security.
func readSecureMQL(t *testing.T, brokers []string, sec stream.Security, topic string) event.MQL {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, Security: sec, Group: fmt.Sprintf("reader-%d", rand.Uint32()),
		Topics: []string{topic}, MaxWait: 10 * time.Millisecond}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	var rec event.MQL
	rctx, stop := context.WithCancel(ctx)
	err = cons.Run(rctx, func(_ context.Context, b []stream.Message) error {
		if err := json.Unmarshal(b[0].Value, &rec); err != nil {
			return err
		}
		stop()
		return nil
	})
	stop()
	if err != nil || rec.MQLID == "" {
		t.Fatalf("reading %s over TLS + SASL: %v (record %+v)", topic, err, rec)
	}
	return rec
}

// TestSecureWrongSettings starts roles with one wrong setting each: every
// one exits within seconds with an error naming the service and the cause,
// and without the secret it was given.
func TestSecureWrongSettings(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts servers")
	}
	e := newSecureEnv(t)
	other := testsvc.NewCA(t, "untrusted")
	plainBrokers := testsvc.Kafka(t)
	plainCH := testsvc.ClickHouse(t)
	f := func(name, roleName string, change func(env map[string]string), want ...string) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := e.env(roleName)
			change(env)
			start := time.Now()
			r := e.start(t, roleName, env)
			select {
			case <-r.done:
			case <-time.After(30 * time.Second):
				t.Fatalf("%s still running after 30 s with a wrong setting:\n%s", roleName, tail(r.logs(), 3000))
			}
			took := time.Since(start)
			logs := r.logs()
			if r.err == nil {
				t.Fatalf("%s exited without an error:\n%s", roleName, tail(logs, 3000))
			}
			if took > 20*time.Second {
				t.Errorf("took %s to fail", took)
			}
			for _, w := range want {
				if !strings.Contains(logs, w) {
					t.Errorf("%s output does not contain %q:\n%s", roleName, w, tail(logs, 3000))
				}
			}
			for n, v := range e.secrets {
				if strings.Contains(logs, v) {
					t.Errorf("output shows secret %s", n)
				}
			}
			if strings.Contains(logs, "wrong-secret") {
				t.Error("output shows the wrong secret it was given")
			}
			if testing.Verbose() {
				lines := strings.Split(strings.TrimSpace(logs), "\n")
				t.Logf("%s failed in %s: %s", roleName, took.Round(time.Millisecond), lines[len(lines)-1])
			}
		})
	}
	wrongFile := filepath.Join(e.dir, "wrong.secret")
	if err := os.WriteFile(wrongFile, []byte("wrong-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f("kafka wrong password", "processor", func(m map[string]string) { m["LEADSTREAM_KAFKA_SASL_PASSWORD_FILE"] = wrongFile },
		"kafka at", "kafka refused the SASL credentials", "kafka.sasl.password")
	f("kafka untrusted certificate", "collector", func(m map[string]string) { m["LEADSTREAM_KAFKA_TLS_CA_FILE"] = other.CAFile },
		"kafka at", "not signed by a CA leadstream trusts", "kafka.tls.ca-file")
	f("kafka plaintext to tls", "sink", func(m map[string]string) {
		delete(m, "LEADSTREAM_KAFKA_TLS_CA_FILE")
		delete(m, "LEADSTREAM_KAFKA_TLS_CERT_FILE")
		delete(m, "LEADSTREAM_KAFKA_TLS_KEY_FILE")
		delete(m, "LEADSTREAM_KAFKA_TLS_SERVER_NAME")
		m["LEADSTREAM_KAFKA_TLS"] = "false"
	}, "kafka at", "kafka.tls=true")
	f("kafka tls to plaintext", "collector", func(m map[string]string) {
		m["LEADSTREAM_KAFKA_BROKERS"] = plainBrokers[0]
		delete(m, "LEADSTREAM_KAFKA_SASL_MECHANISM")
		delete(m, "LEADSTREAM_KAFKA_SASL_USERNAME")
		delete(m, "LEADSTREAM_KAFKA_SASL_PASSWORD_FILE")
	}, "kafka at", "kafka.tls")
	f("redis wrong password", "processor", func(m map[string]string) { m["LEADSTREAM_REDIS_PASSWORD_FILE"] = wrongFile },
		"redis at", "WRONGPASS", "redis.password")
	f("redis untrusted certificate", "collector", func(m map[string]string) { m["LEADSTREAM_REDIS_TLS_CA_FILE"] = other.CAFile },
		"redis at", "redis.tls.ca-file")
	f("redis plaintext to tls", "processor", func(m map[string]string) {
		delete(m, "LEADSTREAM_REDIS_TLS_CA_FILE")
		delete(m, "LEADSTREAM_REDIS_TLS_CERT_FILE")
		delete(m, "LEADSTREAM_REDIS_TLS_KEY_FILE")
		m["LEADSTREAM_REDIS_TLS"] = "false"
	}, "redis at", "redis.tls=true")
	f("clickhouse wrong password", "sink", func(m map[string]string) { m["LEADSTREAM_CLICKHOUSE_PASSWORD_FILE"] = wrongFile },
		"clickhouse at", "clickhouse.password")
	f("clickhouse untrusted certificate", "migrate", func(m map[string]string) { m["LEADSTREAM_CLICKHOUSE_TLS_CA_FILE"] = other.CAFile },
		"clickhouse at", "clickhouse.tls.ca-file")
	// The collector needs ClickHouse for erasures only, and checks it at start too.
	f("clickhouse wrong password, collector", "collector", func(m map[string]string) { m["LEADSTREAM_CLICKHOUSE_PASSWORD_FILE"] = wrongFile },
		"clickhouse at", "clickhouse.password")
	f("clickhouse plaintext to tls", "sink", func(m map[string]string) {
		delete(m, "LEADSTREAM_CLICKHOUSE_TLS_CA_FILE")
		delete(m, "LEADSTREAM_CLICKHOUSE_TLS_CERT_FILE")
		delete(m, "LEADSTREAM_CLICKHOUSE_TLS_KEY_FILE")
		m["LEADSTREAM_CLICKHOUSE_TLS"] = "false"
	}, "clickhouse at", "clickhouse.tls=true")
	f("clickhouse tls to plaintext", "migrate", func(m map[string]string) {
		m["LEADSTREAM_CLICKHOUSE_ADDR"] = plainCH
	}, "clickhouse at", "plaintext")
	f("bad token key file", "collector", func(m map[string]string) {
		m["LEADSTREAM_TOKEN_KEYS_FILE"] = wrongFile
	}, "-token-keys")
}
