package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// The dry run lists at most -top movers among the accounts too, as it does
// among the leads.
func TestRescoreAccountMoversTop(t *testing.T) {
	store := leadstatetest.Open(t, testsvc.Redis(t))
	sfx := fmt.Sprintf("%x", rand.Uint64())
	rules := scoring.Default()
	rp := scoring.NewReplayer(rules, 0)
	now := time.Now().UTC()
	for i := range 4 { // four accounts unknown to Redis, each with one member who scores
		lead, acct := fmt.Sprintf("m%d-%s", i, sfx), fmt.Sprintf("acct%d-%s", i, sfx)
		at := now.Add(-time.Duration(i+1) * time.Hour)
		for j, e := range []event.Event{
			{Type: event.Group, LeadID: lead, GroupID: acct, Traits: []byte(`{"industry":"software"}`)},
			{Type: event.FormSubmit, LeadID: lead},
		} {
			e.ID, e.EventTime, e.ReceivedAt = fmt.Sprintf("%s-%d", lead, j), at.Add(time.Duration(j)*time.Second), at
			rp.Apply(&e)
		}
	}
	res, err := compareAccounts(context.Background(), store, rules, rp, now, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) == 0 || res[0].Accounts != 4 {
		t.Fatalf("account results %+v, want the four accounts", res)
	}
	if got := len(res[0].Movers); got != 2 {
		t.Errorf("%d account movers listed with -top 2: %+v", got, res[0].Movers)
	}
}
