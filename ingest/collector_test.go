package ingest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/stream"
	"github.com/prometheus/client_golang/prometheus"
)

// With Kafka gone, the collector must answer 503 with Retry-After — never a
// 200 for an event that was not stored — and /readyz must say so.
func TestUnavailableKafkaAnswers503(t *testing.T) {
	cluster, brokers := testsvc.KafkaCluster(t, "leadstream.events")
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := stream.NewProducer(ctx, stream.ProducerConfig{Brokers: brokers, Topic: "leadstream.events", Timeout: 300 * time.Millisecond}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := New(Config{Kafka: stream.Config{Brokers: brokers, Partitions: 1}, HTTPAddr: "127.0.0.1:0", WriteKeys: []string{"k"}, ProduceTimeout: time.Second},
		p, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	addr, err := c.Listen()
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	defer func() { cancel(); <-done }()
	base := "http://" + addr.String()
	post := func() *http.Response {
		req, _ := http.NewRequest("POST", base+"/v1/track", strings.NewReader(`{"userId":"u1","event":"x"}`))
		req.SetBasicAuth("k", "")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	// The first produce also sets the idempotent producer up: on a loaded
	// machine it may take longer than the 300 ms timeout, and a 503 then is
	// right. Kafka up means a 200 within a few tries.
	testsvc.Eventually(t, "a 200 with kafka up", 10*time.Second, 50*time.Millisecond, func() (bool, string) {
		res := post()
		return res.StatusCode == 200, res.Status
	})
	cluster.Close()
	res := post()
	if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" {
		t.Fatalf("with kafka down: status %d, Retry-After %q; want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	r, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 503 {
		t.Fatalf("/readyz with kafka down = %d, want 503", r.StatusCode)
	}
}
