package notify

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

var quiet = testLogger()

func testLogger() *slog.Logger {
	if os.Getenv("NOTIFY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

const hookSecret = "receiver-secret-0123456789"

// receiver is an HTTP endpoint of the tests: answer decides each request's
// status from the record id and how often that id came before. It checks
// every request's signature and idempotency key.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	answer func(id string, n int) int
	delay  func(id string, n int) time.Duration

	mu       sync.Mutex
	attempts map[string]int       // per id: requests
	ok       map[string]int       // per id: requests answered 2xx
	bodies   map[string][]byte    // per id: the last body
	firstOK  map[string]time.Time // per id: when the first 2xx was answered
	after    map[string]int       // per id: requests that arrived after that
	bad      []string
}

func newReceiver(t *testing.T, answer func(id string, n int) int) *receiver {
	r := &receiver{t: t, answer: answer, attempts: map[string]int{}, ok: map[string]int{}, bodies: map[string][]byte{}, firstOK: map[string]time.Time{}, after: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id := req.Header.Get(HeaderIdempotencyKey)
	var env struct {
		Kind, ID string
		Text     string
	}
	_ = json.Unmarshal(body, &env)
	r.mu.Lock()
	if err := Verify([]byte(hookSecret), req.Header.Get(HeaderSignature), body, time.Now(), time.Minute); err != nil {
		r.bad = append(r.bad, "signature: "+err.Error())
	}
	if env.Text == "" && (env.ID != id || env.Kind != req.Header.Get(HeaderKind)) {
		r.bad = append(r.bad, fmt.Sprintf("idempotency key %q, kind %q for body %s", id, req.Header.Get(HeaderKind), body))
	}
	r.attempts[id]++
	n := r.attempts[id]
	if _, ok := r.firstOK[id]; ok {
		r.after[id]++
	}
	r.bodies[id] = body
	r.mu.Unlock()
	if r.delay != nil {
		if d := r.delay(id, n); d > 0 {
			select {
			case <-time.After(d):
			case <-req.Context().Done():
				return
			}
		}
	}
	code := r.answer(id, n)
	if code/100 == 2 {
		r.mu.Lock()
		r.ok[id]++
		if _, ok := r.firstOK[id]; !ok {
			r.firstOK[id] = time.Now()
		}
		r.mu.Unlock()
	}
	w.WriteHeader(code)
}

// delivered returns how many ids were answered 2xx, and the ids sent again
// after a 2xx answer. (A request whose 2xx comes after the notifier gave up
// waiting, its timeout, is no answer to it: the retry it sent meanwhile is
// not a repeat of a delivered record. The test destinations' timeouts are
// far from their receivers' answer times, so this is about the deliberately
// delayed answers.)
func (r *receiver) delivered() (int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var twice []string
	for id, n := range r.after {
		if n > 0 {
			twice = append(twice, id)
		}
	}
	return len(r.ok), twice
}

func (r *receiver) count(id string) (attempts, ok int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts[id], r.ok[id]
}

func (r *receiver) check() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.bad {
		r.t.Error(b)
	}
}

// env is a test's Kafka, ClickHouse and notifier configuration.
type env struct {
	brokers []string
	kcfg    stream.Config
	ch      warehouse.Config
}

func newEnv(t *testing.T) *env {
	t.Helper()
	_, ch := warehousetest.Open(t, "notifytest")
	brokers := testsvc.Kafka(t)
	kcfg := stream.Config{Brokers: brokers, TopicPrefix: fmt.Sprintf("n%d.", rand.Uint32()), Partitions: 4, ReplicationFactor: -1}
	if err := stream.EnsureTopics(context.Background(), kcfg); err != nil {
		t.Fatal(err)
	}
	return &env{brokers: brokers, kcfg: kcfg, ch: ch}
}

func (e *env) config() Config {
	return Config{Kafka: e.kcfg, ClickHouse: e.ch, MaxAge: 30 * time.Second, RetryMin: 50 * time.Millisecond, RetryMax: 300 * time.Millisecond,
		Timeout: 10 * time.Second, Concurrency: 4, MaxPending: 64, TopicCheck: 200 * time.Millisecond, DrainTimeout: 3 * time.Second}
}

// start runs a notifier until the returned stop is called (or the test ends).
func (e *env) start(t *testing.T, cfg Config, dests []Destination) (stop func() time.Duration) {
	t.Helper()
	n, err := New(cfg, dests, quiet, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	stopped := false
	stop = func() time.Duration {
		if stopped {
			return 0
		}
		stopped = true
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("notifier: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("notifier did not stop within 20s")
		}
		return time.Since(start)
	}
	t.Cleanup(func() { stop() })
	testsvc.Eventually(t, "notifier ready", 60*time.Second, 10*time.Millisecond, func() (bool, string) { return n.Ready(), "" })
	return stop
}

func (e *env) produce(t *testing.T, suffix string, recs ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	p, err := stream.NewProducer(ctx, e.kcfg.Producer(suffix), quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var out []stream.Record
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, stream.Record{Key: []byte(fmt.Sprint(rand.Uint32())), Value: b})
	}
	if err := p.Produce(ctx, out); err != nil {
		t.Fatal(err)
	}
}

// deadLetters reads the dead-letter topic from its start to its end.
func (e *env) deadLetters(t *testing.T) []map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := e.kcfg.Topic(stream.TopicDeadLetter)
	c := &kafka.Client{Addr: kafka.TCP(e.brokers...), Timeout: 10 * time.Second}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: nil}}
	for p := range e.kcfg.Partitions {
		req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p))
	}
	res, err := c.ListOffsets(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	ends := map[int32]int64{}
	for _, p := range res.Topics[topic] {
		if p.Error == nil && p.LastOffset > 0 {
			ends[int32(p.Partition)] = p.LastOffset
		}
	}
	if len(ends) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []map[string]any
	for len(ends) > 0 && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			var m map[string]any
			if err := json.Unmarshal(r.Value, &m); err != nil {
				t.Errorf("dead letter %s: %v", r.Value, err)
			}
			out = append(out, m)
			if r.Offset+1 >= ends[r.Partition] {
				delete(ends, r.Partition)
			}
		})
	}
	if len(ends) > 0 {
		t.Fatalf("dead-letter topic not read to its end within 30s")
	}
	return out
}

func mql(i int, model string) event.MQL {
	lead := fmt.Sprintf("lead-%d@acme.example", i)
	trigger := fmt.Sprintf("ev-%d-%d", i, rand.Uint32())
	return event.MQL{MQLID: event.MQLID(lead, model, trigger), LeadID: lead, Model: model, Score: 100 + float64(i), Threshold: 100,
		CrossedAt: time.Now().UTC().Truncate(time.Millisecond), TriggerEventID: trigger,
		Reasons: []event.Reason{{Rule: "form-submit", Points: 30}, {Rule: "senior-title", Points: 20}, {Rule: "pricing-page", Points: 45}, {Rule: "careers-page", Points: -5}}}
}

func hook(name, url string) Destination {
	return Destination{Name: name, Type: TypeWebhook, URL: url, Secret: []byte(hookSecret)}
}

// Webhooks (200; 500 then 200; a timeout then 200; 410; always 503), a
// Slack-compatible one and e-mail through SMTP, all fed by the same topics:
// every record reaches every destination that answers, none twice to one
// that answered 200, the dead one is dead-lettered at max-age without
// holding back the others, the 410 one at once, every attempt is in
// ClickHouse, the mqa topic is consumed once it exists, and after a restart
// nothing is delivered again.
func TestNotifier(t *testing.T) {
	e := newEnv(t)
	const n = 24
	ok := newReceiver(t, func(string, int) int { return 200 })
	flaky := newReceiver(t, func(_ string, n int) int { return map[bool]int{true: 500, false: 200}[n == 1] })
	slow := newReceiver(t, func(string, int) int { return 200 })
	slowIDs := map[string]bool{} // the first attempt of these times out
	slow.delay = func(id string, n int) time.Duration {
		if n == 1 && slowIDs[id] {
			return 20 * time.Second // beyond its 5 s timeout
		}
		return 0
	}
	gone := newReceiver(t, func(string, int) int { return 410 })
	dead := newReceiver(t, func(string, int) int { return 503 })
	slack := newReceiver(t, func(string, int) int { return 200 })
	smtp := startSMTP(t)
	smtp.failFirst[1], smtp.failFirst[2] = true, true
	caPool := mustPool(t, smtp.caFile)

	okDest := hook("ok", ok.srv.URL)
	okDest.Models = []string{"default"}
	slackDest := Destination{Name: "slack", Type: TypeSlack, URL: slack.srv.URL, Secret: []byte(hookSecret), Kinds: []string{KindMQL}}
	min := 110.0
	slackDest.MinScore = &min
	host, port := splitAddr(t, smtp.addr)
	mail := Destination{Name: "mail", Type: TypeEmail, Kinds: []string{KindMQL}, From: "leadstream@acme.example", To: []string{"sales@acme.example", "ops@acme.example"},
		SMTP: SMTPConfig{Host: host, Port: port, StartTLS: StartTLSRequired, Username: smtp.user, Password: smtp.pass, RootCAs: caPool}}
	slowDest := hook("slow", slow.srv.URL)
	// Long enough that only the delayed first attempts time out on a loaded
	// machine (an answer that arrives after the timeout is, for the
	// notifier, no answer: it tries again).
	slowDest.Timeout = 5 * time.Second
	dests := []Destination{okDest, hook("flaky", flaky.srv.URL), slowDest, hook("gone", gone.srv.URL), hook("dead", dead.srv.URL), slackDest, mail}

	var recs []any
	var ids []string
	for i := range n {
		m := mql(i, "default")
		recs = append(recs, m)
		ids = append(ids, m.MQLID)
	}
	for _, id := range ids[:8] {
		slowIDs[id] = true
	}
	other := mql(99, "other") // not for "ok" (models: [default])
	recs = append(recs, other)
	e.produce(t, stream.TopicMQL, recs...)
	published := time.Now()
	stop := e.start(t, e.config(), dests)

	testsvc.Eventually(t, "ok receives every default-model record", 60*time.Second, 10*time.Millisecond, all(ok, n))
	okDone := time.Now()
	testsvc.Eventually(t, "flaky receives every record after a 500", 60*time.Second, 20*time.Millisecond, all(flaky, n+1))
	testsvc.Eventually(t, "slow receives every record after a timeout", 60*time.Second, 20*time.Millisecond, all(slow, n+1))
	testsvc.Eventually(t, "slack receives the records scoring >= 110", 60*time.Second, 20*time.Millisecond, all(slack, n-10+1))
	testsvc.Eventually(t, "every record mailed", 60*time.Second, 20*time.Millisecond, func() (bool, string) {
		return len(smtp.received()) >= n+1, fmt.Sprint(len(smtp.received()))
	})
	deadOf := func(dest string) []map[string]any {
		var out []map[string]any
		for _, d := range e.deadLetters(t) {
			if strings.Contains(fmt.Sprint(d["reason"]), fmt.Sprintf("destination %q", dest)) {
				out = append(out, d)
			}
		}
		return out
	}
	testsvc.Eventually(t, "gone and dead dead-lettered", 60*time.Second, 200*time.Millisecond, func() (bool, string) {
		g, d := deadOf("gone"), deadOf("dead")
		return len(g) == n+1 && len(d) == n+1, fmt.Sprintf("gone %d dead %d", len(g), len(d))
	})
	for _, d := range deadOf("gone") {
		if !strings.Contains(d["reason"].(string), "HTTP 410 Gone (not retried)") || d["source_topic"] != e.kcfg.Topic(stream.TopicMQL) {
			t.Errorf("gone's dead letter: %v", d)
		}
	}
	for _, d := range deadOf("dead") {
		if !strings.Contains(d["reason"].(string), "not delivered within notify.max-age (30s)") || !strings.Contains(d["reason"].(string), "HTTP 503") {
			t.Errorf("dead's dead letter: %v", d)
		}
	}
	// The dead destination gave up at max-age; the ok one was done before
	// it even could: it was not held back.
	if gaveUp := published.Add(30 * time.Second); !okDone.Before(gaveUp) {
		t.Errorf("the ok destination was done %v after the records were published, after the dead one gave up", okDone.Sub(published))
	}
	for _, id := range ids {
		if a, _ := gone.count(id); a != 1 {
			t.Errorf("410 answered %d times for %s: want no retry", a, id)
		}
		if a, _ := dead.count(id); a < 3 {
			t.Errorf("the dead destination saw %d attempts of %s: want retries until max-age", a, id)
		}
		if a, o := flaky.count(id); a != 2 || o != 1 {
			t.Errorf("flaky: %d attempts, %d ok for %s", a, o, id)
		}
	}
	if a, _ := ok.count(other.MQLID); a != 0 {
		t.Errorf("the other model's record reached the ok destination (models: [default])")
	}

	// Accounts: MQA records on the mqa topic reach the destinations that
	// take them (no kinds filter, or kinds: [mqa]).
	mqaRec := event.MQA{MQAID: "mqa-1", AccountID: "acme.example", Model: "default", Score: 250, Threshold: 200,
		CrossedAt: time.Now().UTC().Truncate(time.Millisecond), TriggerEventID: "ev-9", EngagedMembers: 3,
		Reasons: []event.Reason{{Rule: "pricing-page", Points: 90}}, TopMembers: []event.Member{{LeadID: "cto@acme.example", Points: 120}}}
	e.produce(t, stream.TopicMQA, mqaRec)
	testsvc.Eventually(t, "ok receives the mqa record", 60*time.Second, 20*time.Millisecond, func() (bool, string) {
		_, o := ok.count("mqa-1")
		return o == 1, ""
	})
	var body struct {
		Kind, ID string
		Record   map[string]any
	}
	ok.mu.Lock()
	_ = json.Unmarshal(ok.bodies["mqa-1"], &body)
	ok.mu.Unlock()
	if body.Kind != KindMQA || body.ID != "mqa-1" || body.Record["account_id"] != "acme.example" {
		t.Errorf("mqa webhook body %+v", body)
	}
	if a, _ := slack.count("mqa-1"); a != 0 {
		t.Error("slack (kinds: [mql]) got the mqa record")
	}

	var twiceAll []string
	for name, r := range map[string]*receiver{"ok": ok, "flaky": flaky, "slow": slow, "slack": slack, "gone": gone, "dead": dead} {
		r.check()
		if _, twice := r.delivered(); len(twice) > 0 {
			t.Errorf("%s: delivered twice after a 200: %v", name, twice)
			twiceAll = append(twiceAll, twice...)
		}
	}
	// Slack gets text with the top reasons.
	slack.mu.Lock()
	var sl struct{ Text string }
	_ = json.Unmarshal(slack.bodies[ids[n-1]], &sl)
	slack.mu.Unlock()
	if !strings.Contains(sl.Text, "MQL: lead lead-23@acme.example scored 123 (threshold 100, model default)") || !strings.Contains(sl.Text, "pricing-page +45") {
		t.Errorf("slack text %q", sl.Text)
	}
	// One e-mail per record, with its reasons, sent over STARTTLS with AUTH.
	perID := map[string]int{}
	for _, m := range smtp.received() {
		for _, l := range strings.Split(m, "\r\n") {
			if id, ok := strings.CutPrefix(l, HeaderIdempotencyKey+": "); ok {
				perID[id]++
			}
		}
		if !strings.Contains(m, "Top reasons:") || !strings.Contains(m, "form-submit +30") || !strings.Contains(m, "To: sales@acme.example, ops@acme.example") {
			t.Errorf("mail without its reasons:\n%s", m)
		}
	}
	for _, id := range append(ids, other.MQLID) {
		if perID[id] != 1 {
			t.Errorf("%d mails for %s", perID[id], id)
		}
	}

	// Every attempt is in ClickHouse.
	conn, err := warehouse.Open(context.Background(), e.ch)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if len(twiceAll) > 0 {
		rows, err := conn.Query(context.Background(), "SELECT destination, mql_id, attempt, status, http_status, error, latency_ms FROM "+e.ch.Database+".notifications FINAL WHERE destination IN ('slow', 'flaky', 'ok') AND (status != 'delivered' OR mql_id IN ('"+strings.Join(twiceAll, "', '")+"')) ORDER BY destination, mql_id, attempt")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var d, id, st, er string
			var a, lat uint32
			var code uint16
			_ = rows.Scan(&d, &id, &a, &st, &code, &er, &lat)
			t.Logf("attempt: %s %s #%d %s %d %q %dms", d, id, a, st, code, er, lat)
		}
		rows.Close()
	}
	attemptsIn := func(q string) string {
		rows, err := conn.Query(context.Background(), "SELECT destination, status, toUInt64(count()) FROM "+e.ch.Database+".notifications FINAL "+q+" GROUP BY destination, status ORDER BY destination, status")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var b strings.Builder
		for rows.Next() {
			var d, s string
			var c uint64
			if err := rows.Scan(&d, &s, &c); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s %s %d\n", d, s, c)
		}
		return b.String()
	}
	counts := func(q string) map[string]int {
		out := map[string]int{}
		for _, l := range strings.Split(strings.TrimSpace(attemptsIn(q)), "\n") {
			var d, st string
			var c int
			if _, err := fmt.Sscanf(l, "%s %s %d", &d, &st, &c); err == nil {
				out[st] = c
			}
		}
		return out
	}
	// The destinations without a kinds filter also got the mqa record.
	want := fmt.Sprintf("gone rejected %d\nok delivered %d\nslack delivered %d\n", n+2, n+1, n-10+1)
	testsvc.Eventually(t, "attempts in clickhouse", 60*time.Second, 200*time.Millisecond, func() (bool, string) {
		got := attemptsIn("WHERE destination IN ('gone', 'ok', 'slack')")
		return got == want, got
	})
	// flaky and slow: every record delivered once, after a failure for each
	// first attempt (flaky: 500) or delayed one (slow: timeout), and every
	// request the receiver saw is a row (a loaded machine may add timeouts);
	// mail: every record, after the two 451s.
	for name, c := range map[string]struct {
		r                  *receiver
		delivered, retries int
	}{"flaky": {flaky, n + 2, n + 2}, "slow": {slow, n + 2, 8}, "mail": {nil, n + 1, 2}} {
		var seen int
		if c.r != nil {
			for _, id := range append(ids, other.MQLID, mqaRec.MQAID) {
				a, _ := c.r.count(id)
				seen += a
			}
		}
		testsvc.Eventually(t, name+"'s attempts in clickhouse", 30*time.Second, 200*time.Millisecond, func() (bool, string) {
			got := counts("WHERE destination = '" + name + "'")
			ok := got["delivered"] == c.delivered && got["retry"] >= c.retries && len(got) == 2
			if c.r != nil {
				ok = ok && got["delivered"]+got["retry"] == seen
			}
			return ok, fmt.Sprintf("%v; want %d delivered, at least %d retries; the receiver saw %d requests", got, c.delivered, c.retries, seen)
		})
	}
	var deadAttempts int
	for _, id := range append(ids, other.MQLID) {
		a, _ := dead.count(id)
		deadAttempts += a
	}
	// (The mqa record may still be in its retries: mql only.)
	testsvc.Eventually(t, "dead's attempts in clickhouse", 30*time.Second, 200*time.Millisecond, func() (bool, string) {
		dc := counts("WHERE destination = 'dead' AND kind = 'mql'")
		return dc["expired"]+dc["retry"] == deadAttempts && dc["retry"] > 0 && len(dc) <= 2, fmt.Sprintf("%v, want %d in all", dc, deadAttempts)
	})
	var slow1 string
	if err := conn.QueryRow(context.Background(), "SELECT any(error) FROM "+e.ch.Database+".notifications WHERE destination = 'slow' AND status = 'retry'").Scan(&slow1); err != nil || slow1 != "timeout" {
		t.Errorf("slow's first attempts: error %q (%v), want timeout", slow1, err)
	}

	// Stop (promptly), start again: committed work is not delivered again.
	if took := stop(); took > 10*time.Second {
		t.Errorf("stopping took %v", took)
	}
	before, _ := ok.delivered()
	stop = e.start(t, e.config(), []Destination{okDest})
	fresh := mql(1000, "default")
	e.produce(t, stream.TopicMQL, fresh)
	testsvc.Eventually(t, "the fresh record after a restart", 60*time.Second, 10*time.Millisecond, func() (bool, string) {
		_, o := ok.count(fresh.MQLID)
		return o == 1, ""
	})
	time.Sleep(500 * time.Millisecond)
	if after, twice := ok.delivered(); after != before+1 || len(twice) > 0 {
		t.Errorf("after the restart: %d delivered (was %d), twice %v", after, before, twice)
	}
	stop()
}

// Records a destination could not deliver when the notifier stopped are
// delivered after it starts again: nothing is committed before it is done.
func TestNotifierRedeliversAfterRestart(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	up := false
	r := newReceiver(t, func(string, int) int {
		mu.Lock()
		defer mu.Unlock()
		return map[bool]int{true: 200, false: 503}[up]
	})
	cfg := e.config()
	cfg.MaxAge = time.Hour
	var recs []any
	var ids []string
	for i := range 10 {
		m := mql(i, "default")
		recs = append(recs, m)
		ids = append(ids, m.MQLID)
	}
	e.produce(t, stream.TopicMQL, recs...)
	stop := e.start(t, cfg, []Destination{hook("crm", r.srv.URL)})
	testsvc.Eventually(t, "every record attempted", 60*time.Second, 20*time.Millisecond, func() (bool, string) {
		for _, id := range ids {
			if a, _ := r.count(id); a < 2 {
				return false, id
			}
		}
		return true, ""
	})
	if took := stop(); took > 5*time.Second {
		t.Errorf("stopping with records waiting to retry took %v", took)
	}
	mu.Lock()
	up = true
	mu.Unlock()
	stop = e.start(t, cfg, []Destination{hook("crm", r.srv.URL)})
	testsvc.Eventually(t, "every record delivered after the restart", 60*time.Second, 20*time.Millisecond, all(r, 10))
	stop()
	if got, twice := r.delivered(); got != 10 || len(twice) > 0 {
		t.Errorf("delivered %d, twice %v", got, twice)
	}
	r.check()
	if dl := e.deadLetters(t); len(dl) != 0 {
		t.Errorf("dead letters: %v", dl)
	}
}

func all(r *receiver, want int) func() (bool, string) {
	return func() (bool, string) {
		got, _ := r.delivered()
		return got >= want, fmt.Sprintf("%d of %d", got, want)
	}
}

func splitAddr(t *testing.T, addr string) (string, int) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	var port int
	fmt.Sscanf(addr[i+1:], "%d", &port)
	return addr[:i], port
}

func mustPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatal("no certificate")
	}
	return p
}
