package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadapi"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/warehouse"
)

// TestRescoreEqualsLive sends visitors' journeys through the live pipeline,
// then replays the history stored in ClickHouse: with the live rules the
// replay must equal the live Redis state lead by lead (no movers, no MQL
// changes); with other rules, -apply must leave Redis equal to the replay.
func TestRescoreEqualsLive(t *testing.T) {
	p := startPipeline(t)
	ctx := context.Background()
	sfx := fmt.Sprint(rand.Uint32())
	rng := rand.New(rand.NewPCG(3, 5))
	base := time.Now().Add(-20 * 24 * time.Hour)
	var msgs []string
	n := 0
	msg := func(typ, ids, extra string, at time.Time) {
		n++
		msgs = append(msgs, fmt.Sprintf(`{"type":%q,"messageId":"%s-%d","timestamp":%q,%s%s}`, typ, sfx, n, at.UTC().Format(time.RFC3339Nano), ids, extra))
	}
	const leads = 25
	for l := range leads {
		lead, anon := fmt.Sprintf("r%s-%d@example.com", sfx, l), fmt.Sprintf("ra%s-%d", sfx, l)
		at := base.Add(time.Duration(rng.IntN(10*24)) * time.Hour)
		for range rng.IntN(4) {
			at = at.Add(time.Duration(rng.IntN(48)) * time.Hour)
			path := []string{"/", "/pricing", "/blog/x", "/careers"}[rng.IntN(4)]
			msg("page", fmt.Sprintf(`"anonymousId":%q`, anon), fmt.Sprintf(`,"properties":{"path":%q}`, path), at)
		}
		if l%6 != 5 { // most leads are in one of four accounts; two of them move
			msg("group", fmt.Sprintf(`"userId":%q,"groupId":"acct-%s-%d"`, lead, sfx, l%4), `,"traits":{"industry":"software","employees":300}`, at)
			if l%7 == 0 {
				msg("group", fmt.Sprintf(`"userId":%q,"groupId":"acct-%s-%d"`, lead, sfx, (l+1)%4), "", at.Add(24*time.Hour))
			}
		}
		at = at.Add(time.Hour)
		msg("identify", fmt.Sprintf(`"anonymousId":%q,"userId":%q`, anon, lead), `,"traits":{"title":"Head of Growth","employees":`+fmt.Sprint(rng.IntN(400))+`}`, at)
		for range rng.IntN(8) {
			at = at.Add(time.Duration(rng.IntN(72)) * time.Hour)
			ev := []string{"Email Opened", "Email Link Clicked", "Form Submitted"}[rng.IntN(3)]
			msg("track", fmt.Sprintf(`"userId":%q`, lead), fmt.Sprintf(`,"event":%q`, ev), at)
		}
	}
	for i := 0; i < len(msgs); i += 40 {
		body := `{"batch":[` + strings.Join(msgs[i:min(i+40, len(msgs))], ",") + `]}`
		if code, res := p.post(t, "/v1/batch", testWriteKey, body); code != 200 {
			t.Fatalf("POST /v1/batch = %d %s", code, res)
		}
	}
	eventually(t, "history in clickhouse", 90*time.Second, func() (bool, string) {
		out := clickhouseMaybe(p.chAddr, fmt.Sprintf("SELECT count() FROM %s.events FINAL WHERE event_id LIKE '%s-%%'", p.db, sfx))
		return out == fmt.Sprint(len(msgs)), out
	})

	replay := func(rules *scoring.Rules) *scoring.Replayer {
		t.Helper()
		conn, err := warehouse.Open(ctx, warehouse.Config{Addr: p.chAddr, Database: p.db, Username: "default", DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		rp := scoring.NewReplayer(rules, 0)
		if err := warehouse.History(ctx, conn, p.db, func(e *event.Event) error { rp.Apply(e); return nil }); err != nil {
			t.Fatal(err)
		}
		return rp
	}
	live := scoring.Default()
	var results []rescoreResult
	// The processor may still be applying the last events: wait until the replay matches.
	eventually(t, "rescore with the live rules equals live scoring", 90*time.Second, func() (bool, string) {
		var err error
		results, err = compareRescore(ctx, p.store, live, replay(live), time.Now(), 5)
		if err != nil {
			t.Fatal(err)
		}
		r := results[0]
		return r.Leads == leads && r.Gain == 0 && r.Lose == 0 && len(r.Movers) == 0, fmt.Sprintf("%+v", r)
	})
	// The records are published after their crossings are stored: read
	// until every crossing's record is there (a slow machine needs more
	// than a moment), then a little longer for any extra one.
	var mqls []event.MQL
	if n := results[0].Crossings; n > 0 {
		mqls = readMQL(t, p.brokers, p.kcfg.Topic("mql"), n, 60*time.Second)
	}
	mqls = append(mqls, readMQL(t, p.brokers, p.kcfg.Topic("mql"), 0, 2*time.Second)...)
	if got := len(uniqueMQL(mqls)); got != results[0].Crossings {
		t.Fatalf("live published %d MQLs, the replay found %d crossings", got, results[0].Crossings)
	}
	// Accounts too: the replay equals live, account by account.
	accts, err := compareAccounts(ctx, p.store, live, replay(live), time.Now(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if a := accts[0]; a.Accounts != 4 || a.Gain != 0 || a.Lose != 0 || len(a.Movers) != 0 || a.Crossings == 0 {
		t.Fatalf("rescore of the accounts with the live rules: %+v", a)
	}
	mqaIDs := map[string]bool{}
	for _, m := range readMQA(t, p.brokers, p.kcfg.Topic("mqa"), 2*time.Second) {
		mqaIDs[m.MQAID] = true
	}
	if len(mqaIDs) != accts[0].Crossings {
		t.Fatalf("live published %d MQAs, the replay found %d account crossings", len(mqaIDs), accts[0].Crossings)
	}

	// Other rules: a lower threshold. -apply must make Redis equal to the replay.
	lower := strings.Replace(string(scoring.DefaultYAML), "threshold: 100", "threshold: 60", 1)
	lower = strings.Replace(lower, "rearm_below: 50", "rearm_below: 30", 1)
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(lower), 0o644); err != nil {
		t.Fatal(err)
	}
	p.stop() // no live scoring while Redis is rewritten
	err = runRescore(ctx, []string{"-clickhouse.addr", p.chAddr, "-clickhouse.database", p.db,
		"-redis.addr", p.redisAddr, "-rules", path, "-apply"})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := scoring.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	rp := replay(rules)
	now := time.Now()
	gained := 0
	for l := range leads {
		lead := fmt.Sprintf("r%s-%d@example.com", sfx, l)
		st := rp.States()[scoring.Lead(lead)]
		if st == nil {
			t.Fatalf("lead %s not replayed", lead)
		}
		view, err := leadapi.Read(ctx, p.store, lead, rules.Models, now)
		if err != nil {
			t.Fatal(err)
		}
		ms, mv := st.Model("default"), view.Models["default"]
		want := ms.ScoreAt(now.UnixMilli(), rules.Models[0].HalfLife)
		if math.Abs(mv.Score-want) > 1e-9*math.Max(1, want) || mv.MQL != ms.MQL {
			t.Fatalf("after -apply lead %s: redis score %v mql %v, replay %v mql %v", lead, mv.Score, mv.MQL, want, ms.MQL)
		}
		if ms.MQL {
			gained++
		}
	}
	if gained < results[0].Crossings {
		t.Fatalf("threshold 60 gave %d MQL leads, fewer than the %d crossings at threshold 100", gained, results[0].Crossings)
	}
	for s, st := range rp.States() {
		if !s.Account {
			continue
		}
		view, err := leadapi.ReadAccount(ctx, p.store, s.ID, rules.Models, now)
		if err != nil {
			t.Fatal(err)
		}
		want := leadapi.ViewAccount(s.ID, st, rules.Models, now)
		if g, w := view.Models["default"], want.Models["default"]; math.Abs(g.Score-w.Score) > 1e-9*math.Max(1, w.Score) || g.MQA != w.MQA || len(view.Members) != len(want.Members) {
			t.Fatalf("after -apply account %s: redis %+v, replay %+v", s.ID, g, w)
		}
	}
}

func TestRulesCheck(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, scoring.DefaultYAML, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("models:\n  - name: m\n    threshold: 100\n    rules:\n      - {name: r, event: pageview, points: 5}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := runRules([]string{"check", good}); err != nil {
		t.Fatalf("rules check of the default rules: %v", err)
	}
	err := runRules([]string{"check", bad})
	if err == nil || !strings.Contains(err.Error(), bad+":5:") || !strings.Contains(err.Error(), `unknown event type "pageview"`) {
		t.Fatalf("rules check of a bad file = %v, want FILE:5: naming the event type", err)
	}
}
