package leadstate_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// exists counts which of a subject's keys (suffixes) exist.
func exists(t *testing.T, s *leadstate.Store, subj scoring.Subject, suffixes ...string) int {
	t.Helper()
	n := 0
	for _, sfx := range suffixes {
		c, err := leadstatetest.Client(t, s).Exists(context.Background(), leadstatetest.Key(subj, sfx)).Result()
		if err != nil {
			t.Fatal(err)
		}
		n += int(c)
	}
	return n
}

// Erase deletes a subject's state, outbox and dedup sets — those its state
// names, and for a state that does not decode those SCAN finds — and
// nothing of other subjects.
func TestErase(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		day := time.Now().Add(24 * time.Hour).UnixMilli()
		seen := func(id string, b int64) leadstate.Seen {
			return leadstate.Seen{FP: scoring.Fingerprint(id), Bucket: b, ExpireAt: day}
		}
		lead, visitor, other := scoring.Lead(newID("lead")+"@example.com"), scoring.Anon(newID("anon")), scoring.Lead(newID("other"))
		mql := event.MQL{MQLID: "m-1", LeadID: lead.ID, Model: "default", Score: 100, Threshold: 100, CrossedAt: time.Now().UTC(), TriggerEventID: "e"}
		for _, c := range []leadstate.Commit{
			{Subject: lead, State: sampleState(lead), Seen: []leadstate.Seen{seen("a", 3), seen("b", 4)}, MQLs: []event.MQL{mql}},
			{Subject: visitor, State: &scoring.State{Subject: visitor, Into: lead.ID, Spilled: []int64{5}}, Seen: []leadstate.Seen{seen("c", 5)}, ExpireAt: day},
			{Subject: other, State: sampleState(other), Seen: []leadstate.Seen{seen("a", 3)}, MQLs: []event.MQL{{MQLID: "m-2", LeadID: other.ID, Model: "default"}}},
		} {
			if r := commit(t, s, c); r.Status != leadstate.Stored {
				t.Fatalf("commit %v: %+v", c.Subject, r)
			}
		}
		// A state that does not decode, with a dedup set beside it.
		corrupt := scoring.Lead(newID("corrupt"))
		rdb := leadstatetest.Client(t, s)
		if err := rdb.Set(ctx, leadstatetest.Key(corrupt, "s"), "not a state of leadstream", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.SAdd(ctx, leadstatetest.Key(corrupt, "d:9"), "1", "2").Err(); err != nil {
			t.Fatal(err)
		}
		if n := exists(t, s, lead, "s", "o", "d:3", "d:4") + exists(t, s, visitor, "s", "d:5") + exists(t, s, corrupt, "s", "d:9"); n != 8 {
			t.Fatalf("%d of the 8 keys exist before the erasure", n)
		}

		n, err := s.Erase(ctx, []scoring.Subject{lead, visitor, corrupt, scoring.Anon(newID("never-seen"))})
		if err != nil {
			t.Fatal(err)
		}
		if n != 8 {
			t.Errorf("Erase deleted %d keys, want 8", n)
		}
		if left := exists(t, s, lead, "s", "o", "d:3", "d:4") + exists(t, s, visitor, "s", "d:5") + exists(t, s, corrupt, "s", "d:9"); left != 0 {
			t.Errorf("%d keys left after the erasure", left)
		}
		if rec, err := s.ReadLead(ctx, lead.ID); err != nil || rec.State != nil {
			t.Errorf("ReadLead after the erasure = %+v, %v", rec, err)
		}
		if pending, err := s.Outbox(ctx, []string{lead.ID}); err != nil || len(pending) != 0 {
			t.Errorf("outbox after the erasure: %v, %v", pending, err)
		}
		if n := exists(t, s, other, "s", "o", "d:3"); n != 3 {
			t.Errorf("another lead lost keys: %d of 3 left", n)
		}

		// A processor that read the state before the erasure cannot write it back.
		st := sampleState(lead)
		if r := commit(t, s, leadstate.Commit{Subject: lead, Expect: "12345678", State: st}); r.Status != leadstate.Conflict || r.Current.State != nil {
			t.Errorf("a commit over the erased version = %+v, want a conflict with no state", r)
		}
	})
}

// The collector's Redis user can erase with ACLEraser, not with ACLReader.
func TestEraseACL(t *testing.T) {
	ctx := context.Background()
	args := append(aclUser("eraser", "e-pw", leadstate.ACLEraser), aclUser("reader", "r-pw", leadstate.ACLReader)...)
	srv := testsvc.PrivateRedis(t, args...)
	open := func(user, pw string) *leadstate.Store {
		rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: srv.Addr, Username: user, Password: pw})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		return leadstate.NewStore(rdb)
	}
	admin := open("", "")
	lead := scoring.Lead(newID("lead"))
	if r := commit(t, admin, leadstate.Commit{Subject: lead, State: sampleState(lead)}); r.Status != leadstate.Stored {
		t.Fatal(r)
	}
	if _, err := open("reader", "r-pw").Erase(ctx, []scoring.Subject{lead}); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("Erase as the reader = %v, want NOPERM", err)
	}
	if n, err := open("eraser", "e-pw").Erase(ctx, []scoring.Subject{lead}); err != nil || n != 1 {
		t.Errorf("Erase as the eraser = %d, %v; want the state deleted", n, err)
	}

	// ForgetMembers rewrites the account (the commit script) as the eraser.
	acct := scoring.Account(newID("acct"))
	st := &scoring.State{Subject: acct, Members: []scoring.AccountEntry{
		{Lead: lead.ID, Seq: 1, Values: []scoring.MemberValue{{Model: "default", V: 10, T: 1}}},
		{Lead: "colleague", Seq: 2, Values: []scoring.MemberValue{{Model: "default", V: 5, T: 1}}},
		{Lead: "left-before", Seq: 3, Left: true},
	}}
	if r := commit(t, admin, leadstate.Commit{Subject: acct, State: st}); r.Status != leadstate.Stored {
		t.Fatal(r)
	}
	if _, err := open("reader", "r-pw").ForgetMembers(ctx, acct.ID, []string{lead.ID}); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("ForgetMembers as the reader = %v, want NOPERM", err)
	}
	eraser := open("eraser", "e-pw")
	if n, err := eraser.ForgetMembers(ctx, acct.ID, []string{lead.ID, "left-before", "stranger"}); err != nil || n != 2 {
		t.Errorf("ForgetMembers = %d, %v; want 2 entries removed", n, err)
	}
	got, err := admin.ReadAccount(ctx, acct.ID)
	if err != nil || got == nil || len(got.Members) != 1 || got.Members[0].Lead != "colleague" || got.Members[0].Values[0].V != 5 {
		t.Errorf("account after ForgetMembers = %+v, %v; want the colleague alone", got, err)
	}
	if n, err := eraser.ForgetMembers(ctx, acct.ID, []string{lead.ID}); err != nil || n != 0 {
		t.Errorf("ForgetMembers again = %d, %v; want nothing to do", n, err)
	}
}
