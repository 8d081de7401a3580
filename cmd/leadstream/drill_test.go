package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/localsvc"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
)

// TestScaleOutDrill is the scale-out drill of issue 15 on one box: a kfake
// cluster of 3 brokers, 3 processors and 2 sinks (real `leadstream`
// processes, each in its group), a 3-master Redis Cluster and ClickHouse.
// While events flow, a processor and a sink are killed with SIGKILL, then a
// processor and a sink are added. Afterwards every score equals the one
// computed from the event list, every lead that crossed is on the mql topic
// exactly once by mql_id, and ClickHouse holds every event once under FINAL.
// It logs the rebalance times (from the kill, or the start, until every
// partition of the events topic moves again in the group) and the lag
// recovery (from the last produce until both groups' lag is 0).
func TestScaleOutDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "leadstream")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building leadstream: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rulesPath := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesPath, []byte(killRules), 0o644); err != nil {
		t.Fatal(err)
	}
	rules, err := scoring.Parse(rulesPath, []byte(killRules))
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := cluster.ListenAddrs()
	redisAddrs := testsvc.RedisCluster(t)
	chAddr := testsvc.ClickHouse(t)
	kcfg := stream.Config{Brokers: brokers, TopicPrefix: "drill.", Partitions: 12, ReplicationFactor: -1}
	if err := stream.EnsureTopics(ctx, kcfg); err != nil {
		t.Fatal(err)
	}
	run := strconv.FormatUint(rand.Uint64(), 36)
	db := "drill_" + run
	chConn, err := warehouse.Open(ctx, warehouse.Config{Addr: chAddr, Database: "default", Username: "default", DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = chConn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		chConn.Close()
	})

	// The event list: leads with direct events, a third of them first seen
	// anonymously and then identified (a merge).
	rng := rand.New(rand.NewPCG(3, 5))
	base := time.Now().Add(-48 * time.Hour).UnixMilli()
	var events []event.Event
	seq := 0
	newEvent := func(typ event.Type, lead, anon string) event.Event {
		seq++
		ts := time.UnixMilli(base + rng.Int64N(40*3600*1000)).UTC()
		return event.Event{ID: fmt.Sprintf("%s-%d", run, seq), Type: typ, EventTime: ts, ReceivedAt: ts, LeadID: lead, AnonymousID: anon}
	}
	types := []event.Type{event.PageView, event.PageView, event.EmailClick, event.FormSubmit}
	for l := range 400 {
		lead := fmt.Sprintf("%s-lead-%d", run, l)
		if l%3 == 0 {
			anon := fmt.Sprintf("%s-anon-%d", run, l)
			for range 1 + rng.IntN(4) {
				events = append(events, newEvent(event.PageView, "", anon))
			}
			events = append(events, newEvent(event.Identify, lead, anon))
		}
		for range rng.IntN(14) {
			events = append(events, newEvent(types[rng.IntN(len(types))], lead, ""))
		}
	}
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	expected := expectedScores(t, rules, events)

	producer, err := stream.NewProducer(ctx, stream.ProducerConfig{Brokers: brokers, Topic: kcfg.Topic(stream.TopicEvents)}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	produce := func(chunk []event.Event) {
		recs := make([]stream.Record, 0, len(chunk)+5)
		for j := range chunk {
			v, _ := event.Marshal(&chunk[j])
			recs = append(recs, stream.Record{Key: []byte(chunk[j].Key()), Value: v})
		}
		recs = append(recs, recs[:min(5, len(recs))]...) // redeliveries
		if err := producer.Produce(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}

	env := append(os.Environ(),
		"LEADSTREAM_KAFKA_BROKERS="+strings.Join(brokers, ","), "LEADSTREAM_KAFKA_TOPIC_PREFIX=drill.",
		"LEADSTREAM_REDIS_ADDR="+strings.Join(redisAddrs, ","), "LEADSTREAM_RULES="+rulesPath,
		"LEADSTREAM_CLICKHOUSE_ADDR="+chAddr, "LEADSTREAM_CLICKHOUSE_DATABASE="+db,
		"LEADSTREAM_PROCESSOR_BATCH_SIZE=50", "LEADSTREAM_SINK_BATCH_SIZE=200", "LEADSTREAM_SINK_FLUSH_INTERVAL=100ms",
		"LEADSTREAM_KAFKA_SESSION_TIMEOUT=2s")
	type proc struct {
		name string
		cmd  *exec.Cmd
		url  string
	}
	var procs []*proc
	start := func(role string, n int) *proc {
		t.Helper()
		port, err := localsvc.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		p := &proc{name: fmt.Sprintf("%s-%d", role, n), url: fmt.Sprintf("http://127.0.0.1:%d/metrics", port)}
		p.cmd = exec.Command(bin, role)
		p.cmd.Env = append(env, fmt.Sprintf("LEADSTREAM_HTTP_ADDR=127.0.0.1:%d", port))
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		logPath := filepath.Join(dir, p.name+".log")
		if f, err := os.Create(logPath); err == nil {
			p.cmd.Stderr = f
			defer f.Close()
		}
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
		t.Cleanup(func() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			_ = p.cmd.Wait()
			if t.Failed() {
				b, _ := os.ReadFile(logPath)
				t.Logf("%s log (tail):\n%s", p.name, b[max(0, len(b)-2000):])
			}
		})
		return p
	}

	adm := kadm.NewClient(mustKgo(t, brokers))
	defer adm.Close()
	eventsTopic := kcfg.Topic(stream.TopicEvents)
	// commits returns each group's committed offset and end offset per
	// partition of the events topic.
	type part struct{ commit, end int64 }
	commits := func(group string) map[int32]part {
		lags, err := adm.Lag(ctx, group)
		if err != nil {
			return nil
		}
		out := map[int32]part{}
		for p, l := range lags[group].Lag[eventsTopic] {
			out[p] = part{l.Commit.At, l.End.Offset}
		}
		return out
	}
	// resumed waits until every partition of the events topic has moved in
	// group since before (or is caught up), and returns how long that took
	// from since.
	resumed := func(group string, before map[int32]part, since time.Time) time.Duration {
		t.Helper()
		for time.Now().Before(since.Add(90 * time.Second)) {
			now := commits(group)
			ok := len(now) == kcfg.Partitions
			for p, c := range now {
				if c.commit <= before[p].commit && c.commit < c.end {
					ok = false
				}
			}
			if ok {
				return time.Since(since)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("group %s: some partitions of %s did not move within 90 s", group, eventsTopic)
		return 0
	}

	const chunks = 12
	chunk := (len(events) + chunks - 1) / chunks
	next := 0
	feed := func(n int) {
		for range n {
			if next < chunks {
				produce(events[next*chunk : min((next+1)*chunk, len(events))])
				next++
				time.Sleep(150 * time.Millisecond)
			}
		}
	}
	for i := range 3 {
		start("processor", i)
	}
	for i := range 2 {
		start("sink", i)
	}
	members := func(group string, want int) time.Duration {
		t.Helper()
		since := time.Now()
		for time.Since(since) < 90*time.Second {
			if d, err := adm.DescribeGroups(ctx, group); err == nil && len(d[group].Members) == want && d[group].State == "Stable" {
				return time.Since(since)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("group %s never had %d members", group, want)
		return 0
	}
	members("scoring", 3)
	members("clickhouse", 2)
	feed(3)
	resumed("scoring", nil, time.Now())
	resumed("clickhouse", nil, time.Now())

	// Kill one processor and one sink while events flow.
	pBefore, sBefore := commits("scoring"), commits("clickhouse")
	killedAt := time.Now()
	for _, p := range []*proc{procs[0], procs[3]} {
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	feed(2)
	pKill, sKill := resumed("scoring", pBefore, killedAt), resumed("clickhouse", sBefore, killedAt)
	members("scoring", 2)
	members("clickhouse", 1)

	// Add a processor and a sink while events flow: from the start of each
	// process until every partition moves again with it in the group.
	addedAt := time.Now()
	newP, newS := start("processor", 3), start("sink", 2)
	members("scoring", 3)
	members("clickhouse", 2)
	pBefore, sBefore = commits("scoring"), commits("clickhouse")
	feed(3)
	pAdd, sAdd := resumed("scoring", pBefore, addedAt), resumed("clickhouse", sBefore, addedAt)
	for time.Since(addedAt) < 60*time.Second && (processedBy(newP.url) == 0 || sinkRows(newS.url) == 0) {
		time.Sleep(50 * time.Millisecond)
	}
	if processedBy(newP.url) == 0 || sinkRows(newS.url) == 0 {
		t.Errorf("the added processor (%v events) or sink (%v rows) got no work", processedBy(newP.url), sinkRows(newS.url))
	}

	feed(chunks)
	lastAt := time.Now()
	var recovery time.Duration
	for {
		lags, err := adm.Lag(ctx, "scoring", "clickhouse")
		if err == nil && lags["scoring"].Lag.Total() == 0 && lags["clickhouse"].Lag[eventsTopic] != nil && lagOf(lags["clickhouse"].Lag, eventsTopic) == 0 && len(lags["scoring"].Lag[eventsTopic]) == kcfg.Partitions {
			recovery = time.Since(lastAt)
			break
		}
		if time.Since(lastAt) > 90*time.Second {
			t.Fatalf("lag not back to 0 within 90 s of the last produce: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Every score as computed from the event list.
	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: strings.Join(redisAddrs, ",")})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	store := leadstate.NewStore(rdb)
	leads := make([]string, 0, len(expected))
	for lead := range expected {
		leads = append(leads, lead)
	}
	sort.Strings(leads)
	for _, lead := range leads {
		rec, err := store.ReadLead(ctx, lead)
		if err != nil {
			t.Fatal(err)
		}
		for _, model := range []string{"steady", "decaying"} {
			want := expected[lead][model]
			var v float64
			var ts int64
			if rec.State != nil && rec.State.Model(model) != nil {
				v, ts = rec.State.Model(model).V, rec.State.Model(model).T
			}
			if math.Abs(v-want.v) > 1e-9*math.Max(1, math.Abs(want.v)) || (want.v != 0 && ts != want.t) {
				t.Fatalf("%s %s: redis v=%v t=%v, want v=%v t=%v", lead, model, v, ts, want.v, want.t)
			}
		}
	}
	// Every crossing once.
	wantMQL := 0
	for _, s := range expected {
		if s["steady"].v >= 100 {
			wantMQL++
		}
	}
	var records []event.MQL
	deadline := time.Now().Add(30 * time.Second)
	for {
		records = readMQL(t, brokers, kcfg.Topic(stream.TopicMQL), 0, 3*time.Second)
		if len(uniqueMQL(records)) >= wantMQL || time.Now().After(deadline) {
			break
		}
	}
	perLead := map[string]int{}
	for _, m := range uniqueMQL(records) {
		perLead[m.LeadID]++
	}
	for lead, s := range expected {
		if want := map[bool]int{true: 1, false: 0}[s["steady"].v >= 100]; perLead[lead] != want {
			t.Errorf("lead %s: %d distinct MQL records, want %d", lead, perLead[lead], want)
		}
	}
	// Every event once in ClickHouse.
	var rows, final, ids uint64
	if err := chConn.QueryRow(ctx, "SELECT count() FROM "+db+".events").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if err := chConn.QueryRow(ctx, "SELECT count(), uniqExact(event_id) FROM "+db+".events FINAL").Scan(&final, &ids); err != nil {
		t.Fatal(err)
	}
	if final != uint64(len(events)) || ids != uint64(len(events)) {
		t.Errorf("ClickHouse: %d events under FINAL (%d ids), want %d", final, ids, len(events))
	}
	t.Logf("%d events (+ redeliveries), %d leads, %d MQLs; kill of a processor and a sink: every partition moving again after %v (scoring) and %v (clickhouse); "+
		"a processor and a sink added (from their start, the group stable with them): after %v and %v; lag 0 in both groups %v after the last produce; ClickHouse %d rows stored, %d under FINAL",
		len(events), len(expected), wantMQL, pKill.Round(time.Millisecond), sKill.Round(time.Millisecond), pAdd.Round(time.Millisecond), sAdd.Round(time.Millisecond),
		recovery.Round(time.Millisecond), rows, final)
}

func mustKgo(t *testing.T, brokers []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// lagOf is a group's lag on one topic.
func lagOf(l kadm.GroupLag, topic string) int64 {
	var n int64
	for _, p := range l[topic] {
		if p.Lag > 0 {
			n += p.Lag
		}
	}
	return n
}

// sinkRows reads how many event rows a sink stored from its /metrics; 0
// when it is not serving.
func sinkRows(url string) float64 {
	res, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	v, _ := metricSum(string(b), "leadstream_sink_rows_total", `table="events"`)
	return v
}
