//go:build linux

package main

import (
	"context"
	"encoding/json"
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

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/localsvc"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Two models: "steady" never decays, so each lead crosses its threshold at
// most once whatever the order; "decaying" checks exact decayed values.
const killRules = `
models:
  - name: steady
    half_life: 0s
    threshold: 100
    rearm_below: 50
    rules:
      - {name: page-view, event: page_view, points: 5}
      - {name: form-submit, event: form_submit, points: 30}
      - {name: email-click, event: email_click, points: 15}
    accounts: {threshold: 450, rearm_below: 1, member_cap: 60, engaged_at: 30, min_engaged: 2}
  - name: decaying
    half_life: 24h
    threshold: 1000000
    rules:
      - {name: page-view, event: page_view, points: 5}
      - {name: form-submit, event: form_submit, points: 30}
      - {name: email-click, event: email_click, points: 15}
`

// TestProcessorSurvivesSIGKILL runs the real `leadstream processor` binary and
// kills it with SIGKILL several times while events flow. Afterwards every score
// must equal the one computed from the event list, and every crossing must be
// on the mql topic exactly once by mql_id — nothing lost, nothing counted twice.
// Leads are members of accounts (group calls, some moving): every account must
// hold exactly its members with their capped scores, and each account that
// crossed must be on the mqa topic exactly once.
func TestProcessorSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills processes")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "leadstream")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building leadstream: %v\n%s", err, out)
	}
	// The budget starts after the build, which takes long on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rulesPath := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesPath, []byte(killRules), 0o644); err != nil {
		t.Fatal(err)
	}
	rules, err := scoring.Parse(rulesPath, []byte(killRules))
	if err != nil {
		t.Fatal(err)
	}
	// A broker that allows short sessions, so a killed member is replaced in ~2 s.
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := cluster.ListenAddrs()
	redisAddr := testsvc.Redis(t)
	kcfg := stream.Config{Brokers: brokers, TopicPrefix: "kill.", Partitions: 4, ReplicationFactor: -1}
	if err := stream.EnsureTopics(ctx, kcfg); err != nil {
		t.Fatal(err)
	}

	// The event list: leads with direct events, a third of them first seen
	// anonymously and then identified (a merge), and some redelivered ids.
	run := strconv.FormatUint(rand.Uint64(), 36)
	rng := rand.New(rand.NewPCG(7, 11))
	base := time.Now().Add(-48 * time.Hour).UnixMilli()
	var events []event.Event
	seq := 0
	newEvent := func(typ event.Type, lead, anon string) event.Event {
		seq++
		ts := time.UnixMilli(base + rng.Int64N(40*3600*1000)).UTC()
		return event.Event{ID: fmt.Sprintf("%s-%d", run, seq), Type: typ, EventTime: ts, ReceivedAt: ts, LeadID: lead, AnonymousID: anon}
	}
	types := []event.Type{event.PageView, event.PageView, event.EmailClick, event.FormSubmit}
	const nLeads = 120
	for l := range nLeads {
		lead := fmt.Sprintf("%s-lead-%d", run, l)
		if l%3 == 0 {
			anon := fmt.Sprintf("%s-anon-%d", run, l)
			for range 1 + rng.IntN(4) {
				events = append(events, newEvent(event.PageView, "", anon))
			}
			events = append(events, newEvent(event.Identify, lead, anon))
		}
		for range rng.IntN(12) {
			events = append(events, newEvent(types[rng.IntN(len(types))], lead, ""))
		}
		g := newEvent(event.Group, lead, "")
		g.GroupID = fmt.Sprintf("%s-acct-%d", run, l%killAccounts)
		events = append(events, g)
		if l%10 == 0 { // moves: the later group call wins
			g := newEvent(event.Group, lead, "")
			g.GroupID = fmt.Sprintf("%s-acct-%d", run, (l+1)%killAccounts)
			events = append(events, g)
		}
	}
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	expected := expectedScores(t, rules, events)

	// Each processor run gets a fresh chunk of events (plus some redelivered
	// ones) and is killed shortly after it has started working on them.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	producer, err := stream.NewProducer(ctx, stream.ProducerConfig{Brokers: brokers, Topic: kcfg.Topic(stream.TopicEvents),
		Timeout: time.Minute}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	const kills = 6
	produce := func(chunk []event.Event) {
		recs := make([]stream.Record, 0, len(chunk)+10)
		for j := range chunk {
			v, _ := event.Marshal(&chunk[j])
			recs = append(recs, stream.Record{Key: []byte(chunk[j].Key()), Value: v})
		}
		recs = append(recs, recs[:min(10, len(recs))]...) // at-least-once from the producer side too
		if err := producer.Produce(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	procLog := filepath.Join(dir, "processor.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(procLog)
			t.Logf("processor logs (tail):\n%s", b[max(0, len(b)-4000):])
		}
	})
	port, err := localsvc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	env := append(os.Environ(),
		"LEADSTREAM_KAFKA_BROKERS="+brokers[0], "LEADSTREAM_KAFKA_TOPIC_PREFIX=kill.", "LEADSTREAM_REDIS_ADDR="+redisAddr,
		"LEADSTREAM_RULES="+rulesPath, fmt.Sprintf("LEADSTREAM_HTTP_ADDR=127.0.0.1:%d", port),
		"LEADSTREAM_PROCESSOR_BATCH_SIZE=20", "LEADSTREAM_KAFKA_SESSION_TIMEOUT=2s")
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "processor")
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if f, err := os.OpenFile(procLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			cmd.Stderr = f
			defer f.Close()
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	chunk := (len(events) + kills) / (kills + 1)
	interrupted := 0
	for i := range kills {
		produce(events[i*chunk : (i+1)*chunk])
		cmd := start()
		// Wait until this process has applied something, then kill it mid-stream.
		waitUntil := time.Now().Add(30 * time.Second)
		for processedBy(metricsURL) == 0 && time.Now().Before(waitUntil) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
		n := processedBy(metricsURL)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", i, err)
		}
		_ = cmd.Wait()
		if n > 0 {
			interrupted++
		}
	}
	if interrupted < kills/2 {
		t.Fatalf("only %d of %d killed processors had started working: the test did not exercise crashes", interrupted, kills)
	}
	produce(events[min(kills*chunk, len(events)):])
	final := start()
	defer func() {
		final.Process.Signal(syscall.SIGTERM)
		final.Wait()
	}()

	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: redisAddr})
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
	mismatch := func() string {
		for _, lead := range leads {
			for _, model := range []string{"steady", "decaying"} {
				want := expected[lead][model]
				rec, err := store.ReadLead(ctx, lead)
				if err != nil {
					t.Fatal(err)
				}
				var v float64
				var ts int64
				if rec.State != nil && rec.State.Model(model) != nil {
					v, ts = rec.State.Model(model).V, rec.State.Model(model).T
				}
				if math.Abs(v-want.v) > 1e-9*math.Max(1, math.Abs(want.v)) || (want.v != 0 && ts != want.t) {
					return fmt.Sprintf("%s %s: redis v=%v t=%v, want v=%v t=%v", lead, model, v, ts, want.v, want.t)
				}
			}
		}
		return ""
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		m := mismatch()
		if m == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d SIGKILLs the scores do not match the event list: %s", kills, m)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Every lead that reached 100 in the steady model crossed exactly once.
	wantMQL := map[string]bool{}
	for lead, s := range expected {
		if s["steady"].v >= 100 {
			wantMQL[lead] = true
		}
	}
	// One reader until every crossing is there (joining a group can take
	// seconds on a loaded machine), then a short second read that would see
	// a record published twice with different ids.
	enough := func(recs []event.MQL) bool { return len(uniqueMQL(recs)) >= len(wantMQL) }
	records := readMQLUntil(t, brokers, kcfg.Topic(stream.TopicMQL), enough, 90*time.Second)
	if enough(records) {
		more := readMQLUntil(t, brokers, kcfg.Topic(stream.TopicMQL), func(recs []event.MQL) bool { return len(uniqueMQL(recs)) > len(wantMQL) }, 5*time.Second)
		if len(uniqueMQL(more)) > len(uniqueMQL(records)) {
			records = more
		}
	}
	unique := uniqueMQL(records)
	perLead := map[string]int{}
	for _, m := range unique {
		perLead[m.LeadID]++
		if m.Model != "steady" {
			t.Errorf("crossing in model %s, which cannot cross", m.Model)
		}
	}
	for lead := range wantMQL {
		if perLead[lead] != 1 {
			// Tell a record stuck in the lead's outbox (stored, never
			// published) from one lost altogether.
			pending, err := store.Outbox(ctx, []string{lead})
			rec, rerr := store.ReadLead(ctx, lead)
			var mqls []string
			if rerr == nil && rec.State != nil {
				for _, ms := range rec.State.Models {
					mqls = append(mqls, fmt.Sprintf("%s mql=%v", ms.Name, ms.MQL))
				}
			}
			t.Errorf("lead %s: %d distinct MQL records, want 1 (pending in its outbox: %d %v; state: %v %v)", lead, perLead[lead], len(pending), err, mqls, rerr)
		}
	}
	if len(unique) != len(wantMQL) {
		t.Errorf("%d distinct mql_ids, want %d", len(unique), len(wantMQL))
	}
	mqas := checkKillAccounts(t, store, brokers, kcfg, rules, events, expected)
	t.Logf("%d events (+ redeliveries), %d SIGKILLs (%d while working), %d leads, %d MQLs (%d records incl. republished duplicates), %d accounts, %d MQAs",
		len(events), kills, interrupted, len(expected), len(unique), len(records), killAccounts, mqas)
}

// processedBy reads how many events a processor applied (scored or duplicate)
// from its /metrics; 0 when it is not serving yet.
func processedBy(url string) float64 {
	res, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	total := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		for _, r := range []string{`leadstream_processor_events_total{result="scored"} `, `leadstream_processor_events_total{result="duplicate"} `} {
			if v, ok := strings.CutPrefix(line, r); ok {
				f, _ := strconv.ParseFloat(v, 64)
				total += f
			}
		}
	}
	return total
}

type killState struct {
	v float64
	t int64
}

// expectedScores folds every event into per-lead, per-model (v, t) with the
// pure scoring math, treating an identified anonymous visitor's events as the
// lead's all along.
func expectedScores(t *testing.T, rules *scoring.Rules, events []event.Event) map[string]map[string]killState {
	t.Helper()
	links := map[string]string{}
	for _, e := range events {
		if e.AnonymousID != "" && e.LeadID != "" {
			links[e.AnonymousID] = e.LeadID
		}
	}
	out := map[string]map[string]killState{}
	var hits []scoring.Hit
	for i := range events {
		e := &events[i]
		lead := e.LeadID
		if lead == "" {
			lead = links[e.AnonymousID]
		}
		if lead == "" {
			continue
		}
		if out[lead] == nil {
			out[lead] = map[string]killState{}
		}
		for _, m := range rules.Models {
			s := out[lead][m.Name]
			hits = m.Match(e, hits[:0])
			for _, h := range hits {
				s.v, s.t = scoring.Add(s.v, s.t, h.Points, e.EventTime.UnixMilli(), m.HalfLife)
			}
			out[lead][m.Name] = s
		}
	}
	return out
}

func uniqueMQL(records []event.MQL) map[string]event.MQL {
	out := map[string]event.MQL{}
	for _, r := range records {
		if prev, ok := out[r.MQLID]; ok {
			a, _ := json.Marshal(prev)
			b, _ := json.Marshal(r)
			if string(a) != string(b) {
				panic(fmt.Sprintf("BUG: one mql_id, two different records:\n%s\n%s", a, b))
			}
		}
		out[r.MQLID] = r
	}
	return out
}
