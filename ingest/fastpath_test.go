package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/ingest/token"
	"github.com/leadstream/leadstream/stream"
)

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
