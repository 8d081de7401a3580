package ingest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/ingest/token"
	"github.com/leadstream/leadstream/stream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"
)

const (
	testKey       = "site-key"
	testOtherKey  = "other-key"
	testServerKey = "server-key"
	testTokenKeys = "k2:new-secret-0123456789,k1:old-secret-0123456789"
)

// server is a collector on a loopback port writing to a kfake broker.
type server struct {
	c       *Collector
	base    string
	brokers []string
	keys    *token.Keyring
	client  *http.Client // does not follow redirects
}

func startServer(t *testing.T, mod func(*Config)) *server {
	t.Helper()
	return startServerLog(t, mod, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// startServerLog is startServer with the collector logging to log.
func startServerLog(t *testing.T, mod func(*Config), log *slog.Logger) *server {
	t.Helper()
	// One partition: events read back in the order the requests were made.
	// 10 s for Kafka: the idempotent producer's first contact can take
	// seconds on a loaded machine, and a 503 then would fail the test.
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "leadstream.events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := cluster.ListenAddrs()
	p, err := stream.NewProducer(context.Background(), stream.ProducerConfig{Brokers: brokers, Topic: "leadstream.events", Timeout: 10 * time.Second}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	keys, err := token.ParseKeys(testTokenKeys)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Kafka: stream.Config{Brokers: brokers, TopicPrefix: "leadstream.", Partitions: 1}, HTTPAddr: "127.0.0.1:0",
		WriteKeys: []string{testKey, testOtherKey}, ServerWriteKeys: []string{testServerKey}, ProduceTimeout: 10 * time.Second, TokenKeys: keys,
		CORSOrigins:     map[string][]string{testOtherKey: {"https://www.acme.example", "https://*.shop.example"}},
		ScannerMinDelay: 5 * time.Second, ScannerBurst: time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg, p, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	addr, err := c.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	kr, _ := token.NewKeyring(keys...)
	return &server{c: c, base: "http://" + addr.String(), brokers: brokers, keys: kr,
		client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request; headers are "Name: value" strings.
func (s *server) do(t *testing.T, method, path, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", browserUA)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	res, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

const browserUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36"

// events posts a marker event, then reads the topic up to it: everything the
// collector accepted before the marker, in order per partition (one here).
func (s *server) events(t *testing.T) []event.Event {
	t.Helper()
	marker := fmt.Sprintf("marker-%d", rand.Uint64())
	if res, body := s.do(t, "POST", "/v1/track", `{"userId":"m","event":"Marker","messageId":"`+marker+`"}`, "Authorization: Basic "+basic(testServerKey)); res.StatusCode != 200 {
		t.Fatalf("marker: %d %s", res.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: s.brokers, Group: fmt.Sprintf("read-%d", rand.Uint64()), Topics: []string{"leadstream.events"}, MaxWait: 10 * time.Millisecond},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Event
	found := false
	_ = cons.Run(ctx, func(_ context.Context, batch []stream.Message) error {
		for _, m := range batch {
			var e event.Event
			if err := event.Unmarshal(m.Value, &e); err != nil {
				t.Errorf("bad record %s: %v", m.Value, err)
				continue
			}
			if e.Track == "Marker" {
				if e.ID == marker {
					found = true
					cancel()
				}
				continue
			}
			out = append(out, e)
		}
		return nil
	})
	if !found {
		t.Fatal("marker event not read back from kafka")
	}
	return out
}

func basic(user string) string {
	return strings.TrimPrefix(mustBasic(user), "Basic ")
}

func mustBasic(user string) string {
	req, _ := http.NewRequest("GET", "http://x", nil)
	req.SetBasicAuth(user, "")
	return req.Header.Get("Authorization")
}

func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
