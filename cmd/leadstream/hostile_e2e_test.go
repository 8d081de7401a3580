package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/leadapi"
	"github.com/leadstream/leadstream/stream"
)

// TestE2EHostileInput posts, with a public (browser) write key, what must
// never reach the pipeline — a number no float64 holds, revenue, a forged
// email open, an alias — then a normal visit: the hostile calls are refused
// with their reasons, nothing of them is dead-lettered or stored, and the
// normal events are scored and land in ClickHouse (client address cut to its
// network).
func TestE2EHostileInput(t *testing.T) {
	p := startPipeline(t)
	lead := fmt.Sprintf("hostile-%d@example.com", rand.Uint32())
	code, body := p.post(t, "/v1/identify", testBrowserKey, `{"userId":"`+lead+`","traits":{"n":1e400}}`)
	if code != 400 || !strings.Contains(body, "identify.traits.n: the number 1e400 is not finite as a 64-bit float") {
		t.Fatalf("poison identify: %d %s", code, body)
	}
	code, body = p.post(t, "/v1/batch", testBrowserKey, `{"batch":[
		{"type":"identify","userId":"`+lead+`","messageId":"`+lead+`-i","traits":{"title":"VP","employees":1e999}},
		{"type":"track","userId":"`+lead+`","messageId":"`+lead+`-d","event":"Deal Won","properties":{"revenue":1000000}},
		{"type":"track","userId":"`+lead+`","messageId":"`+lead+`-o","event":"Email Opened"},
		{"type":"alias","userId":"`+lead+`","previousId":"someone-else","messageId":"`+lead+`-a"},
		{"type":"page","userId":"`+lead+`","messageId":"`+lead+`-p","properties":{"url":"https://acme.example/pricing"}}]}`)
	if code != 200 || !strings.HasPrefix(body, `{"success":true,"accepted":1,"rejected":[{"index":0,"messageId":"`+lead+`-i","error":"batch[0].traits.employees: the number 1e999`) ||
		strings.Count(body, "needs a server write key") != 3 {
		t.Fatalf("batch: %d %s", code, body)
	}
	if code, body := p.post(t, "/v1/track", testBrowserKey, `{"userId":"`+lead+`","messageId":"`+lead+`-f","event":"Form Submitted","properties":{"form":"demo"}}`); code != 200 {
		t.Fatalf("normal event: %d %s", code, body)
	}
	// page view 5 + pricing 15 + form 30: scored, as if nothing else was sent.
	eventually(t, "the normal events scored", 20*time.Second, func() (bool, string) {
		code, body := p.get(t, "/v1/leads/"+lead, testSecret)
		var v leadapi.LeadView
		_ = json.Unmarshal([]byte(body), &v)
		m := v.Models["default"]
		return code == 200 && closeTo(m.Behaviour, 50, 1e-4) && m.Fit == 0 && len(m.TopRules) == 3, fmt.Sprint(code, body)
	})
	q := fmt.Sprintf("SELECT event_id, type, ip FROM %s.events FINAL WHERE lead_id = '%s' ORDER BY event_id", p.db, lead)
	eventually(t, "the normal events in clickhouse", 20*time.Second, func() (bool, string) {
		out := clickhouseMaybe(p.chAddr, q)
		return out == lead+"-f\tform_submit\t127.0.0.0\n"+lead+"-p\tpage_view\t127.0.0.0", out
	})
	if n := countRecords(t, p.brokers, p.kcfg.Topic(stream.TopicDeadLetter), time.Second); n != 0 {
		t.Fatalf("%d dead letters: the refused calls reached Kafka", n)
	}
}

// countRecords counts what topic holds, reading for wait.
func countRecords(t *testing.T, brokers []string, topic string, wait time.Duration) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cons, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, Group: fmt.Sprintf("count-%d", rand.Uint32()), Topics: []string{topic}, MaxWait: 10 * time.Millisecond},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = cons.Run(ctx, func(_ context.Context, batch []stream.Message) error {
		n += len(batch)
		return nil
	})
	return n
}
