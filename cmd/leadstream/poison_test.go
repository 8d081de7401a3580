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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadapi"
	"github.com/leadstream/leadstream/stream"
)

// TestE2EPoisonRecords sends each kind of record that can never be stored
// into a running pipeline — a record that does not decode, an identify whose
// traits hold 1e400, a row ClickHouse refuses, a batch of events in 120
// months (more partitions than modern ClickHouse takes in one INSERT) — then
// a normal event, which must score and land: nothing a sender can put on the
// events topic stalls the processor or the sink. The first two are produced
// straight to Kafka, as an older collector or another producer could (the
// collector refuses non-finite numbers itself); the others go through HTTP.
func TestE2EPoisonRecords(t *testing.T) {
	p := startPipeline(t)
	sfx := fmt.Sprintf("%d", rand.Uint32())
	ctx := context.Background()

	// ClickHouse 18.16 refuses nothing the sink sends, so the test narrows
	// the events table as a constraint on a modern server would.
	eventually(t, "schema migrated", 20*time.Second, func() (bool, string) {
		out := clickhouseMaybe(p.chAddr, fmt.Sprintf("SELECT count() FROM system.columns WHERE database = '%s' AND table = 'events' AND name = 'integrations'", p.db))
		return out == "1", out
	})
	clickhouse(t, p.chAddr, fmt.Sprintf("ALTER TABLE %s.events ADD COLUMN refuse UInt8 MATERIALIZED throwIf(track = 'Poison Pill')", p.db))

	// 1 and 2: straight to the events topic.
	infLead := "inf-" + sfx
	identify := event.Event{ID: sfx + "-inf", Type: event.Identify, EventTime: time.Now().UTC().Truncate(time.Millisecond), LeadID: infLead,
		Traits: json.RawMessage(`{"title":"CTO","employees":1e400}`)}
	identify.ReceivedAt = identify.EventTime
	val, err := event.Marshal(&identify)
	if err != nil {
		t.Fatal(err)
	}
	notEvent := []byte(`{"event_id":"` + sfx + `-broken","type":`)
	prod, err := stream.NewProducer(ctx, p.kcfg.Producer(stream.TopicEvents), slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.Produce(ctx, []stream.Record{{Key: []byte(infLead), Value: val}, {Key: []byte("broken"), Value: notEvent}}); err != nil {
		t.Fatal(err)
	}

	// 3: a row ClickHouse refuses; 4: events in 120 months in one batch.
	monthsLead := "months-" + sfx
	if code, body := p.post(t, "/v1/track", testWriteKey, fmt.Sprintf(`{"userId":"poison-%s","event":"Poison Pill","messageId":"%s-pill"}`, sfx, sfx)); code != 200 {
		t.Fatalf("POST /v1/track = %d %s", code, body)
	}
	var msgs []string
	for m := range 120 {
		ts := time.Date(2016, time.Month(1+m), 10, 12, 0, 0, 0, time.UTC).Format(time.RFC3339)
		msgs = append(msgs, fmt.Sprintf(`{"type":"page","userId":%q,"messageId":"%s-m%d","timestamp":%q,"properties":{"url":"https://acme.example/docs"}}`, monthsLead, sfx, m, ts))
	}
	if code, body := p.post(t, "/v1/batch", testWriteKey, `{"batch":[`+strings.Join(msgs, ",")+`]}`); code != 200 || !strings.Contains(body, `"accepted":120`) {
		t.Fatalf("POST /v1/batch of 120 months = %d %s", code, body)
	}

	// Then a normal event: it scores and lands.
	lead := "after-" + sfx
	if code, body := p.post(t, "/v1/track", testWriteKey, fmt.Sprintf(`{"userId":%q,"event":"Form Submitted","messageId":"%s-fs","properties":{"form":"demo"}}`, lead, sfx)); code != 200 {
		t.Fatalf("POST /v1/track = %d %s", code, body)
	}
	eventually(t, "the normal event scored", 30*time.Second, func() (bool, string) {
		code, body := p.get(t, "/v1/leads/"+lead, testSecret)
		var v leadapi.LeadView
		_ = json.Unmarshal([]byte(body), &v)
		return code == 200 && v.Models["default"].Score > 29, fmt.Sprint(code, body)
	})
	eventually(t, "the normal event and the 120 months stored", 30*time.Second, func() (bool, string) {
		out := clickhouseMaybe(p.chAddr, fmt.Sprintf("SELECT countIf(lead_id = '%s'), countIf(lead_id = '%s'), uniqExactIf(toYYYYMM(event_time), lead_id = '%s'), countIf(lead_id = '%s') FROM %s.events FINAL",
			lead, monthsLead, monthsLead, infLead, p.db))
		return out == "1\t120\t120\t1", out
	})
	if n := clickhouse(t, p.chAddr, fmt.Sprintf("SELECT count() FROM %s.events WHERE track = 'Poison Pill'", p.db)); n != "0" {
		t.Fatalf("%s refused rows stored", n)
	}
	if code, _ := p.get(t, "/v1/leads/"+infLead, testSecret); code != 404 {
		t.Errorf("lead API for the lead of the dead-lettered identify = %d, want 404 (nothing scored)", code)
	}

	// Each poison record is on the dead-letter topic with its reason: the
	// broken record twice (both stages read it), the identify from the
	// processor, the refused row from the sink.
	type dl struct{ Reason, Value string }
	var got []dl
	for _, m := range readRecords(t, p.brokers, p.kcfg.Topic(stream.TopicDeadLetter), 4, 20*time.Second) {
		var d dl
		if err := json.Unmarshal(m.Value, &d); err != nil {
			t.Fatalf("dead letter %s: %v", m.Value, err)
		}
		got = append(got, d)
	}
	count := func(valuePart, reasonPart string) int {
		n := 0
		for _, d := range got {
			if strings.Contains(d.Value, valuePart) && strings.Contains(d.Reason, reasonPart) {
				n++
			}
		}
		return n
	}
	if count(string(notEvent), "decoding") != 2 || count(sfx+"-inf", "1e400") != 1 || count(sfx+"-pill", "clickhouse refused the row of events: code: 395") != 1 {
		t.Fatalf("dead letters %+v: want the broken record twice, the identify (1e400) and the refused row", got)
	}
}

// readRecords reads a topic from the beginning with a new group until it has
// want records (or wait passed).
func readRecords(t *testing.T, brokers []string, topic string, want int, wait time.Duration) []stream.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cons, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, Group: fmt.Sprintf("reader-%d", rand.Uint32()), Topics: []string{topic}, MaxWait: 10 * time.Millisecond},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []stream.Message
	_ = cons.Run(ctx, func(_ context.Context, batch []stream.Message) error {
		out = append(out, batch...)
		if len(out) >= want {
			cancel()
		}
		return nil
	})
	if len(out) < want {
		t.Fatalf("read %d records from %s, want %d", len(out), topic, want)
	}
	return out
}
