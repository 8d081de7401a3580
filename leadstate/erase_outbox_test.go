package leadstate_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// ForgetMembers also removes the erased leads from the top_members of the
// MQA records still pending in the account's outbox (the processor would
// publish them, and the sink write them to mqa, after the erasure), keeping
// the other members and the records that do not name them; it does so even
// when the account's state no longer lists the lead (an erasure run again).
func TestForgetMembersFiltersPendingMQA(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		lead, other, acct := newID("jane")+"@example.com", newID("bob"), newID("acme")
		now := time.Now().UnixMilli()
		val := []scoring.MemberValue{{Model: "default", V: 50, T: now}}
		st := &scoring.State{Subject: scoring.Account(acct), Members: []scoring.AccountEntry{{Lead: lead, Seq: 1, Values: val}, {Lead: other, Seq: 1, Values: val}}}
		at := time.Now().UTC().Truncate(time.Millisecond)
		named := event.MQA{MQAID: "q1", AccountID: acct, Model: "default", Score: 150, Threshold: 150, CrossedAt: at, EngagedMembers: 2,
			TopMembers: []event.Member{{LeadID: lead, Points: 50}, {LeadID: other, Points: 40}}}
		unnamed := event.MQA{MQAID: "q2", AccountID: acct, Model: "other", Score: 150, Threshold: 150, CrossedAt: at,
			TopMembers: []event.Member{{LeadID: other, Points: 40}}}
		if r := commit(t, s, leadstate.Commit{Subject: scoring.Account(acct), State: st, MQAs: []event.MQA{named, unnamed}}); r.Status != leadstate.Stored {
			t.Fatalf("%+v", r)
		}
		n, err := s.ForgetMembers(ctx, acct, []string{lead})
		if err != nil || n != 1 {
			t.Fatalf("ForgetMembers = %d, %v; want 1 entry", n, err)
		}
		if got := leadstatetest.State(t, s, scoring.Account(acct)); len(got.Members) != 1 || got.Members[0].Lead != other {
			t.Errorf("account members after ForgetMembers: %+v", got.Members)
		}
		check := func() {
			t.Helper()
			pending, err := s.OutboxMQA(ctx, []string{acct})
			if err != nil {
				t.Fatal(err)
			}
			slices.SortFunc(pending, func(a, b event.MQA) int { return strings.Compare(a.MQAID, b.MQAID) })
			want := named
			want.TopMembers = []event.Member{{LeadID: other, Points: 40}}
			if len(pending) != 2 || !mqaEqual(pending[0], want) || !mqaEqual(pending[1], unnamed) {
				t.Errorf("pending MQA records %+v, want q1 without the erased lead and q2 as it was", pending)
			}
		}
		check()
		// Again, with the lead's entry gone already: nothing to do.
		if n, err := s.ForgetMembers(ctx, acct, []string{lead}); err != nil || n != 0 {
			t.Errorf("ForgetMembers again = %d, %v", n, err)
		}
		check()
		// A record naming the lead added without a member entry (an erasure
		// that ran before this fix left it): filtered too.
		late := named
		late.MQAID = "q0"
		rec := leadstatetest.State(t, s, scoring.Account(acct))
		recs, err := s.Read(ctx, []scoring.Subject{scoring.Account(acct)})
		if err != nil {
			t.Fatal(err)
		}
		if r := commit(t, s, leadstate.Commit{Subject: scoring.Account(acct), Expect: recs[scoring.Account(acct)].Version, State: rec, MQAs: []event.MQA{late}}); r.Status != leadstate.Stored {
			t.Fatalf("%+v", r)
		}
		if n, err := s.ForgetMembers(ctx, acct, []string{lead}); err != nil || n != 0 {
			t.Errorf("ForgetMembers over a pending record only = %d, %v", n, err)
		}
		pending, err := s.OutboxMQA(ctx, []string{acct})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range pending {
			for _, tm := range m.TopMembers {
				if tm.LeadID == lead {
					t.Errorf("pending MQA %s still names the erased lead", m.MQAID)
				}
			}
		}
	})
}

func mqaEqual(a, b event.MQA) bool {
	return a.MQAID == b.MQAID && a.AccountID == b.AccountID && a.Model == b.Model && a.Score == b.Score &&
		a.CrossedAt.Equal(b.CrossedAt) && a.EngagedMembers == b.EngagedMembers && slices.Equal(a.TopMembers, b.TopMembers)
}
