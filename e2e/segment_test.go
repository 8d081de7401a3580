package e2e

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	analytics "github.com/segmentio/analytics-go/v3"
)

// TestE2ESegmentSDKs sends with Segment's own SDKs, nobody here wrote them,
// changing only where they send: analytics.js (Analytics Next, in headless
// Chromium, with the collector as its CDN) and analytics-go (with the
// collector as its endpoint); and checks what the pipeline made of it.
func TestE2ESegmentSDKs(t *testing.T) {
	d := startDev(t)
	run := fmt.Sprintf("%d", rand.Uint32())
	ev := d.db + ".events FINAL"
	user := func(who string) string { return fmt.Sprintf("%s-%s@e2e.example", who, run) }
	scenarios := []map[string]any{
		{"name": "standard", "userId": user("ajs"), "campaign": "ajs-std-" + run, "tag": "e2e-ajs-" + run},
		{"name": "batching", "userId": user("ajs-batch"), "campaign": "ajs-batch-" + run, "tag": "e2e-ajs-batch-" + run, "batching": true},
		{"name": "clock", "userId": user("ajs-clock"), "campaign": "ajs-clock-" + run, "tag": "e2e-ajs-clock-" + run, "clockAheadMs": 3600_000},
	}
	type sent struct {
		Requests, Foreign, Errors []string
		Responses                 []struct {
			Path   string
			Status int
			Body   string
		}
		Anon        string
		ClockSkewMs float64
	}
	var res map[string]sent
	node(t, &res, "analytics-next.mjs", mustJSON(t, map[string]any{"base": d.base, "chromium": d.chromium, "writeKey": writeKey, "scenarios": scenarios}))

	for _, sc := range scenarios {
		name, lead, campaign := sc["name"].(string), sc["userId"].(string), sc["campaign"].(string)
		t.Run("analytics.js "+name, func(t *testing.T) {
			s := res[name]
			if len(s.Foreign) > 0 || len(s.Errors) > 0 || s.Anon == "" {
				t.Fatalf("requests elsewhere %v, page errors %v, anonymous id %q", s.Foreign, s.Errors, s.Anon)
			}
			if !slices.Contains(s.Requests, "GET /v1/projects/"+writeKey+"/settings") {
				t.Fatalf("analytics.js did not load its settings from the collector: %v", s.Requests)
			}
			for _, r := range s.Responses {
				if r.Status != 200 || !strings.HasPrefix(r.Body, `{"success":true`) {
					t.Fatalf("POST %s: %d %s", r.Path, r.Status, r.Body)
				}
			}
			// Every call carries the page's UTM campaign (context.campaign),
			// with or without a page URL, under the visitor's anonymous id.
			d.rows(t, "events of "+name, fmt.Sprintf("SELECT type, campaign, utm_campaign, utm_source, utm_medium, anonymous_id = '%s', bot FROM %s WHERE lead_id = '%s' ORDER BY type", s.Anon, ev, lead),
				fmt.Sprintf("custom\t%[1]s\t%[1]s\te2e\tajs\t1\t0\nidentify\t%[1]s\t%[1]s\te2e\tajs\t1\t0\npage_view\t%[1]s\t%[1]s\te2e\tajs\t1\t0", campaign))
			d.rows(t, "the page's fields", fmt.Sprintf("SELECT path, title, visitParamExtractString(visitParamExtractRaw(context, 'library'), 'name') FROM %s WHERE lead_id = '%s' AND type = 'page_view'", ev, lead),
				"/site/pricing.html\tPricing — analytics.js e2e\tanalytics.js")
			// Event times are the collector's within seconds, whatever the
			// browser's clock said; the browser's own is kept.
			skew := 0
			if name == "clock" {
				skew = 3600
				if s.ClockSkewMs < 3500_000 || s.ClockSkewMs > 3700_000 {
					t.Fatalf("the browser's clock was %v ms off, want an hour", s.ClockSkewMs)
				}
			}
			d.rows(t, "event times", fmt.Sprintf(`SELECT count(), countIf(abs(toInt64(event_time_ms) - toInt64(toUnixTimestamp(received_at)) * 1000) < 5000),
				countIf(abs(toInt64(original_timestamp_ms) - toInt64(event_time_ms) - %d) < 5000) FROM %s WHERE lead_id = '%s'`, skew*1000, ev, lead), "3\t3\t3")
			eventually(t, "lead scored", 30*time.Second, func() (bool, string) {
				code, v := d.lead(t, lead)
				return code == 200 && v.Known && v.Models["default"].Score > 34, fmt.Sprintf("%d %s", code, v.raw) // page 5 + fit 30
			})
		})
	}
	t.Run("analytics.js batching posts to /v1/b", func(t *testing.T) {
		if s := res["batching"]; !slices.Contains(s.Requests, "POST /v1/b") || slices.Contains(s.Requests, "POST /v1/t") {
			t.Fatalf("requests %v", s.Requests)
		}
		// (Its JSON posts with an Authorization header pass a CORS preflight,
		// which Chromium makes without showing it to the page.)
		if s := res["standard"]; !slices.Contains(s.Requests, "POST /v1/t") || slices.Contains(s.Requests, "POST /v1/b") {
			t.Fatalf("requests %v", s.Requests)
		}
	})

	t.Run("analytics-go with only its endpoint changed", func(t *testing.T) {
		lead := user("go")
		var mu sync.Mutex
		var ok, failed int
		client, err := analytics.NewWithConfig(writeKey, analytics.Config{Endpoint: d.base, Interval: 100 * time.Millisecond, BatchSize: 10,
			Callback: callback{func(error) { mu.Lock(); failed++; mu.Unlock() }, func() { mu.Lock(); ok++; mu.Unlock() }},
			Logger:   testLogger{t}})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []analytics.Message{
			analytics.Identify{UserId: lead, Traits: analytics.NewTraits().SetTitle("Director of Sales").Set("employees", 250)},
			analytics.Track{UserId: lead, Event: "Webinar Attended", Properties: analytics.NewProperties().Set("webinar", "go-live"),
				Context: &analytics.Context{Campaign: analytics.CampaignInfo{Name: "go-" + run, Source: "crm"}}},
			analytics.Page{UserId: lead, Name: "Pricing", Properties: analytics.NewProperties().SetURL("https://acme.example/pricing?utm_campaign=go-page-" + run)},
			// Refused alone: the others are stored and the SDK sees a 200.
			analytics.Track{UserId: lead, Event: "Deal Won", Properties: analytics.NewProperties().Set("revenue", "lots")},
		} {
			if err := client.Enqueue(m); err != nil {
				t.Fatal(err)
			}
		}
		if err := client.Close(); err != nil {
			t.Fatal(err)
		}
		if ok != 4 || failed != 0 {
			t.Fatalf("analytics-go callbacks: %d delivered, %d failed", ok, failed)
		}
		d.rows(t, "analytics-go events", fmt.Sprintf("SELECT type, track, campaign, visitParamExtractString(visitParamExtractRaw(context, 'library'), 'name') FROM %s WHERE lead_id = '%s' ORDER BY type", ev, lead),
			fmt.Sprintf("custom\tWebinar Attended\tgo-%[1]s\tanalytics-go\nidentify\t\t\tanalytics-go\npage_view\t\tgo-page-%[1]s\tanalytics-go", run))
		eventually(t, "analytics-go lead scored", 30*time.Second, func() (bool, string) {
			code, v := d.lead(t, lead)
			return code == 200 && v.Models["default"].Score > 49, fmt.Sprintf("%d %s", code, v.raw) // page 5 + pricing 15 + fit 30
		})
	})

	t.Run("a batch with one bad message: the others stored and scored, the bad one reported", func(t *testing.T) {
		lead := user("partial")
		body := `{"batch":[
			{"type":"identify","userId":"` + lead + `","messageId":"p1-` + run + `","traits":{"title":"VP Marketing","employees":900}},
			{"type":"track","userId":"` + lead + `","messageId":"p2-` + run + `"},
			{"type":"page","userId":"` + lead + `","messageId":"p3-` + run + `","properties":{"url":"https://acme.example/pricing"}}]}`
		req, _ := http.NewRequest("POST", d.base+"/v1/batch", strings.NewReader(body))
		req.SetBasicAuth(writeKey, "")
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		want := `{"success":true,"accepted":2,"rejected":[{"index":1,"messageId":"p2-` + run + `","error":"batch[1].event: is required for track"}],"rejected_count":1}`
		if r.StatusCode != 200 || string(b) != want {
			t.Fatalf("answer %d %s, want 200 %s", r.StatusCode, b, want)
		}
		d.rows(t, "stored", fmt.Sprintf("SELECT event_id, type FROM %s WHERE lead_id = '%s' ORDER BY event_id", ev, lead), "p1-"+run+"\tidentify\np3-"+run+"\tpage_view")
		eventually(t, "scored", 30*time.Second, func() (bool, string) {
			code, v := d.lead(t, lead)
			return code == 200 && v.Models["default"].Score > 49, fmt.Sprintf("%d %s", code, v.raw)
		})
		if n := metric(t, d, `leadstream_collector_rejected_events_total{reason="malformed"}`); n < 2 { // this one and analytics-go's
			t.Errorf("rejected events counted %v, want at least 2", n)
		}
	})
}

type callback struct {
	failure func(error)
	success func()
}

func (c callback) Failure(_ analytics.Message, err error) { c.failure(err) }
func (c callback) Success(analytics.Message)              { c.success() }

// testLogger shows the SDK's log in the test's.
type testLogger struct{ t *testing.T }

func (l testLogger) Logf(format string, args ...any) { l.t.Logf("analytics-go: "+format, args...) }
func (l testLogger) Errorf(format string, args ...any) {
	l.t.Logf("analytics-go error: "+format, args...)
}

// metric reads one sample of the collector's /metrics.
func metric(t *testing.T, d *dev, sample string) float64 {
	t.Helper()
	r, err := http.Get(d.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	t.Fatalf("no %s in /metrics", sample)
	return 0
}
