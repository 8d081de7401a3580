package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadstream/leadstream/erasure"
	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/ingest"
	"github.com/leadstream/leadstream/ingest/segment"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadapi"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/processor"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/sink"
	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
	"github.com/prometheus/client_golang/prometheus"
)

// pipeline is every role running in-process against real services.
type pipeline struct {
	base      string // collector URL
	brokers   []string
	kcfg      stream.Config
	chAddr    string
	redisAddr string
	db        string
	store     *leadstate.Store
	stop      func()
}

const (
	testWriteKey   = "e2e-write-key" // a server key: the tests send as a backend does (backdated, email, deals)
	testBrowserKey = "e2e-browser-key"
	testSecret     = "e2e-secret"
)

func startPipeline(t *testing.T) *pipeline {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	brokers := testsvc.Kafka(t)
	kcfg := stream.Config{Brokers: brokers, TopicPrefix: "leadstream.", Partitions: 4, ReplicationFactor: -1}
	if err := stream.EnsureTopics(ctx, kcfg); err != nil {
		t.Fatal(err)
	}
	redisAddr := testsvc.Redis(t)
	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: redisAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	store := leadstate.NewStore(rdb)
	p := &pipeline{brokers: brokers, kcfg: kcfg, chAddr: testsvc.ClickHouse(t), redisAddr: redisAddr, store: store,
		db: fmt.Sprintf("e2e_%d", rand.Uint32())}
	t.Cleanup(func() { clickhouse(t, p.chAddr, "DROP DATABASE IF EXISTS "+p.db) })

	reg := prometheus.NewRegistry()
	rules := scoring.Default()
	producer, err := stream.NewProducer(ctx, stream.ProducerConfig{Brokers: brokers, Topic: kcfg.Topic(stream.TopicEvents)}, log,
		prometheus.WrapRegistererWith(prometheus.Labels{"stage": "collector"}, reg))
	if err != nil {
		t.Fatal(err)
	}
	eraser := erasure.New(erasure.Config{Kafka: kcfg, ClickHouse: warehouse.Config{Addr: p.chAddr, Database: p.db, Username: "default", DialTimeout: 5 * time.Second}},
		store, log, reg)
	t.Cleanup(eraser.Close)
	col, err := newCollector(ingest.Config{Kafka: kcfg, HTTPAddr: "127.0.0.1:0", WriteKeys: []string{testBrowserKey}, ServerWriteKeys: []string{testWriteKey},
		SecretKey: testSecret, ProduceTimeout: 5 * time.Second, MaxEventAge: 24 * time.Hour, AnonymizeIP: true}, producer, store, rules, log, reg, eraser)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := col.Listen()
	if err != nil {
		t.Fatal(err)
	}
	p.base = "http://" + addr.String()
	proc, err := processor.New(processor.Config{Kafka: kcfg, Group: "scoring", BatchSize: 100, MaxWait: 10 * time.Millisecond}, rules, store, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	snk, err := sink.New(sink.Config{Kafka: kcfg, ClickHouse: warehouse.Config{Addr: p.chAddr, Database: p.db, Username: "default", DialTimeout: 5 * time.Second},
		BatchSize: 1000, FlushInterval: 100 * time.Millisecond, Group: "clickhouse"}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for name, run := range map[string]func(context.Context) error{"collector": col.Run, "processor": proc.Run, "sink": snk.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(runCtx); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			producer.Close()
		})
	}
	t.Cleanup(p.stop)
	return p
}

func (p *pipeline) post(t *testing.T, path, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", p.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.SetBasicAuth(auth, "")
	}
	return do(t, req)
}

func (p *pipeline) get(t *testing.T, path, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", p.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.SetBasicAuth(auth, "")
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// clickhouse runs a query with the independent clickhouse-client and returns its output.
func clickhouse(t *testing.T, addr, q string) string {
	t.Helper()
	port := portOf(addr)
	out, err := exec.Command("clickhouse-client", "--host", "127.0.0.1", "--port", port, "-q", q).CombinedOutput()
	if err != nil {
		t.Fatalf("clickhouse-client %q: %v: %s", q, err, out)
	}
	return strings.TrimSpace(string(out))
}

func eventually(t *testing.T, what string, timeout time.Duration, f func() (bool, string)) {
	t.Helper()
	testsvc.Eventually(t, what, timeout, 50*time.Millisecond, f)
}

// TestE2EPipeline posts a visitor's journey over HTTP and follows it through
// Kafka, the processor (Redis) and the sink (ClickHouse): the lead's score from
// the API, the MQL record from Kafka (read by kafka-go and by kcat), the raw rows
// in ClickHouse (read by clickhouse-client); then replays the same batch and
// checks that nothing counts twice.
func TestE2EPipeline(t *testing.T) {
	p := startPipeline(t)
	sfx := fmt.Sprintf("%d", rand.Uint32())
	lead, anon := "lead-"+sfx+"@example.com", "anon-"+sfx
	ts := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339Nano) // one time: no decay between events
	msg := func(id, typ, extra string) string {
		return fmt.Sprintf(`{"type":%q,"messageId":"%s-%s","timestamp":%q%s}`, typ, sfx, id, ts, extra)
	}
	batch := `{"batch":[` + strings.Join([]string{
		msg("pv1", "page", fmt.Sprintf(`,"anonymousId":%q,"properties":{"url":"https://acme.example/?utm_source=google&utm_campaign=spring","path":"/","title":"Home"}`, anon)),
		msg("pv2", "page", fmt.Sprintf(`,"anonymousId":%q,"properties":{"url":"https://acme.example/pricing","path":"/pricing"}`, anon)),
		msg("id1", "identify", fmt.Sprintf(`,"anonymousId":%q,"userId":%q,"traits":{"title":"VP Marketing","employees":500}`, anon, lead)),
		msg("fs1", "track", fmt.Sprintf(`,"anonymousId":%q,"userId":%q,"event":"Form Submitted","properties":{"form":"whitepaper"}`, anon, lead)),
		msg("ec1", "track", fmt.Sprintf(`,"userId":%q,"event":"Email Link Clicked","properties":{"campaign":"nurture-1"}`, lead)),
	}, ",") + `]}`
	// page-view 5 + (page-view 5 + pricing 15) + fit 20+10 + form 30 + click 15 = 100 = threshold.
	const wantScore, nEvents = 100.0, 5
	// The API decays behaviour points (70) to the time of the request; fit (30) does not decay.
	evTime, _ := time.Parse(time.RFC3339Nano, ts)
	decayedScore := func(asOf time.Time) float64 {
		return 70*math.Pow(2, -float64(asOf.Sub(evTime).Milliseconds())/float64((720*time.Hour).Milliseconds())) + 30
	}

	if code, body := p.post(t, "/v1/batch", testWriteKey, batch); code != 200 {
		t.Fatalf("POST /v1/batch = %d %s", code, body)
	}

	var view leadapi.LeadView
	eventually(t, "lead score in the API", 20*time.Second, func() (bool, string) {
		code, body := p.get(t, "/v1/leads/"+lead, testSecret)
		if code != 200 {
			return false, fmt.Sprint(code, body)
		}
		view = leadapi.LeadView{}
		if err := json.Unmarshal([]byte(body), &view); err != nil {
			t.Fatal(err)
		}
		m := view.Models["default"]
		return closeTo(m.Score, decayedScore(view.AsOf), 1e-9) && m.MQL, body
	})
	if m := view.Models["default"]; !closeTo(m.Fit, 30, 1e-9) || len(m.TopRules) == 0 {
		t.Fatalf("lead view %+v: want fit 30 and contributing rules", m)
	}

	mqls := readMQL(t, p.brokers, p.kcfg.Topic(stream.TopicMQL), 1, 15*time.Second)
	m := mqls[0]
	if m.LeadID != lead || m.Model != "default" || !closeTo(m.Score, wantScore, 1e-6) || m.Threshold != 100 || len(m.Reasons) == 0 ||
		!strings.HasPrefix(m.TriggerEventID, sfx+"-") || m.MQLID != event.MQLID(lead, "default", m.TriggerEventID) {
		t.Fatalf("mql record %+v", m)
	}

	// An independent Kafka client (librdkafka) sees the same record.
	if _, err := exec.LookPath("kcat"); err != nil {
		testsvc.Required(t, "kcat", "kcat (Debian package kcat) is the independent Kafka client of this test")
	} else {
		out, err := exec.Command("kcat", "-b", p.brokers[0], "-C", "-t", p.kcfg.Topic(stream.TopicMQL), "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n").CombinedOutput()
		if err != nil {
			t.Fatalf("kcat: %v: %s", err, out)
		}
		if !strings.Contains(string(out), lead+"\t") || !strings.Contains(string(out), `"mql_id":"`+m.MQLID+`"`) {
			t.Fatalf("kcat did not see the MQL record keyed by the lead:\n%s", out)
		}
	}

	// Every accepted event is one row in ClickHouse; the identify links anon -> lead.
	q := fmt.Sprintf("SELECT count() FROM %s.events FINAL WHERE event_id LIKE '%s-%%'", p.db, sfx)
	eventually(t, "rows in clickhouse", 20*time.Second, func() (bool, string) {
		out := clickhouseMaybe(p.chAddr, q)
		return out == fmt.Sprint(nEvents), out
	})
	if got := clickhouse(t, p.chAddr, fmt.Sprintf("SELECT lead_id FROM %s.identity_links FINAL WHERE anonymous_id = '%s'", p.db, anon)); got != lead {
		t.Fatalf("identity link of the anonymous id = %q, want the lead", got)
	}
	if got := clickhouse(t, p.chAddr, fmt.Sprintf("SELECT utm_source, utm_campaign, path FROM %s.events WHERE event_id = '%s-pv1'", p.db, sfx)); got != "google\tspring\t/" {
		t.Fatalf("page view row utm/path = %q", got)
	}
	eventually(t, "mql row in clickhouse", 20*time.Second, func() (bool, string) {
		out := clickhouseMaybe(p.chAddr, fmt.Sprintf("SELECT count() FROM %s.mql FINAL WHERE lead_id = '%s'", p.db, lead))
		return out == "1", out
	})

	// Redelivery from the client (same messageIds): 200, but no double counting anywhere.
	if code, body := p.post(t, "/v1/batch", testWriteKey, batch); code != 200 {
		t.Fatalf("second POST /v1/batch = %d %s", code, body)
	}
	marker := fmt.Sprintf(`{"type":"track","messageId":"%s-marker","userId":%q,"event":"Marker","timestamp":%q}`, sfx, lead, ts)
	if code, body := p.post(t, "/v1/track", testWriteKey, marker); code != 200 {
		t.Fatalf("POST /v1/track = %d %s", code, body)
	}
	eventually(t, "replayed batch stored", 20*time.Second, func() (bool, string) {
		out := clickhouseMaybe(p.chAddr, fmt.Sprintf("SELECT count() FROM %s.events WHERE event_id LIKE '%s-%%'", p.db, sfx))
		return out == fmt.Sprint(2*nEvents+1), out
	})
	if got := clickhouse(t, p.chAddr, fmt.Sprintf("SELECT count() FROM %s.events FINAL WHERE event_id LIKE '%s-%%'", p.db, sfx)); got != fmt.Sprint(nEvents+1) {
		t.Fatalf("after a replay, FINAL counts %s rows, want %d", got, nEvents+1)
	}
	time.Sleep(300 * time.Millisecond) // the processor has read past the replay (the sink has)
	_, body := p.get(t, "/v1/leads/"+lead, testSecret)
	view = leadapi.LeadView{}
	_ = json.Unmarshal([]byte(body), &view)
	if s := view.Models["default"].Score; !closeTo(s, decayedScore(view.AsOf), 1e-9) {
		t.Fatalf("after a replay the score is %v, want %v", s, wantScore)
	}
	if again := readMQL(t, p.brokers, p.kcfg.Topic(stream.TopicMQL), 0, 2*time.Second); len(again) != 1 {
		t.Fatalf("after a replay there are %d MQL records, want 1", len(again))
	}
}

// TestE2EErrors checks the status codes of the public contract.
func TestE2EErrors(t *testing.T) {
	p := startPipeline(t)
	f := func(path, auth, body string, wantCode int, wantInBody string) {
		t.Helper()
		code, got := p.post(t, path, auth, body)
		if code != wantCode || !strings.Contains(got, wantInBody) {
			t.Errorf("POST %s %.60q = %d %s, want %d containing %q", path, body, code, got, wantCode, wantInBody)
		}
	}
	ok := `{"userId":"u1","event":"Signed Up"}`
	f("/v1/track", "", ok, 401, "write key")
	f("/v1/track", "wrong-key", ok, 401, "write key")
	f("/v1/track", "", `{"writeKey":"`+testWriteKey+`","userId":"u1","event":"Signed Up"}`, 200, `"success":true`)
	f("/v1/track", testWriteKey, `{"userId":"u1"}`, 400, "track.event: is required")
	f("/v1/track", testWriteKey, `{"event":"x"}`, 400, "userId or anonymousId is required")
	f("/v1/track", testWriteKey, `{"userId":"u1","event":"x"`, 400, "malformed JSON")
	f("/v1/track", testWriteKey, `{"userId":"u1","event":"x","properties":[1]}`, 400, "track.properties: must be a JSON object")
	// A batch's bad message is refused alone; with no good one the batch is.
	f("/v1/batch", testWriteKey, `{"batch":[{"type":"track","userId":"u","event":"x"},{"type":"nope","userId":"u","messageId":"m2"}]}`, 200,
		`{"success":true,"accepted":1,"rejected":[{"index":1,"messageId":"m2","error":"batch[1].type: unknown type \"nope\" (want track, page, screen, identify, alias or group)"}],"rejected_count":1}`)
	f("/v1/b", testWriteKey, `{"batch":[{"type":"nope","userId":"u"}]}`, 400, `"code":"invalid_request","message":"batch: none of its 1 messages is valid (see rejected)"`)
	f("/v1/alias", testWriteKey, `{"userId":"u1"}`, 400, "alias needs both userId and previousId")
	big := `{"userId":"u1","event":"x","properties":{"p":"` + strings.Repeat("x", segment.MaxEventBytes) + `"}}`
	f("/v1/track", testWriteKey, big, 400, `"limit":"event_size_32KB"`)
	var many []string
	for range 20 {
		many = append(many, `{"type":"track","userId":"u1","event":"x","properties":{"p":"`+strings.Repeat("y", 30<<10)+`"}}`)
	}
	f("/v1/batch", testWriteKey, `{"batch":[`+strings.Join(many, ",")+`]}`, 400, `"limit":"batch_size_500KB"`)
	f("/v1/nope", testWriteKey, ok, 404, "no such endpoint")

	if code, _ := p.get(t, "/v1/leads/u1", ""); code != 401 {
		t.Errorf("lead API without the secret key = %d, want 401", code)
	}
	if code, _ := p.get(t, "/v1/leads/u1", testWriteKey); code != 401 {
		t.Errorf("lead API with a write key = %d, want 401", code)
	}
	if code, _ := p.get(t, "/v1/leads/nobody-"+fmt.Sprint(rand.Uint32()), testSecret); code != 404 {
		t.Errorf("lead API for an unknown lead = %d, want 404", code)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, body := p.get(t, path, ""); code != 200 {
			t.Errorf("GET %s = %d %s", path, code, body)
		}
	}
	if _, body := p.get(t, "/metrics", ""); !strings.Contains(body, "leadstream_collector_events_total") || !strings.Contains(body, "leadstream_processor_events_total") {
		t.Errorf("/metrics lacks the stage metrics")
	}
}

func readMQL(t *testing.T, brokers []string, topic string, want int, wait time.Duration) []event.MQL {
	t.Helper()
	out := readMQLUntil(t, brokers, topic, func(recs []event.MQL) bool { return want > 0 && len(recs) >= want }, wait)
	if want > 0 && len(out) < want {
		t.Fatalf("read %d MQL records from %s, want %d", len(out), topic, want)
	}
	return out
}

// readMQLUntil reads the mql topic from its start in a new consumer group
// until done says the records read so far are enough, or wait has passed.
func readMQLUntil(t *testing.T, brokers []string, topic string, done func([]event.MQL) bool, wait time.Duration) []event.MQL {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cons, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, Group: fmt.Sprintf("reader-%d", rand.Uint32()), Topics: []string{topic}, MaxWait: 10 * time.Millisecond},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.MQL
	_ = cons.Run(ctx, func(_ context.Context, batch []stream.Message) error {
		for _, m := range batch {
			var rec event.MQL
			if err := json.Unmarshal(m.Value, &rec); err != nil {
				t.Errorf("mql record is not JSON: %s", m.Value)
			}
			out = append(out, rec)
		}
		if done(out) {
			cancel()
		}
		return nil
	})
	return out
}

func clickhouseMaybe(addr, q string) string {
	out, err := exec.Command("clickhouse-client", "--host", "127.0.0.1", "--port", portOf(addr), "-q", q).CombinedOutput()
	if err != nil {
		return "error: " + string(bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out))
}

func closeTo(a, b, rel float64) bool {
	d := a - b
	if d < 0 {
		d = -d
	}
	return d <= rel*max(1, b)
}
