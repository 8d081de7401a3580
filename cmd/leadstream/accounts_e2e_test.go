package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadapi"
	"github.com/leadstream/leadstream/stream"
)

// TestE2EAccounts runs the README's worked example through the pipeline with
// the default rules: two people of one company join its account by group
// calls, one hyperactive (capped at 60), one engaged; the account becomes an
// MQA once. The account API, the lead API, the mqa topic (read by kcat) and
// ClickHouse (mqa, account_members, group_id) all show it; the same batch
// replayed changes nothing.
func TestE2EAccounts(t *testing.T) {
	p := startPipeline(t)
	sfx := fmt.Sprint(rand.Uint32())
	acct, alice, bob := "acme-"+sfx, "alice-"+sfx, "bob-"+sfx
	ts := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339Nano) // one time: no decay between events
	n := 0
	msg := func(typ, body string) string {
		n++
		return fmt.Sprintf(`{"type":%q,"messageId":"%s-%d","timestamp":%q,%s}`, typ, sfx, n, ts, body)
	}
	batch := `{"batch":[` + strings.Join([]string{
		msg("group", fmt.Sprintf(`"userId":%q,"groupId":%q,"traits":{"name":"Acme Corp","domain":"acme.example","industry":"software","employees":450}`, alice, acct)),
		msg("group", fmt.Sprintf(`"userId":%q,"groupId":%q`, bob, acct)),
		msg("track", fmt.Sprintf(`"userId":%q,"event":"Form Submitted"`, alice)),
		msg("page", fmt.Sprintf(`"userId":%q,"properties":{"path":"/pricing"}`, alice)),
		msg("track", fmt.Sprintf(`"userId":%q,"event":"Form Submitted"`, alice)),
		msg("track", fmt.Sprintf(`"userId":%q,"event":"Email Link Clicked"`, bob)),
		msg("track", fmt.Sprintf(`"userId":%q,"event":"Form Submitted"`, bob)),
	}, ",") + `]}`
	for range 2 { // the second time is a client retrying the whole batch
		if code, res := p.post(t, "/v1/batch", testWriteKey, batch); code != 200 {
			t.Fatalf("POST /v1/batch = %d %s", code, res)
		}
	}
	// fit 30 + 20, alice 80 capped at 60, bob 45: 155 (decayed a little to now).
	var view leadapi.AccountView
	eventually(t, "account API", 20*time.Second, func() (bool, string) {
		code, body := p.get(t, "/v1/accounts/"+acct, testSecret)
		view = leadapi.AccountView{}
		if code != 200 || json.Unmarshal([]byte(body), &view) != nil {
			return false, fmt.Sprint(code, body)
		}
		m := view.Models["default"]
		return m.MQA && m.EngagedMembers == 2 && len(view.Members) == 2, body
	})
	m := view.Models["default"]
	if m.Fit != 50 || math.Abs(m.Engagement-105) > 0.01 || math.Abs(m.Score-155) > 0.01 || m.Threshold != 150 ||
		view.Traits["industry"] != "software" || view.Members[0].LeadID != alice || view.Members[0].Scores["default"].Contribution != 60 {
		t.Fatalf("account view %+v", view)
	}
	if code, body := p.get(t, "/v1/leads/"+bob, testSecret); code != 200 || !strings.Contains(body, `"account":"`+acct+`"`) {
		t.Fatalf("lead view of bob = %d %s, want it to name the account", code, body)
	}
	if code, _ := p.get(t, "/v1/accounts/nobody-"+sfx, testSecret); code != 404 {
		t.Fatalf("unknown account: %d, want 404", code)
	}
	if code, _ := p.get(t, "/v1/accounts/"+acct, ""); code != 401 {
		t.Fatalf("account API without the secret: %d, want 401", code)
	}

	// The MQA record, read by an independent Kafka client, once.
	if _, err := exec.LookPath("kcat"); err != nil {
		testsvc.Required(t, "kcat", "kcat (Debian package kcat) is the independent Kafka client of this test")
	}
	var records []string
	eventually(t, "mqa record by kcat", 20*time.Second, func() (bool, string) {
		out, err := exec.Command("kcat", "-b", p.brokers[0], "-C", "-t", p.kcfg.Topic(stream.TopicMQA), "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n").CombinedOutput()
		if err != nil {
			return false, fmt.Sprintf("kcat: %v: %s", err, out)
		}
		records = nil
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.HasPrefix(l, acct+"\t") {
				records = append(records, strings.TrimPrefix(l, acct+"\t"))
			}
		}
		return len(records) >= 1, string(out)
	})
	var rec struct {
		MQAID, AccountID, Model, TriggerEventID string
		Score, Threshold                        float64
		EngagedMembers                          int
		TopMembers                              []struct {
			LeadID string `json:"lead_id"`
			Points float64
		} `json:"top_members"`
	}
	if err := json.Unmarshal([]byte(records[0]), &rec); err != nil {
		t.Fatal(err)
	}
	// Decoded by field names; the wire names are checked as text.
	for _, k := range []string{`"mqa_id":"`, `"account_id":"` + acct + `"`, `"crossed_at":"`, `"trigger_event_id":"`, `"engaged_members":2`, `"reasons":[`, `"top_members":[{"lead_id":"` + alice + `","points":60}`} {
		if !strings.Contains(records[0], k) {
			t.Fatalf("mqa record %s lacks %s", records[0], k)
		}
	}
	if len(records) != 1 {
		t.Fatalf("%d MQA records for one crossing:\n%s", len(records), strings.Join(records, "\n"))
	}

	// ClickHouse: the crossing, both memberships, the group calls with their account.
	eventually(t, "mqa and account_members rows", 20*time.Second, func() (bool, string) {
		out := clickhouseMaybe(p.chAddr, fmt.Sprintf("SELECT (SELECT count() FROM %[1]s.mqa FINAL WHERE account_id = '%[2]s'), "+
			"(SELECT count() FROM %[1]s.account_members FINAL WHERE account_id = '%[2]s' AND source = 'group'), "+
			"(SELECT count() FROM %[1]s.events FINAL WHERE group_id = '%[2]s' AND type = 'group')", p.db, acct))
		return out == "1\t2\t2", out
	})
}

// readMQA reads every record of the mqa topic that arrives within wait.
func readMQA(t *testing.T, brokers []string, topic string, wait time.Duration) []event.MQA {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cons, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: brokers, Group: fmt.Sprintf("reader-%d", rand.Uint32()), Topics: []string{topic}, MaxWait: 10 * time.Millisecond},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.MQA
	_ = cons.Run(ctx, func(_ context.Context, batch []stream.Message) error {
		for _, m := range batch {
			var rec event.MQA
			if err := json.Unmarshal(m.Value, &rec); err != nil {
				t.Errorf("mqa record is not JSON: %s", m.Value)
			}
			out = append(out, rec)
		}
		return nil
	})
	return out
}
