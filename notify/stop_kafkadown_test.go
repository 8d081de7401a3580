package notify

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// A record delivered after Kafka went away, another attempt that never ends:
// the stop ends within one drain (10 s), not a drain, then a 10 s commit
// in the commit loop (and its next tick), then a 10 s final commit.
func TestNotifierStopsWithKafkaDown(t *testing.T) {
	_, ch := warehousetest.Open(t, "notifystop")
	cluster, brokers := testsvc.KafkaCluster(t)
	kcfg := stream.Config{Brokers: brokers, TopicPrefix: fmt.Sprintf("r%d.", rand.Uint32()), Partitions: 1, ReplicationFactor: -1}
	if err := stream.EnsureTopics(context.Background(), kcfg); err != nil {
		t.Fatal(err)
	}
	e := &env{brokers: brokers, kcfg: kcfg, ch: ch}
	got := make(chan struct{}, 10)
	release, quit := make(chan struct{}), make(chan struct{})
	m1, m2 := mql(1, "default"), mql(2, "default")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- struct{}{}
		if r.Header.Get(HeaderIdempotencyKey) == m2.MQLID {
			select { // a receiver that never answers
			case <-r.Context().Done():
			case <-quit:
			}
			return
		}
		<-release
		w.WriteHeader(200)
	}))
	defer func() { close(quit); srv.CloseClientConnections(); srv.Close() }()
	e.produce(t, stream.TopicMQL, m1, m2)
	cfg := e.config()
	cfg.DrainTimeout = 10 * time.Second // the default
	cfg.Timeout = time.Minute
	n, err := New(cfg, []Destination{{Name: "crm", Type: TypeWebhook, URL: srv.URL, Secret: []byte(hookSecret), Kinds: []string{KindMQL}}}, quiet, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	<-got // the attempts are at the receiver
	<-got
	cluster.Close()
	time.Sleep(8 * time.Second) // the generation ends (heartbeat fails)
	close(release)              // delivered: finished work to commit
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		t.Logf("notifier stopped after %v (err %v)", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(90 * time.Second):
		t.Fatal("notifier did not stop within 90 s")
	}
	if took := time.Since(start); took > cfg.DrainTimeout+3*time.Second {
		t.Errorf("stop took %v with Kafka down, want one drain (%v) and a little", took, cfg.DrainTimeout)
	}
}
