package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/erasure"
	"github.com/leadstream/leadstream/stream"
)

// TestE2EErase erases a person through HTTP and another through
// `leadstream erase`: a lead known from two browsers (one identified, one
// aliased), with an e-mail open, an MQL and an account membership. After
// DELETE /v1/leads/{id} the lead API answers 404, no row of the lead or its
// visitors is left in events, identity_links, mql or account_members, its
// account no longer lists it, and a tombstone keyed by the lead is on the
// erasures topic; a colleague in the same account keeps everything. Erasing
// again changes nothing and answers 200; without the secret key, 401.
func TestE2EErase(t *testing.T) {
	p := startPipeline(t)
	sfx := fmt.Sprint(rand.Uint32())
	lead, anon1, anon2 := "o'neil-"+sfx+"@example.com", "anon1-"+sfx, "anon2-"+sfx
	other, acct, cli := "colleague-"+sfx, "acme-"+sfx, "cli-"+sfx
	ts := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339Nano)
	n := 0
	msg := func(typ, body string) string {
		n++
		return fmt.Sprintf(`{"type":%q,"messageId":"%s-%d","timestamp":%q,%s}`, typ, sfx, n, ts, body)
	}
	batch := `{"batch":[` + strings.Join([]string{
		msg("page", fmt.Sprintf(`"anonymousId":%q,"properties":{"path":"/pricing"}`, anon1)),
		msg("identify", fmt.Sprintf(`"anonymousId":%q,"userId":%q,"traits":{"title":"VP Marketing","employees":500}`, anon1, lead)),
		msg("page", fmt.Sprintf(`"anonymousId":%q,"properties":{"path":"/"}`, anon2)),
		msg("identify", fmt.Sprintf(`"anonymousId":%q,"userId":%q`, anon2, lead)),
		msg("track", fmt.Sprintf(`"userId":%q,"event":"Form Submitted"`, lead)),
		msg("track", fmt.Sprintf(`"userId":%q,"event":"Email Link Clicked"`, lead)),
		msg("group", fmt.Sprintf(`"userId":%q,"groupId":%q,"traits":{"name":"Acme"}`, lead, acct)),
		msg("group", fmt.Sprintf(`"userId":%q,"groupId":%q`, other, acct)),
		msg("track", fmt.Sprintf(`"userId":%q,"event":"Form Submitted"`, other)),
		msg("identify", fmt.Sprintf(`"userId":%q,"traits":{"title":"CTO"}`, cli)),
		msg("track", fmt.Sprintf(`"userId":%q,"event":"Form Submitted"`, cli)),
	}, ",") + `]}`
	if code, body := p.post(t, "/v1/batch", testWriteKey, batch); code != 200 {
		t.Fatalf("POST /v1/batch = %d %s", code, body)
	}
	// rows counts the rows of a lead and of its visitors anons.
	rows := func(id string, anons ...string) string {
		in := "0" // no visitors: no row matches
		if len(anons) > 0 {
			in = "anonymous_id IN ('" + strings.Join(anons, "','") + "')"
		}
		q := fmt.Sprintf("SELECT (SELECT count() FROM %[1]s.events WHERE lead_id = '%[2]s' OR (%[3]s)), "+
			"(SELECT count() FROM %[1]s.identity_links WHERE lead_id = '%[2]s' OR (%[3]s)), "+
			"(SELECT count() FROM %[1]s.mql WHERE lead_id = '%[2]s'), "+
			"(SELECT count() FROM %[1]s.account_members WHERE lead_id = '%[2]s')",
			p.db, strings.ReplaceAll(id, "'", `\'`), in)
		return clickhouseMaybe(p.chAddr, q)
	}
	// events 7 (2 visitors' page views count once each), links 2, mql 1, membership 1.
	eventually(t, "the lead's rows in clickhouse", 30*time.Second, func() (bool, string) {
		out := rows(lead, anon1, anon2)
		return out == "7\t2\t1\t1", out
	})
	eventually(t, "the colleague and the cli lead in clickhouse", 30*time.Second, func() (bool, string) {
		out := rows(other) + "|" + rows(cli)
		return strings.HasPrefix(out, "2\t") && strings.Contains(out, "|2\t"), out
	})
	for _, id := range []string{lead, other, cli} {
		eventually(t, "lead API for "+id, 20*time.Second, func() (bool, string) {
			code, body := p.get(t, "/v1/leads/"+escape(id), testSecret)
			return code == 200, body
		})
	}
	eventually(t, "both members in the account", 20*time.Second, func() (bool, string) {
		_, body := p.get(t, "/v1/accounts/"+acct, testSecret)
		return strings.Contains(body, lead) && strings.Contains(body, other), body
	})

	del := func(id, auth string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("DELETE", p.base+"/v1/leads/"+escape(id), nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.SetBasicAuth(auth, "")
		}
		return do(t, req)
	}
	if code, body := del(lead, ""); code != 401 {
		t.Fatalf("DELETE without the secret key = %d %s", code, body)
	}
	if code, body := del(lead, testWriteKey); code != 401 {
		t.Fatalf("DELETE with a write key = %d %s", code, body)
	}
	code, body := del(lead, testSecret)
	var res erasure.Result
	if code != 200 || json.Unmarshal([]byte(body), &res) != nil {
		t.Fatalf("DELETE /v1/leads/{id} = %d %s", code, body)
	}
	if !res.Done || res.AnonymousIDs != 2 || res.RedisKeys < 3 || res.AccountEntries != 1 || len(res.Leads) != 1 {
		t.Errorf("erasure result %s: want done, 2 anonymous ids, the lead's and visitors' keys, 1 account entry", body)
	}
	check := func(id string) {
		t.Helper()
		if code, body := p.get(t, "/v1/leads/"+escape(id), testSecret); code != 404 {
			t.Errorf("GET the erased lead = %d %s, want 404", code, body)
		}
		if got := rows(id, anon1, anon2); got != "0\t0\t0\t0" {
			t.Errorf("rows of the erased lead %s (events, links, mql, memberships) = %q, want none", id, got)
		}
	}
	check(lead)
	if got := rows(other); !strings.HasPrefix(got, "2\t") {
		t.Errorf("the colleague's rows = %q: the erasure took them", got)
	}
	if code, body := p.get(t, "/v1/accounts/"+acct, testSecret); code != 200 || strings.Contains(body, lead) || !strings.Contains(body, other) {
		t.Errorf("account after the erasure = %d %s: want the colleague only", code, body)
	}
	if code, body := p.get(t, "/v1/leads/"+other, testSecret); code != 200 {
		t.Errorf("the colleague's lead API = %d %s", code, body)
	}
	// Idempotent: again, nothing left to delete, same answer.
	code, body = del(lead, testSecret)
	res = erasure.Result{}
	if code != 200 || json.Unmarshal([]byte(body), &res) != nil || !res.Done || res.RedisKeys != 0 || res.AnonymousIDs != 0 {
		t.Errorf("second DELETE = %d %s, want 200 with nothing erased", code, body)
	}
	check(lead)

	// The command line: leadstream erase LEAD_ID.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := runErase(ctx, []string{"-kafka.brokers", strings.Join(p.brokers, ","), "-redis.addr", p.redisAddr,
		"-clickhouse.addr", p.chAddr, "-clickhouse.database", p.db, "-wait", "30s", cli}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("leadstream erase: %v", err)
	}
	check(cli)
	if err := runErase(ctx, []string{"-redis.addr", p.redisAddr, cli, "-wait", "1s"}, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil ||
		!strings.Contains(err.Error(), "flags go before LEAD_ID") {
		t.Errorf("a flag after the id: %v", err)
	}

	// One tombstone per erasure, keyed by the lead, null value.
	keys := readTombstones(t, p, 3, 15*time.Second)
	want := []string{lead, lead, cli}
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("tombstones for %q, want the lead twice and the cli lead", keys)
	}
}

func escape(id string) string { return url.PathEscape(id) }

// readTombstones reads want records of the erasures topic and returns their
// keys, checking each has no value.
func readTombstones(t *testing.T, p *pipeline, want int, wait time.Duration) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cons, err := stream.NewConsumer(stream.ConsumerConfig{Brokers: p.brokers, Group: fmt.Sprintf("reader-%d", rand.Uint32()),
		Topics: []string{p.kcfg.Topic(stream.TopicErasures)}, MaxWait: 10 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	_ = cons.Run(ctx, func(_ context.Context, batch []stream.Message) error {
		for _, m := range batch {
			if m.Value != nil {
				t.Errorf("tombstone with a value: %q", m.Value)
			}
			keys = append(keys, string(m.Key))
		}
		if len(keys) >= want {
			cancel()
		}
		return nil
	})
	if len(keys) < want {
		t.Fatalf("read %d tombstones, want %d: %q", len(keys), want, keys)
	}
	return keys
}
