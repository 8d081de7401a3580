package sink

// The sink uses kafka.session-timeout (LEADSTREAM_KAFKA_SESSION_TIMEOUT),
// which it accepts as a flag and the Helm chart / compose pass to it.

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/stream"
)

func TestSinkHonoursSessionTimeout(t *testing.T) {
	conn, chCfg := testDB(t)
	// A broker whose minimum session timeout is 15 s (allowed by Kafka), and a
	// sink configured with 20 s, inside the broker's bounds: it joins its
	// group and stores what arrives.
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.GroupMinSessionTimeout(15*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	kcfg := stream.Config{Brokers: cluster.ListenAddrs(), TopicPrefix: "rv.", Partitions: 1, ReplicationFactor: -1, SessionTimeout: 20 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := stream.EnsureTopics(ctx, kcfg); err != nil {
		t.Fatal(err)
	}
	evs := testEvents(1)
	b, err := event.Marshal(&evs[0])
	if err != nil {
		t.Fatal(err)
	}
	produce(ctx, t, kcfg, stream.TopicEvents, []stream.Record{{Key: []byte(evs[0].Key()), Value: b}})
	var logs testsvc.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := New(Config{Kafka: kcfg, ClickHouse: chCfg, BatchSize: 100, FlushInterval: 50 * time.Millisecond, Group: "clickhouse"}, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	defer func() { stop(); <-done }()
	stored := func() bool { // the database exists once the sink has started
		var n uint64
		return conn.QueryRow(ctx, "SELECT count() FROM "+chCfg.Database+".events").Scan(&n) == nil && n == 1
	}
	for !stored() {
		if strings.Contains(logs.String(), "refuses the consumer group's session timeout") || ctx.Err() != nil {
			t.Fatalf("sink configured with kafka.session-timeout=20s did not store the event (a broker whose minimum is 15s refused it?)\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
