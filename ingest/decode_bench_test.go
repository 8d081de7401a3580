package ingest

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
)

// benchBatch is a /v1/batch body of n events shaped like analytics.js traffic.
func benchBatch(n int) []byte {
	var msgs []string
	for i := range n {
		if i%2 == 0 {
			msgs = append(msgs, fmt.Sprintf(`{"type":"page","messageId":"ajs-next-%d-1a2b3c4d5e","anonymousId":"0b7c9d3e-5f61-4a2b-9c8d-%012d","timestamp":"2026-11-22T16:39:58.120Z","properties":{"url":"https://acme.example/pricing?utm_source=google&utm_medium=cpc&utm_campaign=spring","path":"/pricing","title":"Pricing — Acme","referrer":"https://www.google.com/"},"context":{"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36","page":{"url":"https://acme.example/pricing?utm_source=google&utm_medium=cpc&utm_campaign=spring","path":"/pricing","title":"Pricing — Acme","referrer":"https://www.google.com/"},"library":{"name":"analytics.js","version":"1.0"}}}`, i, i))
		} else {
			msgs = append(msgs, fmt.Sprintf(`{"type":"track","messageId":"ajs-next-%d-1a2b3c4d5e","userId":"lead-%d@example.com","event":"Email Link Clicked","timestamp":"2026-11-22T16:39:58.120Z","properties":{"campaign":"nurture-1","url":"https://acme.example/webinar"},"context":{"ip":"198.51.100.7"}}`, i, i))
		}
	}
	return []byte(`{"batch":[` + strings.Join(msgs, ",") + `],"sentAt":"2026-11-22T16:39:58.300Z"}`)
}

// BenchmarkIngestPath is the collector's CPU path for one 50-event batch, as in
// the handler: decode the batch, map each call to an event, encode it for Kafka.
func BenchmarkIngestPath(b *testing.B) {
	body := benchBatch(50)
	r := &request{writeKeyID: "wk_1", receivedAt: time.Date(2026, 11, 22, 16, 40, 0, 0, time.UTC)}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := validJSON(body); err != nil {
			b.Fatal(err)
		}
		batch, err := decodeBatch(body)
		if err != nil {
			b.Fatal(err)
		}
		events := make([]*event.Event, 0, len(batch.Batch))
		for i, raw := range batch.Batch {
			e, err := decodeMessage(raw, "batch["+strconv.Itoa(i)+"]", "", r)
			if err != nil {
				b.Fatal(err)
			}
			events = append(events, e)
		}
		if _, _, err := appendRecords(nil, events); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*50)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkIngestPathStdlib is the same work done the way the collector did it
// before the speed pass (encoding/json to decode and to encode), the baseline
// to compare BenchmarkIngestPath with in the same run.
func BenchmarkIngestPathStdlib(b *testing.B) {
	body := benchBatch(50)
	r := &request{writeKeyID: "wk_1", receivedAt: time.Date(2026, 11, 22, 16, 40, 0, 0, time.UTC)}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var batch struct {
			Batch []json.RawMessage `json:"batch"`
		}
		if err := json.Unmarshal(body, &batch); err != nil {
			b.Fatal(err)
		}
		for _, raw := range batch.Batch {
			var m segMessage
			if err := json.Unmarshal(raw, &m); err != nil {
				b.Fatal(err)
			}
			e := &event.Event{ID: m.MessageID, Type: event.PageView, EventTime: r.receivedAt, ReceivedAt: r.receivedAt, WriteKeyID: r.writeKeyID,
				Title: m.Name, Track: m.Event, Properties: json.RawMessage(m.Properties)}
			if m.Context != nil {
				applyContext(e, m.Context)
			}
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*50)/b.Elapsed().Seconds(), "events/s")
}
