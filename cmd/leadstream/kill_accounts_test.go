//go:build linux

package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
)

// killAccounts is how many accounts the SIGKILL test's leads are spread over.
const killAccounts = 12

// checkKillAccounts waits until every account of the SIGKILL test holds
// exactly the leads whose latest group call names it, with engagement = the
// sum of their steady scores capped at member_cap, then checks the mqa
// topic: no account crossed twice (distinct mqa_ids), and every account at
// or over the threshold with two engaged members crossed once. It returns
// how many accounts crossed.
func checkKillAccounts(t *testing.T, store *leadstate.Store, brokers []string, kcfg stream.Config, rules *scoring.Rules,
	events []event.Event, expected map[string]map[string]killState) int {
	t.Helper()
	ctx := context.Background()
	a := rules.Model("steady").Accounts
	// Each lead's account: its latest group call by (time, id).
	latest := map[string]event.Event{}
	for _, e := range events {
		if e.Type != event.Group {
			continue
		}
		if l, ok := latest[e.LeadID]; !ok || e.EventTime.After(l.EventTime) || (e.EventTime.Equal(l.EventTime) && e.ID > l.ID) {
			latest[e.LeadID] = e
		}
	}
	members := map[string][]string{}
	for lead, e := range latest {
		members[e.GroupID] = append(members[e.GroupID], lead)
	}
	type want struct {
		engagement float64
		engaged    int
	}
	wants := map[string]want{}
	for acct, leads := range members {
		sort.Strings(leads)
		var w want
		for _, l := range leads {
			v := expected[l]["steady"].v
			if v >= a.EngagedAt {
				w.engaged++
			}
			w.engagement += min(v, a.MemberCap)
		}
		wants[acct] = w
	}
	mismatch := func() string {
		for acct, leads := range members {
			st, err := store.ReadAccount(ctx, acct)
			if err != nil {
				t.Fatal(err)
			}
			if st == nil || st.Model("steady") == nil {
				return acct + ": no state"
			}
			var live []string
			for _, e := range st.Members {
				if !e.Left {
					live = append(live, e.Lead)
				}
			}
			if !slices.Equal(live, leads) {
				return fmt.Sprintf("%s: members %v, want %v", acct, live, leads)
			}
			w := wants[acct]
			if got := st.Model("steady").V; math.Abs(got-w.engagement) > 1e-9 {
				return fmt.Sprintf("%s: engagement %v, want %v", acct, got, w.engagement)
			}
		}
		return ""
	}
	deadline := time.Now().Add(60 * time.Second)
	for m := mismatch(); m != ""; m = mismatch() {
		if time.Now().After(deadline) {
			t.Fatalf("accounts after the SIGKILLs: %s", m)
		}
		time.Sleep(200 * time.Millisecond)
	}
	crossing := map[string]bool{}
	for acct, w := range wants {
		if w.engagement >= a.Threshold && w.engaged >= a.MinEngaged {
			crossing[acct] = true
		}
	}
	if len(crossing) == 0 {
		t.Fatal("no account reaches its threshold: the test proves nothing about MQAs")
	}
	var recs []event.MQA
	deadline = time.Now().Add(30 * time.Second)
	for {
		recs = readMQA(t, brokers, kcfg.Topic(stream.TopicMQA), 3*time.Second)
		got := map[string]bool{}
		for _, r := range recs {
			got[r.AccountID] = true
		}
		done := true
		for acct := range crossing {
			done = done && got[acct]
		}
		if done || time.Now().After(deadline) {
			break
		}
	}
	ids := map[string]map[string]bool{}
	for _, r := range recs {
		if ids[r.AccountID] == nil {
			ids[r.AccountID] = map[string]bool{}
		}
		ids[r.AccountID][r.MQAID] = true
	}
	for acct, set := range ids {
		if len(set) != 1 {
			t.Errorf("account %s: %d distinct MQA records, want 1", acct, len(set))
		}
	}
	for acct := range crossing {
		if len(ids[acct]) != 1 {
			t.Errorf("account %s reached its threshold: %d MQA records, want 1", acct, len(ids[acct]))
		}
	}
	return len(ids)
}
