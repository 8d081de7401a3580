package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/stream"
)

// A lead id is whatever a visitor sent as userId (any string up to 256
// bytes, browser keys included). Slack's incoming webhooks read <…> in
// "text" as control sequences (<!channel>, <https://x|label>) and require
// &, <, > to be escaped as &amp; &lt; &gt;: a hostile lead id pings the
// whole sales channel and shows a disguised link.
func TestSlackTextEscapesLeadID(t *testing.T) {
	m := mql(1, "default")
	m.LeadID = "<!channel> <https://evil.example/login|Open lead in CRM>"
	b, _ := json.Marshal(m)
	rec, err := decodeRecord(KindMQL, b)
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Text string }
	if err := json.Unmarshal(rec.slackBody(), &body); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(body.Text, "<!channel>") || strings.Contains(body.Text, "<https://evil.example") {
		t.Errorf("slack text carries the lead id's control sequences unescaped:\n%s", body.Text)
	}
}

// README: "A file it cannot use … stops the notifier at start". A header
// value with a control character other than CR/LF (here a NUL left in a
// token file) passes ParseFile, and then every request fails inside
// net/http ("invalid header field value") as a *connection* error: each
// record is retried for notify.max-age (24 h) and then dead-lettered.
func TestHeaderControlCharRefusedAtStart(t *testing.T) {
	res := resolver{env: testResolver.env, readFile: func(p string) ([]byte, error) {
		if p == "/run/token" {
			return []byte("crm-token\x00\n"), nil
		}
		return testResolver.readFile(p)
	}}
	ds, err := parseFile("n.yaml", []byte(`
destinations:
  - name: crm
    type: webhook
    url: https://hooks.acme.example/leadstream
    headers: {Authorization: {file: /run/token}}
    secret: {file: /run/secret}
`), res)
	if err == nil {
		w := newWebSender(&ds[0], 1, "test")
		m := mql(1, "default")
		b, _ := json.Marshal(m)
		rec, _ := decodeRecord(KindMQL, b)
		o := w.send(context.Background(), rec, 1)
		t.Errorf("a header value with a NUL passed the file check; each attempt then: permanent=%v err=%q (retried until max-age)", o.permanent, o.err)
	}
}

// README: "One slow or dead destination never delays the others.
// Destinations share no queue". They share the recorder's queue (20,000
// rows) and add() blocks when it is full: with ClickHouse down, a dead
// destination's retries fill it and a healthy destination stops
// delivering. (Defaults: 1,000 records of a dead destination retrying fill
// it in well under an hour of ClickHouse outage.)
func TestClickHouseDownDeadDestinationDoesNotStallOthers(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0") // ClickHouse "down": accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cfg := e.config()
	cfg.ClickHouse.Addr = ln.Addr().String()
	cfg.ClickHouse.DialTimeout = time.Second
	cfg.RetryMin, cfg.RetryMax = time.Millisecond, 2*time.Millisecond
	cfg.MaxAge = time.Hour
	dead := newReceiver(t, func(string, int) int { return 503 })
	ok := newReceiver(t, func(string, int) int { return 200 })
	okDest := hook("ok", ok.srv.URL)
	okDest.Models = []string{"healthy"}
	deadDest := hook("dead", dead.srv.URL)
	deadDest.Models = []string{"default"}
	var recs []any
	for i := range 64 {
		recs = append(recs, mql(i, "default"))
	}
	e.produce(t, stream.TopicMQL, recs...)
	stop := e.start(t, cfg, []Destination{okDest, deadDest})
	defer stop()
	// The dead destination retries until its rows fill its share of the
	// queue and it waits (or, were the queue shared, fill all of it).
	attempts := func() int {
		dead.mu.Lock()
		defer dead.mu.Unlock()
		n := 0
		for _, a := range dead.attempts {
			n += a
		}
		return n
	}
	last := -1
	testsvc.Eventually(t, "the dead destination's retries fill the recorder queue (or its share)", 120*time.Second, time.Second, func() (bool, string) {
		n := attempts()
		done := n >= recordQueue+recordBatch || n >= recordQueue/2 && n == last
		last = n
		return done, fmt.Sprint(n)
	})
	var fresh []any
	for i := range cfg.MaxPending + 16 {
		fresh = append(fresh, mql(1000+i, "healthy"))
	}
	e.produce(t, stream.TopicMQL, fresh...)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if n, _ := ok.delivered(); n == len(fresh) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	n, _ := ok.delivered()
	t.Errorf("the healthy destination delivered %d of %d records within 20s (it stops at notify.max-pending = %d: each delivery then waits in recorder.add), while the dead destination retried with ClickHouse down", n, len(fresh), cfg.MaxPending)
}
