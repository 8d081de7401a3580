package ingest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/ingest/segment"
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
// the handler: check and split the batch, map each call to an event, encode it
// for Kafka.
func BenchmarkIngestPath(b *testing.B) {
	body := benchBatch(50)
	// A server key: the batch holds email clicks, which a browser key may
	// not send (hostile input).
	r := &segment.Request{WriteKeyID: "wk_1", Server: true, ReceivedAt: time.Date(2026, 11, 22, 16, 40, 0, 0, time.UTC)}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		batch, err := segment.Parse(body, "batch")
		if err != nil {
			b.Fatal(err)
		}
		events, rejected, err := batch.Events(r)
		if err != nil || len(rejected) > 0 || len(events) != 50 {
			b.Fatal(err, rejected)
		}
		if _, _, err := appendRecords(nil, events); err != nil {
			b.Fatal(err)
		}
		batch.Release()
	}
	b.ReportMetric(float64(b.N*50)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkIngestPathStdlib is the same work done the way the collector did it
// before the speed pass (encoding/json to decode and to encode), the baseline
// to compare BenchmarkIngestPath with in the same run.
func BenchmarkIngestPathStdlib(b *testing.B) {
	body := benchBatch(50)
	at := time.Date(2026, 11, 22, 16, 40, 0, 0, time.UTC)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	type page struct {
		URL      string `json:"url"`
		Path     string `json:"path"`
		Referrer string `json:"referrer"`
		Title    string `json:"title"`
	}
	for b.Loop() {
		var batch struct {
			Batch []json.RawMessage `json:"batch"`
		}
		if err := json.Unmarshal(body, &batch); err != nil {
			b.Fatal(err)
		}
		for _, raw := range batch.Batch {
			var m struct {
				MessageID  string          `json:"messageId"`
				Name       string          `json:"name"`
				Event      string          `json:"event"`
				Properties json.RawMessage `json:"properties"`
				Context    *struct {
					IP        string `json:"ip"`
					UserAgent string `json:"userAgent"`
					Page      *page  `json:"page"`
				} `json:"context"`
			}
			if err := json.Unmarshal(raw, &m); err != nil {
				b.Fatal(err)
			}
			e := &event.Event{ID: m.MessageID, Type: event.PageView, EventTime: at, ReceivedAt: at, WriteKeyID: "wk_1",
				Title: m.Name, Track: m.Event, Properties: m.Properties}
			if c := m.Context; c != nil {
				e.IP, e.UserAgent = c.IP, c.UserAgent
				if p := c.Page; p != nil {
					e.URL, e.Path, e.Referrer, e.Title = p.URL, p.Path, p.Referrer, p.Title
				}
				segment.FillFromURL(e)
			}
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*50)/b.Elapsed().Seconds(), "events/s")
}
