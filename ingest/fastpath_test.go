package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"encoding/json"
	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/ingest/token"
	"github.com/leadstream/leadstream/stream"
)

// The batch fast path cuts the same messages out of a body as the decoder.
func FuzzSplitBatch(f *testing.F) {
	f.Add(benchBatch(3))
	f.Add([]byte(`{"batch":[],"writeKey":"k"}`))
	f.Add([]byte(` { "batch" : [ {"type":"track"} , null ,1,"x",[ ]] , "sentAt":null, "context":{"library":{"name":"ls.js"}} } `))
	f.Add([]byte(`{"batch":null,"context":null,"other":{"a":[1,2]}}`))
	f.Add([]byte(`{"Batch":[{}],"batch":[]}`))
	f.Add([]byte(`{"batch":[{}],"batch":[]}`))
	f.Add([]byte(`{"writeKey":"a\u0062"}`))
	f.Add([]byte(`{"writekey":"x","batch":[{}]}`))
	f.Add([]byte(`{"batch":{}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if validJSON(body) != nil {
			return
		}
		fast, ok := splitBatch(body)
		if !ok {
			return
		}
		var want segBatch
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("fast path took %q, the decoder fails: %v", body, err)
		}
		if (fast.Batch == nil) != (want.Batch == nil) || len(fast.Batch) != len(want.Batch) {
			t.Fatalf("%q: batch %q, decoder %q", body, fast.Batch, want.Batch)
		}
		for i := range fast.Batch {
			if !bytes.Equal(fast.Batch[i], want.Batch[i]) {
				t.Fatalf("%q: batch[%d] %q, decoder %q", body, i, fast.Batch[i], want.Batch[i])
			}
		}
		if fast.WriteKey != want.WriteKey || fast.SentAt != want.SentAt || (fast.Context == nil) != (want.Context == nil) || !bytes.Equal(fast.Context, want.Context) {
			t.Fatalf("%q: fast %+v, decoder %+v", body, fast, want)
		}
	})
}

// decodeMessage with its fast paths gives the event (or error) the collector
// gave before them.
func FuzzDecodeMessageMatchesReference(f *testing.F) {
	for _, raw := range bytes.Split(bytes.TrimSuffix(bytes.TrimPrefix(benchBatch(2), []byte(`{"batch":[`)), []byte(`],"sentAt":"2026-11-22T16:39:58.300Z"}`)), []byte("},{")) {
		f.Add(raw)
	}
	f.Add([]byte(`{"type":"page","anonymousId":" a\u00e9 ","properties":{"url":"https://x.example/p?utm_source=g&a=%75tm_x"}}`))
	f.Add([]byte(`{"type":"page","anonymousId":"a\tb","properties":{"URL":"https://x.example/p?x=1","Path":5}}`))
	f.Add([]byte(`{"type":"track","userId":"u","event":"e","context":{"page":{"url":"https://x.example/?utm%5Fsource=s&utm_medium=m;x"}}}`))
	f.Add([]byte(`{"type":"page","userId":"é","properties":{"url":"::"}}`))
	f.Add([]byte(`{"type":"page","userId":"\u00e9","properties":{"url":"http://x/a%2Fb?utm_term=a+b"}}`))
	r := &request{writeKeyID: "wk", receivedAt: time.Date(2026, 11, 22, 16, 40, 0, 0, time.UTC), ip: "192.0.2.1", userAgent: "ua"}
	f.Fuzz(func(t *testing.T, b []byte) {
		if validJSON(b) != nil {
			return
		}
		// "" is a /v1/batch message; the others are the single-event endpoints.
		for _, force := range []string{"", "track", "page", "screen", "identify", "alias", "group"} {
			e, err := decodeMessage(b, "m", force, r)
			we, werr := refDecodeMessage(b, "m", force, r)
			if fmt.Sprint(err) != fmt.Sprint(werr) {
				t.Fatalf("%q (%q): error %v, reference %v", b, force, err, werr)
			}
			if err == nil && !reflect.DeepEqual(e, we) {
				t.Fatalf("%q (%q):\n got %+v\nwant %+v", b, force, e, we)
			}
		}
	})
}

func TestPlainString(t *testing.T) {
	for _, s := range []string{`""`, `"abc"`, `" a b "`, `"a\"b"`, `"a\\b"`, `"é"`, "\"a\x7fb\"", `"\u0041"`, `"<&>"`} {
		var want string
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatal(err)
		}
		if got, ok := plainString([]byte(s)); ok && got != want {
			t.Errorf("plainString(%s) = %q, want %q", s, got, want)
		}
	}
}

// The single-event endpoints decode their body once; the answers are those of
// the two-step decode (write key, then message): 401 before 400, same errors.
func TestSingleEventAnswers(t *testing.T) {
	s := startServer(t, nil)
	good, bad := "Authorization: Basic "+basic(testKey), "Authorization: Basic "+basic("nope")
	for _, c := range []struct {
		body, auth string
		code       int
		want       string
	}{
		{`{"userId":"u","event":"e"}`, good, 200, `{"success":true,"accepted":1}`},
		{`{"userId":"u","event":"e","writeKey":"` + testKey + `"}`, "", 200, `{"success":true,"accepted":1}`},
		{`{"userId":"u","event":5}`, bad, 401, "unknown or missing write key"},
		{`{"userId":"u","event":5,"writeKey":"nope"}`, "", 401, "unknown or missing write key"},
		{`{"userId":"u","event":5}`, good, 400, `"track: malformed JSON: `},
		{`{"userId":"u","event":"e","writeKey":5}`, bad, 400, `"malformed JSON: `},
		{`{"userId":"u","event":"e","writeKey":5}`, good, 400, `"malformed JSON: `},
		{`{"userId":"u"}`, bad, 401, "unknown or missing write key"},
		{`{"userId":"u"}`, good, 400, `track.event: is required for track`},
		{`{"userId":"u","event":"e"`, bad, 400, `malformed JSON`},
	} {
		var headers []string
		if c.auth != "" {
			headers = append(headers, c.auth)
		}
		res, body := s.do(t, "POST", "/v1/track", c.body, headers...)
		if res.StatusCode != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s (%s): %d %s, want %d with %q", c.body, c.auth, res.StatusCode, body, c.code, c.want)
		}
	}
}

// emailProperties writes what encoding/json writes for the map it replaces.
func FuzzEmailProperties(f *testing.F) {
	f.Add("msg-1", "")
	f.Add("m", "https://acme.example/x?a=1&b=<2>")
	f.Add("m\"\\é\u2028\x01", "https://acme.example/")
	f.Fuzz(func(t *testing.T, msg, url string) {
		props := map[string]string{"message_id": msg}
		if url != "" {
			props["url"] = url
		}
		want, err := json.Marshal(props)
		if err != nil {
			t.Fatal(err)
		}
		if got := emailProperties(token.Claims{Message: msg, URL: url}); !bytes.Equal(got, want) {
			t.Fatalf("emailProperties = %s, want %s", got, want)
		}
	})
}

// Cached user-agent verdicts are the scanned ones, also for agents seen again.
func TestUABotReasonCache(t *testing.T) {
	for range 2 {
		for _, ua := range []string{browserUA, "curl/8.0", "Mozilla/5.0 (compatible; Googlebot/2.1)", "Cubot X30", "HeadlessChrome/120"} {
			if got, want := uaBotReason(ua, true), scanUA(ua); got != want {
				t.Fatalf("uaBotReason(%q) = %q, scan says %q", ua, got, want)
			}
		}
	}
}

// The pooled deadline context behaves like context.WithTimeout, also reused.
func TestDeadlineCtx(t *testing.T) {
	for range 3 {
		c := newDeadlineCtx(time.Hour)
		if c.Err() != nil {
			t.Fatal("fresh context is done")
		}
		if d, ok := c.Deadline(); !ok || time.Until(d) < 59*time.Minute {
			t.Fatalf("deadline %v %v", d, ok)
		}
		c.release()
	}
	c := newDeadlineCtx(10 * time.Millisecond)
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("context not done after its timeout")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err = %v", c.Err())
	}
	c.release()
	if c2 := newDeadlineCtx(time.Hour); c2 == c || c2.Err() != nil {
		t.Fatal("a context that fired was reused")
	}
}

func TestGCPercent(t *testing.T) {
	cfg := Config{GCPercent: -1, Kafka: stream.Config{Brokers: []string{"k:9092"}, Partitions: 1}, HTTPAddr: ":0", WriteKeys: []string{"k"}, ProduceTimeout: time.Second}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "gogc") {
		t.Fatalf("Validate with gogc -1 = %v", err)
	}
	// The heap goal stays within gcHeapGoal, GOGC between 100 and the maximum.
	for _, c := range []struct {
		live uint64
		want int
	}{{0, 400}, {1 << 20, 400}, {25 << 20, 400}, {32 << 20, 300}, {64 << 20, 100}, {1 << 30, 100}} {
		if got := gcPercentFor(c.live, 400); got != c.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	col := &Collector{cfg: Config{GCPercent: 300}, log: slog.New(slog.DiscardHandler)}
	t.Setenv("GOGC", "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { col.tuneGC(ctx); close(done) }()
	time.Sleep(50 * time.Millisecond)
	if got := debug.SetGCPercent(300); got < 100 || got > 300 {
		t.Errorf("GOGC while tuning = %d, want 100..300", got)
	}
	cancel()
	<-done
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC after tuning = %d, want the previous 100", got)
	}
	t.Setenv("GOGC", "150") // the environment wins: tuneGC returns at once
	col.tuneGC(context.Background())
}

// The one-pass message decoder gives what the JSON decoder gives whenever it
// takes a message (and decodeMessage as a whole is compared with the
// reference by FuzzDecodeMessageMatchesReference).
func FuzzSegMessageFastPath(f *testing.F) {
	for _, raw := range bytes.Split(bytes.TrimSuffix(bytes.TrimPrefix(benchBatch(2), []byte(`{"batch":[`)), []byte(`],"sentAt":"2026-11-22T16:39:58.300Z"}`)), []byte("},{")) {
		f.Add(raw)
	}
	f.Add([]byte(`{"type":"page","properties":null,"userId":null,"context":{"traits":null,"page":null,"campaign":{"name":"n","x":[1,"]"]}},"name":null}`))
	f.Add([]byte(` {"Type":"x","type":"y"} `))
	f.Add([]byte(`{"type":"a\"b","event":"é","messageId":"\u00e9","anonymousId":-1.5e3,"context":{"page":{"url":"u","URL":"v"}}}`))
	f.Add([]byte(`{"type":"track","type":"page"}`))
	f.Add([]byte(`{"context":{"ip":5}}`))
	f.Add([]byte(`{"traits":{"a":"\\\"}"},"x\\y":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if validJSON(b) != nil {
			return
		}
		var fast segMessage
		if fastSegMessage(b, &fast) {
			var want segMessage
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatalf("fast path took %q, the decoder fails: %v", b, err)
			}
			if !reflect.DeepEqual(fast, want) {
				t.Fatalf("%q:\nfast    %+v\ndecoder %+v", b, fast, want)
			}
		}
		var fp segPage
		s := segScan{b: b}
		if end := s.page(skipWS(b, 0), &fp); end >= 0 && skipWS(b, end) == len(b) {
			var want segPage
			if err := json.Unmarshal(b, &want); err != nil || fp != want {
				t.Fatalf("%q: page %+v, decoder %+v (%v)", b, fp, want, err)
			}
		}
	})
}

// fillFromURL with its fast path fills what url.Parse and url.Values filled.
func FuzzFillFromURL(f *testing.F) {
	for _, u := range []string{"https://www.acme.example/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=spring-launch",
		"http://a.example:8080", "https://a.example?utm_term=x&utm_term=y#f", "https://a.example/p?utm_source&utm_medium==a=", "https://a.example/a b",
		"https://a.example/%zz", "https://u@a.example/", "HTTPS://A.example/X", "https://a.example:/x", "https://a.example/x?utm_source=a+b;c", "https://a.example#?utm_source=x",
		"https://a.example/?&&utm_content=1&", "https://a.example/\"<>\\^`{|}?utm_source=<x>&x=\"", "http://a-b.c.example:1/x/../y?utm_medium=a=b", "https://a.example?utm_source=%41"} {
		f.Add(u, "", "")
		f.Add(u, "/given", "camp")
	}
	f.Fuzz(func(t *testing.T, u, path, campaign string) {
		e := event.Event{URL: u, Path: path, UTMCampaign: campaign}
		want := e
		fillFromURL(&e)
		refFillFromURL(&want)
		if !reflect.DeepEqual(e, want) {
			t.Fatalf("%q:\n got %+v\nwant %+v", u, e, want)
		}
	})
}
