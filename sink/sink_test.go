package sink

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
)

func TestSinkEndToEnd(t *testing.T) {
	conn, chCfg := testDB(t)
	kcfg := stream.Config{TopicPrefix: "leadstream.", Partitions: testsvc.KafkaPartitions, ReplicationFactor: -1}
	kcfg.Brokers = testsvc.Kafka(t, kcfg.Topic(stream.TopicEvents), kcfg.Topic(stream.TopicMQL), kcfg.Topic(stream.TopicMQA), kcfg.Topic(stream.TopicDeadLetter))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)

	const n = 300
	evs := testEvents(n)
	var recs []stream.Record
	for i := range evs {
		b, err := event.Marshal(&evs[i])
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, stream.Record{Key: []byte(evs[i].Key()), Value: b})
	}
	unstorable := evs[0]
	unstorable.ID, unstorable.EventTime = "evt-1960", time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)
	b, _ := event.Marshal(&unstorable)
	recs = append(recs, stream.Record{Key: []byte("k"), Value: []byte("{not json")}, stream.Record{Key: []byte("k"), Value: b})
	produce(ctx, t, kcfg, stream.TopicEvents, recs)

	recs = recs[:0]
	for _, m := range testMQLs() {
		b, _ := json.Marshal(m)
		recs = append(recs, stream.Record{Key: []byte(m.LeadID), Value: b})
	}
	recs = append(recs, stream.Record{Key: []byte("lead-9"), Value: []byte(`{"lead_id":"lead-9","model":"default"}`)})
	produce(ctx, t, kcfg, stream.TopicMQL, recs)
	mqa := event.MQA{MQAID: "mqa-1", AccountID: "acct-1", Model: "default", Score: 171.5, Threshold: 150,
		CrossedAt: time.Date(2025, 3, 15, 10, 0, 0, 0, time.UTC), TriggerEventID: "evt-0000008", EngagedMembers: 2,
		Reasons:    []event.Reason{{Rule: "engagement", Points: 121.5}, {Rule: "target-industry", Points: 30}},
		TopMembers: []event.Member{{LeadID: "lead-1", Points: 60}, {LeadID: "lead-2", Points: 61.5}}}
	mb, _ := json.Marshal(mqa)
	produce(ctx, t, kcfg, stream.TopicMQA, []stream.Record{{Key: []byte("acct-1"), Value: mb}, {Key: []byte("acct-1"), Value: mb}})

	reg := prometheus.NewRegistry()
	s, err := New(Config{Kafka: kcfg, ClickHouse: chCfg, BatchSize: 100, FlushInterval: 50 * time.Millisecond, Group: "clickhouse"}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Ready() {
		t.Error("Ready before Run")
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(runCtx) }()

	db := chCfg.Database
	waitFor(t, runErr, func() bool {
		var got uint64
		err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".events").Scan(&got)
		return err == nil && got >= n
	})
	if !s.Ready() {
		t.Error("not Ready while running")
	}
	waitFor(t, runErr, func() bool {
		var got uint64
		err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".mql").Scan(&got)
		return err == nil && got >= 2
	})

	stored := storedEvents(t, conn, db)
	if len(stored) != n {
		t.Errorf("stored %d distinct events, want %d", len(stored), n)
	}
	for _, e := range evs {
		if got := stored[e.ID]; !reflect.DeepEqual(got, asStored(e)) {
			t.Fatalf("event %s round trip:\n got %+v\nwant %+v", e.ID, got, asStored(e))
		}
	}
	checkLinks(t, conn, db, evs)
	checkMQLs(t, conn, db)
	waitFor(t, runErr, func() bool {
		var got uint64
		err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".mqa").Scan(&got)
		return err == nil && got >= 1
	})
	// The MQA, redelivered, is one row with its members; every group call
	// is an account_members row.
	var mqaRow struct {
		N       uint64   `ch:"n"`
		Engaged uint32   `ch:"engaged"`
		Leads   []string `ch:"leads"`
	}
	if err := conn.QueryRow(ctx, "SELECT count() AS n, any(engaged_members) AS engaged, any(top_members.lead_id) AS leads FROM "+db+".mqa FINAL WHERE mqa_id = 'mqa-1'").ScanStruct(&mqaRow); err != nil {
		t.Fatal(err)
	}
	if mqaRow.N != 1 || mqaRow.Engaged != 2 || !reflect.DeepEqual(mqaRow.Leads, []string{"lead-1", "lead-2"}) {
		t.Errorf("mqa row %+v", mqaRow)
	}
	groups := 0
	for _, e := range evs {
		if e.Type == event.Group {
			groups++
		}
	}
	var members uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+db+".account_members FINAL WHERE source = 'group' AND startsWith(account_id, 'acct-')").Scan(&members); err != nil {
		t.Fatal(err)
	}
	if groups == 0 || members != uint64(groups) {
		t.Errorf("account_members holds %d group rows, the events %d group calls", members, groups)
	}

	// The consumer commits after the handler returns, so by now the dead
	// letters are on their topic too.
	dead := readDeadLetters(ctx, t, kcfg, 3)
	sort.Slice(dead, func(i, j int) bool { return dead[i].Reason < dead[j].Reason })
	want := []struct{ topic, reason, value string }{
		{kcfg.Topic(stream.TopicEvents), "decoding event", "{not json"},
		{kcfg.Topic(stream.TopicMQL), "invalid mql record: mql_id is required", `{"lead_id":"lead-9","model":"default"}`},
		{kcfg.Topic(stream.TopicEvents), "value cannot be stored in clickhouse: event_time 1960-01-01T00:00:00Z", `"event_id":"evt-1960"`},
	}
	for i, w := range want {
		d := dead[i]
		if d.SourceTopic != w.topic || !strings.Contains(d.Reason, w.reason) || !strings.Contains(d.Value, w.value) || d.Offset < 0 {
			t.Errorf("dead letter %d = %+v, want topic %s, reason containing %q, value containing %q", i, d, w.topic, w.reason, w.value)
		}
	}

	if got := counterValue(t, s.m.deadLetters.WithLabelValues(kcfg.Topic(stream.TopicEvents))); got != 2 {
		t.Errorf("dead letters from events = %v, want 2", got)
	}
	if got := counterValue(t, s.m.rows.WithLabelValues(warehouse.TableEvents)); got < n {
		t.Errorf("rows_total{events} = %v, want >= %d", got, n)
	}

	stop()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run returned %v after cancel", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if err := s.Run(ctx); !errors.Is(err, ErrAlreadyRun) {
		t.Errorf("second Run = %v, want ErrAlreadyRun", err)
	}
}

func produce(ctx context.Context, t *testing.T, kcfg stream.Config, suffix string, recs []stream.Record) {
	t.Helper()
	p, err := stream.NewProducer(ctx, stream.ProducerConfig{Brokers: kcfg.Brokers, Topic: kcfg.Topic(suffix)}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Produce(ctx, recs); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing the test if Run ends first or
// it takes too long.
func waitFor(t *testing.T, runErr <-chan error, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		select {
		case err := <-runErr:
			t.Fatalf("Run returned early: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the sink")
		}
	}
}

func checkLinks(t *testing.T, conn interface {
	Select(context.Context, any, string, ...any) error
}, db string, evs []event.Event) {
	t.Helper()
	// Expected pairs, worked out independently of identityLinks.
	earliest := map[[2]string]time.Time{}
	note := func(anon, lead string, at time.Time) {
		k := [2]string{anon, lead}
		if anon == "" || lead == "" {
			return
		}
		if t0, ok := earliest[k]; !ok || at.Before(t0) {
			earliest[k] = at
		}
	}
	for _, e := range evs {
		note(e.AnonymousID, e.LeadID, e.EventTime)
		if e.Type == event.Alias {
			note(e.PreviousID, e.LeadID, e.EventTime)
		}
	}
	var got []struct {
		AnonymousID string    `ch:"anonymous_id"`
		LeadID      string    `ch:"lead_id"`
		LinkedAt    time.Time `ch:"linked_at"`
	}
	if err := conn.Select(context.Background(), &got, "SELECT anonymous_id, lead_id, linked_at FROM "+db+".identity_links FINAL"); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(earliest) {
		t.Errorf("identity_links has %d pairs, want %d", len(got), len(earliest))
	}
	for _, l := range got {
		want, ok := earliest[[2]string{l.AnonymousID, l.LeadID}]
		if !ok {
			t.Errorf("unexpected link %s -> %s", l.AnonymousID, l.LeadID)
			continue
		}
		// Batches arrive per partition, so a later batch may hold a later
		// link of the same pair; only the batch's earliest is kept.
		if l.LinkedAt.Before(want.Truncate(time.Second)) {
			t.Errorf("link %s -> %s at %v, before the first linking event %v", l.AnonymousID, l.LeadID, l.LinkedAt, want)
		}
	}
}

func checkMQLs(t *testing.T, conn interface {
	Select(context.Context, any, string, ...any) error
}, db string) {
	t.Helper()
	var got []struct {
		MQLID          string    `ch:"mql_id"`
		LeadID         string    `ch:"lead_id"`
		Model          string    `ch:"model"`
		Score          float64   `ch:"score"`
		Threshold      float64   `ch:"threshold"`
		CrossedAtMS    uint64    `ch:"crossed_at_ms"`
		CrossedAt      time.Time `ch:"crossed_at"`
		TriggerEventID string    `ch:"trigger_event_id"`
		Rules          []string  `ch:"reasons.rule"`
		Points         []float64 `ch:"reasons.points"`
	}
	if err := conn.Select(context.Background(), &got, "SELECT * FROM "+db+".mql FINAL ORDER BY mql_id"); err != nil {
		t.Fatal(err)
	}
	want := testMQLs()
	if len(got) != len(want) {
		t.Fatalf("mql rows = %d, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		m := event.MQL{MQLID: g.MQLID, LeadID: g.LeadID, Model: g.Model, Score: g.Score, Threshold: g.Threshold,
			CrossedAt: time.UnixMilli(int64(g.CrossedAtMS)).UTC(), TriggerEventID: g.TriggerEventID, Reasons: []event.Reason{}}
		for j := range g.Rules {
			m.Reasons = append(m.Reasons, event.Reason{Rule: g.Rules[j], Points: g.Points[j]})
		}
		if !reflect.DeepEqual(m, w) || !g.CrossedAt.Equal(w.CrossedAt.Truncate(time.Second)) {
			t.Errorf("mql row %d:\n got %+v (crossed_at %v)\nwant %+v", i, m, g.CrossedAt, w)
		}
	}
}

// readDeadLetters consumes the dead-letter topic in a group of its own until
// it holds want records.
func readDeadLetters(ctx context.Context, t *testing.T, kcfg stream.Config, want int) []deadLetter {
	t.Helper()
	c, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: kcfg.Brokers, Group: "test-deadletter", Topics: []string{kcfg.Topic(stream.TopicDeadLetter)}},
		slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var (
		mu  sync.Mutex
		out []deadLetter
	)
	err = c.Run(ctx, func(_ context.Context, batch []stream.Message) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range batch {
			var d deadLetter
			if err := json.Unmarshal(m.Value, &d); err != nil {
				t.Errorf("dead letter is not JSON: %v: %s", err, m.Value)
			}
			out = append(out, d)
		}
		if len(out) >= want {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != want {
		t.Fatalf("got %d dead letters, want %d: %+v", len(out), want, out)
	}
	return out
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// deadLetter is the public JSON form of a dead-letter record, decoded as a consumer would.
type deadLetter struct {
	SourceTopic string `json:"source_topic"`
	Partition   int    `json:"partition"`
	Offset      int64  `json:"offset"`
	Reason      string `json:"reason"`
	Value       string `json:"value"`
}
