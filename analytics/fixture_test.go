package analytics

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// The fixture: analytics/testdata holds a small, hand-checked data set
// (events.jsonl, mql.jsonl, costs.csv). Its story is told in report_test.go
// next to the numbers it must give.
const fixtureDir = "testdata/"

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
func testDB(t testing.TB) (driver.Conn, warehouse.Config) {
	t.Helper()
	return warehousetest.Migrated(t, "reporttest")
}

// loadFixture inserts the fixture's events and MQLs (loadEvents) and imports
// its costs through warehouse.ImportCosts. Calling it twice is a replay.
func loadFixture(t testing.TB, conn driver.Conn, db string) {
	t.Helper()
	loadEvents(t, conn, db)
	f, err := os.Open(fixtureDir + "costs.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	costs, err := warehouse.ParseCosts(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := warehouse.ImportCosts(context.Background(), conn, db, costs, time.Now()); err != nil {
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
		"event_id":      warehouse.Pluck(evs, func(e *fixtureEvent) string { return e.ID }),
		"type":          warehouse.Pluck(evs, func(e *fixtureEvent) string { return string(e.Type) }),
		"event_time":    warehouse.Pluck(evs, func(e *fixtureEvent) time.Time { return e.EventTime }),
		"event_time_ms": warehouse.Pluck(evs, func(e *fixtureEvent) uint64 { return uint64(e.EventTime.UnixMilli()) }),
		"received_at":   warehouse.Pluck(evs, func(e *fixtureEvent) time.Time { return e.ReceivedAt }),
		"anonymous_id":  warehouse.Pluck(evs, func(e *fixtureEvent) string { return e.AnonymousID }),
		"lead_id":       warehouse.Pluck(evs, func(e *fixtureEvent) string { return e.LeadID }),
		"previous_id":   warehouse.Pluck(evs, func(e *fixtureEvent) string { return e.PreviousID }),
		"campaign":      warehouse.Pluck(evs, func(e *fixtureEvent) string { return e.Campaign }),
		"utm_source":    warehouse.Pluck(evs, func(e *fixtureEvent) string { return e.UTMSource }),
		"utm_medium":    warehouse.Pluck(evs, func(e *fixtureEvent) string { return e.UTMMedium }),
		"utm_campaign":  warehouse.Pluck(evs, func(e *fixtureEvent) string { return e.UTMCampaign }),
		"path":          warehouse.Pluck(evs, func(e *fixtureEvent) string { return e.Path }),
		"referrer":      warehouse.Pluck(evs, func(e *fixtureEvent) string { return e.Referrer }),
		"revenue":       warehouse.Pluck(evs, func(e *fixtureEvent) decimal.Decimal { return decimal.NewFromFloat(e.Revenue) }),
		"currency":      warehouse.Pluck(evs, func(e *fixtureEvent) string { return e.Currency }),
		"bot":           warehouse.Pluck(evs, func(e *fixtureEvent) uint8 { return e.Bot }),
		"bot_reason":    warehouse.Pluck(evs, func(e *fixtureEvent) string { return e.BotReason }),
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
		"mql_id":           warehouse.Pluck(mqls, func(m *event.MQL) string { return m.MQLID }),
		"lead_id":          warehouse.Pluck(mqls, func(m *event.MQL) string { return m.LeadID }),
		"model":            warehouse.Pluck(mqls, func(m *event.MQL) string { return m.Model }),
		"score":            warehouse.Pluck(mqls, func(m *event.MQL) float64 { return m.Score }),
		"threshold":        warehouse.Pluck(mqls, func(m *event.MQL) float64 { return m.Threshold }),
		"crossed_at":       warehouse.Pluck(mqls, func(m *event.MQL) time.Time { return m.CrossedAt }),
		"crossed_at_ms":    warehouse.Pluck(mqls, func(m *event.MQL) uint64 { return uint64(m.CrossedAt.UnixMilli()) }),
		"trigger_event_id": warehouse.Pluck(mqls, func(m *event.MQL) string { return m.TriggerEventID }),
	})
	loadAccounts(t, conn, db)
}

// fixtureMember is an account_members row of the fixture, as the sink
// writes one per group call (or work e-mail identify).
type fixtureMember struct {
	AccountID   string    `json:"account_id"`
	LeadID      string    `json:"lead_id"`
	AnonymousID string    `json:"anonymous_id"`
	Source      string    `json:"source"`
	JoinedAt    time.Time `json:"joined_at"`
	EventID     string    `json:"event_id"`
}

// loadAccounts inserts the fixture's account memberships and MQA crossings.
func loadAccounts(t testing.TB, conn driver.Conn, db string) {
	t.Helper()
	ms := readJSONL[fixtureMember](t, fixtureDir+"account_members.jsonl")
	insert(t, conn, db+".account_members", len(ms), map[string]any{
		"account_id":   warehouse.Pluck(ms, func(m *fixtureMember) string { return m.AccountID }),
		"lead_id":      warehouse.Pluck(ms, func(m *fixtureMember) string { return m.LeadID }),
		"anonymous_id": warehouse.Pluck(ms, func(m *fixtureMember) string { return m.AnonymousID }),
		"source":       warehouse.Pluck(ms, func(m *fixtureMember) string { return m.Source }),
		"joined_at":    warehouse.Pluck(ms, func(m *fixtureMember) time.Time { return m.JoinedAt }),
		"joined_at_ms": warehouse.Pluck(ms, func(m *fixtureMember) uint64 { return uint64(m.JoinedAt.UnixMilli()) }),
		"event_id":     warehouse.Pluck(ms, func(m *fixtureMember) string { return m.EventID }),
	})
	mqas := readJSONL[event.MQA](t, fixtureDir+"mqa.jsonl")
	insert(t, conn, db+".mqa", len(mqas), map[string]any{
		"mqa_id":           warehouse.Pluck(mqas, func(m *event.MQA) string { return m.MQAID }),
		"account_id":       warehouse.Pluck(mqas, func(m *event.MQA) string { return m.AccountID }),
		"model":            warehouse.Pluck(mqas, func(m *event.MQA) string { return m.Model }),
		"score":            warehouse.Pluck(mqas, func(m *event.MQA) float64 { return m.Score }),
		"threshold":        warehouse.Pluck(mqas, func(m *event.MQA) float64 { return m.Threshold }),
		"crossed_at":       warehouse.Pluck(mqas, func(m *event.MQA) time.Time { return m.CrossedAt }),
		"crossed_at_ms":    warehouse.Pluck(mqas, func(m *event.MQA) uint64 { return uint64(m.CrossedAt.UnixMilli()) }),
		"trigger_event_id": warehouse.Pluck(mqas, func(m *event.MQA) string { return m.TriggerEventID }),
		"engaged_members":  warehouse.Pluck(mqas, func(m *event.MQA) uint32 { return uint32(m.EngagedMembers) }),
	})
}

// insert sends one block; cols maps column names to value slices of n rows.
func insert(t testing.TB, conn driver.Conn, table string, n int, cols map[string]any) {
	t.Helper()
	var list []warehouse.Column
	for name, v := range cols {
		list = append(list, warehouse.Column{Name: name, Values: v})
	}
	db, tbl, _ := strings.Cut(table, ".")
	if err := warehouse.Insert(context.Background(), conn, db, tbl, n, list); err != nil {
		t.Fatal(err)
	}
}
