package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// monthsConn is the real connection, noting for each INSERT the months
// (UTC) of the rows it sends into the partition key column of events
// (event_time) or mql (crossed_at).
type monthsConn struct {
	driver.Conn
	mu      sync.Mutex
	inserts map[string][]map[int]bool // table -> months of each INSERT sent
}

var insertInto = regexp.MustCompile(`^INSERT INTO \w+\.(\w+) \((.*)\)$`)

func (c *monthsConn) PrepareBatch(ctx context.Context, q string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	b, err := c.Conn.PrepareBatch(ctx, q, opts...)
	if err != nil {
		return nil, err
	}
	m := insertInto.FindStringSubmatch(q)
	if m == nil {
		return b, nil
	}
	col := -1
	for i, name := range strings.Split(m[2], ", ") {
		if name == "event_time" && m[1] == warehouse.TableEvents || name == "crossed_at" && m[1] == warehouse.TableMQL {
			col = i
		}
	}
	return &monthsBatch{Batch: b, c: c, table: m[1], col: col, months: map[int]bool{}}, nil
}

type monthsBatch struct {
	driver.Batch
	c      *monthsConn
	table  string
	col    int
	months map[int]bool
}

func (b *monthsBatch) Column(i int) driver.BatchColumn {
	if i != b.col {
		return b.Batch.Column(i)
	}
	return monthsColumn{b.Batch.Column(i), b}
}

func (b *monthsBatch) Send() error {
	err := b.Batch.Send()
	if err == nil {
		b.c.mu.Lock()
		b.c.inserts[b.table] = append(b.c.inserts[b.table], b.months)
		b.c.mu.Unlock()
	}
	return err
}

type monthsColumn struct {
	driver.BatchColumn
	b *monthsBatch
}

func (c monthsColumn) Append(v any) error {
	for _, t := range v.([]time.Time) {
		t = t.UTC()
		c.b.months[t.Year()*100+int(t.Month())] = true
	}
	return c.BatchColumn.Append(v)
}

// newTestHandler is a handler on db (migrated) with a dead-letter producer
// on a fresh broker.
func newTestHandler(t *testing.T, conn driver.Conn, db string) (*handler, stream.Config) {
	t.Helper()
	kcfg := stream.Config{TopicPrefix: "leadstream.", Partitions: testsvc.KafkaPartitions, ReplicationFactor: -1}
	kcfg.Brokers = testsvc.Kafka(t, kcfg.Topic(stream.TopicDeadLetter))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := warehouse.Migrate(ctx, conn, db); err != nil {
		t.Fatal(err)
	}
	dlq, err := stream.NewProducer(ctx, stream.ProducerConfig{Brokers: kcfg.Brokers, Topic: kcfg.Topic(stream.TopicDeadLetter)}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dlq.Close() })
	return &handler{w: writer{conn: conn, db: db, m: newMetrics(prometheus.NewRegistry())}, dlq: dlq, log: slog.New(slog.DiscardHandler),
		eventsTopic: "ev", mqlTopic: "mq", ok: func() {}}, kcfg
}

func eventMessage(t *testing.T, e *event.Event, offset int) stream.Message {
	t.Helper()
	b, err := event.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return stream.Message{Topic: "ev", Offset: int64(offset), Value: b}
}

func mqlMessage(t *testing.T, m event.MQL, offset int) stream.Message {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return stream.Message{Topic: "mq", Offset: int64(offset), Value: b}
}

// A batch with events in 130 months and MQL crossings in 120 (what a public
// write key can send) is stored whole, in INSERTs of at most maxMonths months
// each — never more than ClickHouse's 100 partitions per INSERT, in any time
// zone — and in one INSERT per table when its rows span few months.
func TestSinkSplitsInsertsByPartition(t *testing.T) {
	conn, cfg := warehousetest.Open(t, "sinkparts")
	mc := &monthsConn{Conn: conn, inserts: map[string][]map[int]bool{}}
	h, _ := newTestHandler(t, mc, cfg.Database)
	ctx := context.Background()

	base := time.Date(2010, 1, 15, 12, 0, 0, 0, time.UTC)
	var batch []stream.Message
	for i := range 390 { // 130 months, three events each, months interleaved
		e := &event.Event{ID: fmt.Sprintf("ev-%d", i), Type: event.PageView, EventTime: base.AddDate(0, i%130, 0), ReceivedAt: base,
			AnonymousID: fmt.Sprintf("anon-%d", i%7), LeadID: fmt.Sprintf("lead-%d", i%5)}
		batch = append(batch, eventMessage(t, e, len(batch)))
		if i < 120 {
			m := event.MQL{MQLID: fmt.Sprintf("mql-%d", i), LeadID: "lead-1", Model: "default", Score: 100, Threshold: 100,
				CrossedAt: base.AddDate(0, i, 0), TriggerEventID: e.ID}
			batch = append(batch, mqlMessage(t, m, len(batch)))
		}
	}
	st := time.Now()
	if err := h.handle(ctx, batch); err != nil {
		t.Fatal(err)
	}
	t.Logf("130 months: handled in %v", time.Since(st).Round(time.Millisecond))
	for table, want := range map[string]struct{ rows, inserts, months int }{
		warehouse.TableEvents: {390, 3, 130},
		warehouse.TableMQL:    {120, 3, 120},
	} {
		got := warehousetest.Count(t, conn, fmt.Sprintf("SELECT count() FROM %s.%s FINAL", cfg.Database, table))
		parts := warehousetest.Count(t, conn, fmt.Sprintf("SELECT uniqExact(partition) FROM system.parts WHERE active AND database = '%s' AND table = '%s'", cfg.Database, table))
		if got != uint64(want.rows) || parts != uint64(want.months) {
			t.Errorf("%s: %d rows in %d partitions, want %d in %d", table, got, parts, want.rows, want.months)
		}
		seen := map[int]bool{}
		for i, ms := range mc.inserts[table] {
			if len(ms) > maxMonths {
				t.Errorf("%s: INSERT %d touched %d months, more than %d", table, i, len(ms), maxMonths)
			}
			for m := range ms {
				if seen[m] {
					t.Errorf("%s: month %d in two INSERTs", table, m)
				}
				seen[m] = true
			}
		}
		if len(mc.inserts[table]) != want.inserts || len(seen) != want.months {
			t.Errorf("%s: %d INSERTs covering %d months, want %d covering %d", table, len(mc.inserts[table]), len(seen), want.inserts, want.months)
		}
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+cfg.Database+".identity_links FINAL"); n != 35 {
		t.Errorf("%d identity links, want 35 (7 visitors x 5 leads)", n)
	}

	// Ordinary traffic: one INSERT per table.
	mc.inserts = map[string][]map[int]bool{}
	batch = batch[:0]
	for i := range 1000 {
		e := &event.Event{ID: fmt.Sprintf("now-%d", i), Type: event.PageView, EventTime: base.Add(time.Duration(i) * time.Hour), ReceivedAt: base, LeadID: "l"}
		batch = append(batch, eventMessage(t, e, i))
	}
	if err := h.handle(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if n := len(mc.inserts[warehouse.TableEvents]); n != 1 {
		t.Errorf("%d INSERTs for 1000 events in 2 months, want 1", n)
	}
}

// Rows ClickHouse refuses for what they hold go to the dead-letter topic
// with ClickHouse's reason, after a few tries alone; the rest of the batch is
// stored. ClickHouse 18.16 refuses nothing the sink sends (CheckEvent keeps
// out what its types cannot hold), so the test narrows its tables: a
// MATERIALIZED throwIf column refuses one track name, one model and one lead
// of identity_links, as a constraint of a modern server would.
func TestSinkDeadLettersRowsClickHouseRefuses(t *testing.T) {
	conn, cfg := warehousetest.Open(t, "sinkpoison")
	h, kcfg := newTestHandler(t, conn, cfg.Database)
	ctx := context.Background()
	for _, q := range []string{
		"ALTER TABLE %s.events ADD COLUMN refuse UInt8 MATERIALIZED throwIf(track = 'Poison Pill')",
		"ALTER TABLE %s.mql ADD COLUMN refuse UInt8 MATERIALIZED throwIf(model = 'poison')",
		"ALTER TABLE %s.identity_links ADD COLUMN refuse UInt8 MATERIALIZED throwIf(lead_id = 'poison-lead')",
	} {
		if err := conn.Exec(ctx, fmt.Sprintf(q, cfg.Database)); err != nil {
			t.Fatal(err)
		}
	}
	evs := testEvents(2000)
	poison := map[int]bool{17: true, 1000: true, 1999: true}
	var batch []stream.Message
	for i := range evs {
		e := &evs[i]
		if poison[i] {
			e.Type, e.Track = event.Custom, "Poison Pill"
		}
		if i == 500 {
			// Stored in events, but its identity link is refused.
			e.Type, e.AnonymousID, e.LeadID = event.Identify, "anon-poison", "poison-lead"
		}
		batch = append(batch, eventMessage(t, e, len(batch)))
	}
	ms := testMQLs()
	bad := ms[0]
	bad.MQLID, bad.Model = "mql-poison", "poison"
	for _, m := range append(ms, bad) {
		batch = append(batch, mqlMessage(t, m, len(batch)))
	}
	start := time.Now()
	if err := h.handle(ctx, batch); err != nil {
		t.Fatal(err)
	}
	var inserts []string
	for _, table := range []string{"events", "identity_links", "mql"} {
		inserts = append(inserts, fmt.Sprintf("%s %d", table, histogramCount(t, h.w.m.insertTime.WithLabelValues(table))))
	}
	t.Logf("2003 records, 5 refused rows: handled in %v with INSERTs: %s", time.Since(start).Round(time.Millisecond), strings.Join(inserts, ", "))

	stored := storedEvents(t, conn, cfg.Database)
	if len(stored) != len(evs)-len(poison) {
		t.Errorf("stored %d events, want %d", len(stored), len(evs)-len(poison))
	}
	for i := range poison {
		if _, ok := stored[evs[i].ID]; ok {
			t.Errorf("refused event %s stored", evs[i].ID)
		}
	}
	if _, ok := stored[evs[500].ID]; !ok {
		t.Error("the event whose identity link was refused is not in events")
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+cfg.Database+".mql FINAL"); n != uint64(len(ms)) {
		t.Errorf("%d MQL rows, want %d", n, len(ms))
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+cfg.Database+".identity_links FINAL WHERE lead_id = 'poison-lead'"); n != 0 {
		t.Errorf("%d refused identity links stored", n)
	}
	if n := warehousetest.Count(t, conn, "SELECT count() FROM "+cfg.Database+".identity_links FINAL"); n == 0 {
		t.Error("no identity links stored")
	}

	dead := readDeadLetters(ctx, t, kcfg, 5)
	want := map[string]string{ // topic@offset -> table named in the reason
		"ev@17": "events", "ev@1000": "events", "ev@1999": "events", "ev@500": "identity_links", fmt.Sprintf("mq@%d", len(batch)-1): "mql",
	}
	for _, d := range dead {
		topic := "ev"
		if d.SourceTopic != "" {
			topic = d.SourceTopic
		}
		k := fmt.Sprintf("%s@%d", topic, d.Offset)
		table, ok := want[k]
		if !ok {
			t.Errorf("unexpected dead letter %s: %s", k, d.Reason)
			continue
		}
		if prefix := "clickhouse refused the row of " + table + ": code: 395"; !strings.HasPrefix(d.Reason, prefix) {
			t.Errorf("dead letter %s: reason %q, want %q…", k, d.Reason, prefix)
		}
		delete(want, k)
	}
	if len(want) != 0 {
		t.Errorf("no dead letter for %v", want)
	}
	if got := counterValue(t, h.w.m.deadLetters.WithLabelValues("ev")); got != 4 {
		t.Errorf("dead letters from events = %v, want 4", got)
	}
	var last dto.Metric
	if err := h.w.m.lastDead.WithLabelValues("ev").Write(&last); err != nil {
		t.Fatal(err)
	}
	if at := time.Unix(int64(last.GetGauge().GetValue()), 0); time.Since(at) > time.Minute {
		t.Errorf("leadstream_sink_deadletter_last_timestamp_seconds = %v, want about now", at)
	}
}

// A failure that is not the rows' (a table gone, ClickHouse down) is
// returned for the consumer to retry: nothing is dead-lettered.
func TestSinkRetriesWhatIsNotTheRows(t *testing.T) {
	conn, cfg := warehousetest.Open(t, "sinktransient")
	h, _ := newTestHandler(t, conn, cfg.Database)
	ctx := context.Background()
	if err := conn.Exec(ctx, "DROP TABLE "+cfg.Database+".mql"); err != nil {
		t.Fatal(err)
	}
	evs := testEvents(10)
	batch := []stream.Message{eventMessage(t, &evs[0], 0), mqlMessage(t, testMQLs()[0], 1)}
	err := h.handle(ctx, batch)
	if err == nil || warehouse.Refused(err) {
		t.Fatalf("handle = %v, want a transient error", err)
	}
	if got := counterValue(t, h.w.m.deadLetters.WithLabelValues("mq")); got != 0 {
		t.Errorf("%v records dead-lettered for a missing table", got)
	}
}

func histogramCount(t *testing.T, o prometheus.Observer) uint64 {
	t.Helper()
	var m dto.Metric
	if err := o.(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// A batch with more refused rows than one attempt (bounded in time, as the
// consumer bounds each) can isolate still ends: what an attempt found refused
// is rejected at once by the next, so each attempt makes progress. Every
// refused row is dead-lettered, at the end, and the rest is stored.
//
// How many attempts it takes depends on how fast ClickHouse answers (a
// loaded CI host with -race needed over 30): the test fails when attempts
// stop adding refused rows, not at a fixed count.
func TestSinkIsolationSpansAttempts(t *testing.T) {
	conn, cfg := warehousetest.Open(t, "sinkpoisonmany")
	h, kcfg := newTestHandler(t, conn, cfg.Database)
	ctx := context.Background()
	if err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.events ADD COLUMN refuse UInt8 MATERIALIZED throwIf(track = 'Poison Pill')", cfg.Database)); err != nil {
		t.Fatal(err)
	}
	evs := testEvents(2000)
	const nPoison = 40
	var batch []stream.Message
	for i := range evs {
		e := &evs[i]
		if i%(len(evs)/nPoison) == 7 {
			e.Type, e.Track = event.Custom, "Poison Pill"
		}
		batch = append(batch, eventMessage(t, e, len(batch)))
	}
	// Each row refused alone waits 150 ms between its tries: 40 take 6 s,
	// twice one attempt's bound, whatever the speed of ClickHouse.
	defer func(w time.Duration) { rowRetryWait = w }(rowRetryWait)
	rowRetryWait = 50 * time.Millisecond
	const (
		bound = 3 * time.Second
		// stalls is how many attempts in a row may add no refused row (on a
		// loaded host an attempt may spend its bound before the first),
		// and ceiling how many attempts the batch may take at most.
		stalls  = 5
		ceiling = 3 * nPoison
	)
	attempts, stalled := 0, 0
	for {
		attempts++
		known := len(h.refused)
		actx, cancel := context.WithTimeout(ctx, bound)
		err := h.handle(actx, batch)
		cancel()
		if err == nil {
			break
		}
		if len(h.refused) > known {
			stalled = 0
		} else if stalled++; stalled == stalls {
			t.Fatalf("no progress: %d attempts of %v in a row added no refused row (%d of %d known after %d attempts): %v",
				stalls, bound, len(h.refused), nPoison, attempts, err)
		}
		if attempts == ceiling {
			t.Fatalf("batch not handled after %d attempts of %v (%d of %d refused rows known): %v", attempts, bound, len(h.refused), nPoison, err)
		}
	}
	t.Logf("%d records with %d refused rows handled in %d attempts of at most %v", len(batch), nPoison, attempts, bound)
	if attempts < 2 {
		t.Errorf("handled in one attempt: the test did not make isolation outlast an attempt")
	}
	if len(h.refused) != 0 {
		t.Errorf("%d refusals remembered after the batch was handled", len(h.refused))
	}
	if stored := storedEvents(t, conn, cfg.Database); len(stored) != len(evs)-nPoison {
		t.Errorf("stored %d events, want %d", len(stored), len(evs)-nPoison)
	}
	// Every refused row dead-lettered, nothing else; at least once (an
	// attempt cut short while its dead letters were acknowledged repeats them).
	seen := map[int64]int{}
	for more := nPoison; len(seen) < nPoison; more = 1 {
		for _, d := range readDeadLetters(ctx, t, kcfg, more) {
			if d.Offset%int64(len(evs)/nPoison) != 7 {
				t.Fatalf("dead letter at offset %d: not a refused row (%s)", d.Offset, d.Reason)
			}
			seen[d.Offset]++
		}
	}
	copies := 0
	for _, n := range seen {
		copies += n
	}
	t.Logf("%d refused rows dead-lettered, %d copies in all", len(seen), copies)
}
