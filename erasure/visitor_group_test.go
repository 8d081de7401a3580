package erasure

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/warehouse"
)

// An erasure removes the lead's entry from an account it joined through a
// visitor's group call and left since. The visitor's group call makes the
// lead it becomes a member of acme (a visitor's group call counts for the
// lead it becomes); the lead then moves to globex and acme's tombstone is
// stored, so the lead's state no longer names acme. acme's account_members
// row has the visitor's anonymous id and no lead id: the erasure finds acme
// by the visitor's id (warehouse.Accounts), else acme would keep an entry
// naming the erased lead (its id, an e-mail address) in Redis for ever.
func TestEraseForgetsAccountJoinedByVisitorGroupCall(t *testing.T) {
	e, store, conn, ch := newEraser(t, "erase_vgroup")
	ctx := context.Background()
	db := ch.Database
	sfx := fmt.Sprintf("%x", rand.Uint64())
	lead, visitor := "jane@acme.example-"+sfx, "visitor-"+sfx
	acme, globex := "acme-"+sfx, "globex-"+sfx
	now := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	at := func(m int) time.Time { return now.Add(time.Duration(m) * time.Minute) }
	mk := func(id string, typ event.Type, m int, leadID, anon string) *event.Event {
		return &event.Event{ID: id + sfx, Type: typ, EventTime: at(m), ReceivedAt: at(m), LeadID: leadID, AnonymousID: anon}
	}
	g1 := mk("g1", event.Group, 0, "", visitor)
	g1.GroupID = acme
	id1 := mk("id1", event.Identify, 1, lead, visitor)
	f1 := mk("f1", event.FormSubmit, 2, lead, "")
	g2 := mk("g2", event.Group, 3, lead, "")
	g2.GroupID = globex
	f2 := mk("f2", event.FormSubmit, 4, lead, "")

	// Score them (one at a time, as batches) and store the states in Redis.
	rp := scoring.NewReplayer(scoring.Default(), 0)
	for _, ev := range []*event.Event{g1, id1, f1, g2, f2} {
		rp.Apply(ev)
	}
	var cs []leadstate.Commit
	for subj, st := range rp.States() {
		cs = append(cs, leadstate.Commit{Subject: subj, State: st})
	}
	if res, err := store.Commit(ctx, cs); err != nil {
		t.Fatal(err)
	} else {
		for _, r := range res {
			if r.Status != leadstate.Stored {
				t.Fatalf("commit: %+v", r)
			}
		}
	}
	has := func(acct string) bool {
		st := leadstatetest.State(t, store, scoring.Account(acct))
		if st == nil {
			return false
		}
		for _, m := range st.Members {
			if m.Lead == lead {
				return true
			}
		}
		return false
	}
	if !has(acme) {
		t.Fatalf("setup: acme holds no entry of the lead: %+v", leadstatetest.State(t, store, scoring.Account(acme)))
	}
	if st := leadstatetest.State(t, store, scoring.Lead(lead)); st.MemberOf != globex || len(st.Left) != 0 {
		t.Fatalf("setup: lead %+v, want a member of globex that forgot acme", st)
	}

	// ClickHouse rows as the sink writes them.
	ins := func(table string, n int, cols ...warehouse.Column) {
		t.Helper()
		if err := warehouse.Insert(ctx, conn, db, table, n, cols); err != nil {
			t.Fatal(err)
		}
	}
	ins("identity_links", 1,
		warehouse.Column{Name: "anonymous_id", Values: []string{visitor}},
		warehouse.Column{Name: "lead_id", Values: []string{lead}},
		warehouse.Column{Name: "linked_at", Values: []time.Time{at(1)}})
	ins("account_members", 2,
		warehouse.Column{Name: "account_id", Values: []string{acme, globex}},
		warehouse.Column{Name: "lead_id", Values: []string{"", lead}},
		warehouse.Column{Name: "anonymous_id", Values: []string{visitor, ""}},
		warehouse.Column{Name: "source", Values: []string{"group", "group"}},
		warehouse.Column{Name: "joined_at", Values: []time.Time{at(0), at(3)}},
		warehouse.Column{Name: "joined_at_ms", Values: []uint64{uint64(at(0).UnixMilli()), uint64(at(3).UnixMilli())}},
		warehouse.Column{Name: "event_id", Values: []string{g1.ID, g2.ID}})

	res, err := e.Erase(ctx, lead, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if has(globex) {
		t.Errorf("globex still names the erased lead")
	}
	if has(acme) {
		t.Errorf("after the erasure (%+v) acme's state in Redis still holds an entry naming the erased lead %q: %+v", res, lead, leadstatetest.State(t, store, scoring.Account(acme)).Members)
	}
}
