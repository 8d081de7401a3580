package report

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/sink"
)

// The fixture: sink/testdata/analytics holds a small, hand-checked data set
// (events.jsonl, mql.jsonl, costs.csv). Its story is told in report_test.go
// next to the numbers it must give.
const fixtureDir = "../testdata/analytics/"

// fixtureEvent is an event as the fixture stores it: the topic form plus
// the bot flag, which the sink does not set yet.
type fixtureEvent struct {
	event.Event
	Bot       uint8  `json:"bot"`
	BotReason string `json:"bot_reason"`
}

func readJSONL[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// testDB connects to the test ClickHouse and migrates a fresh database,
// dropped when the test ends.
func testDB(t testing.TB) (driver.Conn, sink.ClickHouseConfig) {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	cfg := sink.ClickHouseConfig{Addr: testsvc.ClickHouse(t), Database: "reporttest_" + hex.EncodeToString(b[:]),
		Username: "default", DialTimeout: 5 * time.Second}
	ctx := context.Background()
	conn, err := sink.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.Database); err != nil {
			t.Errorf("dropping %s: %v", cfg.Database, err)
		}
		conn.Close()
	})
	if err := sink.Migrate(ctx, conn, cfg.Database); err != nil {
		t.Fatal(err)
	}
	return conn, cfg
}

// loadFixture inserts the fixture's events and MQLs (loadEvents) and imports
// its costs through sink.ImportCosts. Calling it twice is a replay.
func loadFixture(t testing.TB, conn driver.Conn, db string) {
	t.Helper()
	loadEvents(t, conn, db)
	f, err := os.Open(fixtureDir + "costs.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	costs, err := sink.ParseCosts(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.ImportCosts(context.Background(), conn, db, costs, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// loadEvents inserts the fixture's events and MQLs into db the way the sink
// stores them: explicit column lists, one block per table, identity links
// from every event carrying both ids and from alias events.
func loadEvents(t testing.TB, conn driver.Conn, db string) {
	t.Helper()
	evs := readJSONL[fixtureEvent](t, fixtureDir+"events.jsonl")
	insert(t, conn, db+".events", len(evs), map[string]any{
		"event_id":      pluck(evs, func(e fixtureEvent) string { return e.ID }),
		"type":          pluck(evs, func(e fixtureEvent) string { return string(e.Type) }),
		"event_time":    pluck(evs, func(e fixtureEvent) time.Time { return e.EventTime }),
		"event_time_ms": pluck(evs, func(e fixtureEvent) uint64 { return uint64(e.EventTime.UnixMilli()) }),
		"received_at":   pluck(evs, func(e fixtureEvent) time.Time { return e.ReceivedAt }),
		"anonymous_id":  pluck(evs, func(e fixtureEvent) string { return e.AnonymousID }),
		"lead_id":       pluck(evs, func(e fixtureEvent) string { return e.LeadID }),
		"previous_id":   pluck(evs, func(e fixtureEvent) string { return e.PreviousID }),
		"campaign":      pluck(evs, func(e fixtureEvent) string { return e.Campaign }),
		"utm_source":    pluck(evs, func(e fixtureEvent) string { return e.UTMSource }),
		"utm_medium":    pluck(evs, func(e fixtureEvent) string { return e.UTMMedium }),
		"utm_campaign":  pluck(evs, func(e fixtureEvent) string { return e.UTMCampaign }),
		"path":          pluck(evs, func(e fixtureEvent) string { return e.Path }),
		"referrer":      pluck(evs, func(e fixtureEvent) string { return e.Referrer }),
		"revenue":       pluck(evs, func(e fixtureEvent) decimal.Decimal { return decimal.NewFromFloat(e.Revenue) }),
		"currency":      pluck(evs, func(e fixtureEvent) string { return e.Currency }),
		"bot":           pluck(evs, func(e fixtureEvent) uint8 { return e.Bot }),
		"bot_reason":    pluck(evs, func(e fixtureEvent) string { return e.BotReason }),
	})

	var anon, lead, linkEvent []string
	var linkedAt []time.Time
	seen := map[[2]string]bool{} // one row per pair and batch, the earliest, as the sink folds them
	link := func(a string, e fixtureEvent) {
		if a != "" && e.LeadID != "" && !seen[[2]string{a, e.LeadID}] {
			seen[[2]string{a, e.LeadID}] = true
			anon, lead, linkedAt, linkEvent = append(anon, a), append(lead, e.LeadID), append(linkedAt, e.EventTime), append(linkEvent, e.ID)
		}
	}
	for _, e := range evs { // in time order
		link(e.AnonymousID, e)
		if e.Type == event.Alias {
			link(e.PreviousID, e)
		}
	}
	insert(t, conn, db+".identity_links", len(anon), map[string]any{
		"anonymous_id": anon, "lead_id": lead, "linked_at": linkedAt, "event_id": linkEvent,
	})

	mqls := readJSONL[event.MQL](t, fixtureDir+"mql.jsonl")
	insert(t, conn, db+".mql", len(mqls), map[string]any{
		"mql_id":           pluck(mqls, func(m event.MQL) string { return m.MQLID }),
		"lead_id":          pluck(mqls, func(m event.MQL) string { return m.LeadID }),
		"model":            pluck(mqls, func(m event.MQL) string { return m.Model }),
		"score":            pluck(mqls, func(m event.MQL) float64 { return m.Score }),
		"threshold":        pluck(mqls, func(m event.MQL) float64 { return m.Threshold }),
		"crossed_at":       pluck(mqls, func(m event.MQL) time.Time { return m.CrossedAt }),
		"crossed_at_ms":    pluck(mqls, func(m event.MQL) uint64 { return uint64(m.CrossedAt.UnixMilli()) }),
		"trigger_event_id": pluck(mqls, func(m event.MQL) string { return m.TriggerEventID }),
	})
}

func pluck[S, T any](src []S, f func(S) T) []T {
	out := make([]T, len(src))
	for i, s := range src {
		out[i] = f(s)
	}
	return out
}

// insert sends one block; cols maps column names to value slices of n rows.
func insert(t testing.TB, conn driver.Conn, table string, n int, cols map[string]any) {
	t.Helper()
	var names []string
	var values []any
	for name, v := range cols {
		names = append(names, name)
		values = append(values, v)
	}
	q := "INSERT INTO " + table + " ("
	for i, name := range names {
		if i > 0 {
			q += ", "
		}
		q += name
	}
	batch, err := conn.PrepareBatch(context.Background(), q+")")
	if err != nil {
		t.Fatalf("preparing insert into %s: %v", table, err)
	}
	for i, v := range values {
		if err := batch.Column(i).Append(v); err != nil {
			t.Fatalf("appending %s to %s: %v", names[i], table, err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("inserting %d rows into %s: %v", n, table, err)
	}
}
