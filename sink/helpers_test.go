package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/warehouse"
	"github.com/leadstream/leadstream/warehouse/warehousetest"
)

// testDB connects to the test ClickHouse and returns a fresh database name,
// dropped when the test ends. The database itself is created by Migrate.
func testDB(t testing.TB) (driver.Conn, warehouse.Config) {
	t.Helper()
	return warehousetest.Open(t, "sinktest")
}

// testEvents returns n valid events of every type, spread over three months
// (three partitions), with millisecond times and a few identities that
// repeat, as real traffic does.
func testEvents(n int) []event.Event {
	base := time.Date(2025, 3, 14, 9, 26, 53, 589_000_000, time.UTC)
	evs := make([]event.Event, n)
	for i := range evs {
		t := base.AddDate(0, i%3, 0).Add(time.Duration(i) * 1237 * time.Millisecond)
		e := event.Event{
			ID:          fmt.Sprintf("evt-%07d", i),
			Type:        event.Types[i%len(event.Types)],
			EventTime:   t,
			ReceivedAt:  t.Add(150 * time.Millisecond),
			AnonymousID: fmt.Sprintf("anon-%d", i%17),
			WriteKeyID:  "wk-web",
			IP:          "203.0.113.7",
			UserAgent:   "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
			URL:         fmt.Sprintf("https://example.com/pricing?utm_source=newsletter&i=%d", i),
			Path:        "/pricing",
			Referrer:    "https://www.google.com/",
			Title:       "料金プラン | Example",
			UTMSource:   "newsletter",
			UTMMedium:   "email",
			UTMCampaign: "spring-launch",
			UTMTerm:     "crm",
			UTMContent:  "hero-button",
			Campaign:    "cmp-42",
			Properties:  json.RawMessage(fmt.Sprintf(`{"plan":"enterprise","seats":%d,"tags":["a","b"],"nested":{"x":1.5},"note":"quote \" and \\u00e9"}`, i%50)),
		}
		if i%4 != 3 { // the others have no client timestamp, context or integrations (older records too)
			e.OriginalTimestamp = t.Add(-time.Hour - 7*time.Millisecond)
			e.Context = json.RawMessage(fmt.Sprintf(`{"library":{"name":"analytics.js","version":"next-1.84.3"},"page":{"url":"https://example.com/pricing?i=%d"},"locale":"ja-JP"}`, i))
		}
		if i%4 == 1 {
			e.Integrations = json.RawMessage(`{"All":false,"Salesforce":true}`)
		}
		if e.Type == event.Group {
			e.GroupID = fmt.Sprintf("acct-%d", i%5)
		}
		switch e.Type {
		case event.EmailOpen, event.EmailClick:
			e.AnonymousID, e.LeadID = "", fmt.Sprintf("lead-%d", i%11)
		case event.FormSubmit, event.Identify:
			e.LeadID = fmt.Sprintf("lead-%d", i%11)
			e.Traits = json.RawMessage(`{"email":"jane@example.com","title":"CTO","company_size":250}`)
		case event.Alias:
			e.AnonymousID, e.PreviousID, e.LeadID = "", fmt.Sprintf("old-%d", i%5), fmt.Sprintf("lead-%d", i%11)
		case event.DealWon:
			e.AnonymousID, e.LeadID = "", fmt.Sprintf("lead-%d", i%11)
			e.Revenue, e.Currency = 12345.6789+float64(i), "JPY"
		case event.Custom:
			e.Track = "Webinar Attended"
		}
		evs[i] = e
	}
	return evs
}

func testMQLs() []event.MQL {
	at := time.Date(2025, 3, 14, 10, 0, 0, 123_000_000, time.UTC)
	return []event.MQL{
		{MQLID: "mql-1", LeadID: "lead-1", Model: "default", Score: 105.5, Threshold: 100, CrossedAt: at, TriggerEventID: "evt-0000009",
			Reasons: []event.Reason{{Rule: "pricing_page", Points: 15}, {Rule: "email_open", Points: 10}, {Rule: "careers_page", Points: -20}}},
		{MQLID: "mql-2", LeadID: "lead-2", Model: "enterprise", Score: 80, Threshold: 75, CrossedAt: at.AddDate(0, 1, 0), TriggerEventID: "evt-0000010",
			Reasons: []event.Reason{}},
	}
}

// storedEvents reads the events table back into events, keyed by id.
func storedEvents(t testing.TB, conn driver.Conn, db string) map[string]event.Event {
	t.Helper()
	rs, err := conn.Query(context.Background(), `SELECT event_id, type, event_time, event_time_ms, received_at,
		anonymous_id, lead_id, previous_id, write_key_id, campaign, utm_source, utm_medium, utm_campaign, utm_term, utm_content,
		url, path, referrer, title, track, properties, traits, revenue, currency, ip, user_agent, bot, bot_reason,
		original_timestamp, original_timestamp_ms, context, integrations, group_id
		FROM `+db+`.events FINAL`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := map[string]event.Event{}
	for rs.Next() {
		var (
			e                  event.Event
			typ, props, traits string
			eventTime          time.Time
			ms                 uint64
			rev                decimal.Decimal
			bot                uint8
			botReason          string
			origTime           time.Time
			origMs             uint64
			ctxJSON, integ     string
		)
		if err := rs.Scan(&e.ID, &typ, &eventTime, &ms, &e.ReceivedAt,
			&e.AnonymousID, &e.LeadID, &e.PreviousID, &e.WriteKeyID, &e.Campaign, &e.UTMSource, &e.UTMMedium, &e.UTMCampaign, &e.UTMTerm, &e.UTMContent,
			&e.URL, &e.Path, &e.Referrer, &e.Title, &e.Track, &props, &traits, &rev, &e.Currency, &e.IP, &e.UserAgent, &bot, &botReason,
			&origTime, &origMs, &ctxJSON, &integ, &e.GroupID); err != nil {
			t.Fatal(err)
		}
		if !eventTime.Equal(time.UnixMilli(int64(ms)).Truncate(time.Second)) {
			t.Errorf("%s: event_time %v disagrees with event_time_ms %d", e.ID, eventTime, ms)
		}
		if bot != 0 || botReason != "" {
			t.Errorf("%s: bot = %d, bot_reason = %q; want 0, ''", e.ID, bot, botReason)
		}
		e.Type, e.EventTime, e.ReceivedAt = event.Type(typ), time.UnixMilli(int64(ms)).UTC(), e.ReceivedAt.UTC()
		e.Revenue = rev.InexactFloat64()
		if props != "" {
			e.Properties = json.RawMessage(props)
		}
		if traits != "" {
			e.Traits = json.RawMessage(traits)
		}
		if !origTime.Equal(time.UnixMilli(int64(origMs)).Truncate(time.Second)) {
			t.Errorf("%s: original_timestamp %v disagrees with original_timestamp_ms %d", e.ID, origTime, origMs)
		}
		if origMs != 0 {
			e.OriginalTimestamp = time.UnixMilli(int64(origMs)).UTC()
		}
		if ctxJSON != "" {
			e.Context = json.RawMessage(ctxJSON)
		}
		if integ != "" {
			e.Integrations = json.RawMessage(integ)
		}
		out[e.ID] = e
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// asStored is e as the events table can hold it: received_at in whole seconds.
func asStored(e event.Event) event.Event {
	e.ReceivedAt = e.ReceivedAt.Truncate(time.Second)
	return e
}

// write inserts a decoded batch into every table it touches with the
// handler's steps (which decode between the blocks). On error some tables may
// hold the batch already; a retry inserts it again and ReplacingMergeTree
// folds the copies, because every row's sort key is derived from the record.
func (w *writer) write(ctx context.Context, r *rows) error {
	if len(r.events) > 0 {
		ins, err := w.beginEvents(ctx)
		if err != nil {
			return err
		}
		err = ins.add(r.events)
		if err == nil {
			err = ins.send()
		}
		ins.close()
		if err != nil {
			return err
		}
		if err := w.insertLinks(ctx, identityLinks(r.events)); err != nil {
			return err
		}
	}
	return w.insertMQLs(ctx, r.mqls)
}

// identityLinks is the identity_links rows of evs (see linkSet).
func identityLinks(evs []event.Event) []link {
	var ls linkSet
	ls.add(evs, nil)
	return ls.out
}
