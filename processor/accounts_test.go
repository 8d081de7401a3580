package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
)

const accountRulesYAML = `
models:
  - name: b2b
    half_life: 720h
    threshold: 100
    rules:
      - {name: page-view, event: page_view, points: 5}
      - {name: pricing-page, event: page_view, url: "/pricing*", points: 15}
      - {name: form-submit, event: form_submit, points: 30}
    accounts:
      threshold: 120
      member_cap: 50
      engaged_at: 20
      min_engaged: 2
      fit:
        - {name: saas, trait: industry, equals: software, points: 20}
`

func accountRules(t *testing.T) *scoring.Rules {
	t.Helper()
	r, err := scoring.Parse("accounts.yaml", []byte(accountRulesYAML))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func groupCall(id, lead, account string, at time.Time, traits string) *event.Event {
	e := touch(id, event.Group, "", lead, at)
	e.GroupID = account
	if traits != "" {
		e.Traits = json.RawMessage(traits)
	}
	return e
}

// mqas decodes the mqa topic: all records, and how many distinct mqa_ids.
func (r *running) mqas(t *testing.T) ([]event.MQA, int) {
	t.Helper()
	var out []event.MQA
	ids := map[string]bool{}
	for _, m := range r.readTopic(t, stream.TopicMQA) {
		var rec event.MQA
		if err := json.Unmarshal(m.Value, &rec); err != nil {
			t.Fatalf("mqa record %s: %v", m.Value, err)
		}
		if string(m.Key) != rec.AccountID {
			t.Errorf("mqa record keyed %q, account %q", m.Key, rec.AccountID)
		}
		out = append(out, rec)
		ids[rec.MQAID] = true
	}
	return out, len(ids)
}

// accountHistory is members of three accounts (one of them moving between
// two) with group calls and behaviour, in random order.
func accountHistory(sfx string, rng *rand.Rand) (evs []*event.Event, accounts []string) {
	accounts = []string{"acme-" + sfx, "globex-" + sfx, "initech-" + sfx}
	n := 0
	id := func() string { n++; return fmt.Sprintf("%s-%d", sfx, n) }
	for a, acct := range accounts {
		for m := range 4 {
			lead := fmt.Sprintf("%s-l%d-%d", sfx, a, m)
			evs = append(evs, groupCall(id(), lead, acct, t0, `{"name":"`+acct+`","industry":"software"}`))
			for range 1 + rng.IntN(5) {
				at := t0.Add(time.Duration(rng.IntN(72)) * time.Hour)
				if rng.IntN(3) == 0 {
					evs = append(evs, touch(id(), event.FormSubmit, "", lead, at))
				} else {
					evs = append(evs, pageView(id(), "", lead, "/pricing", at))
				}
			}
		}
	}
	// A lead of the first account moves to the second, later.
	evs = append(evs, groupCall(id(), sfx+"-l0-0", accounts[1], t0.Add(100*time.Hour), ""))
	rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	return evs, accounts
}

// Members added in any order, in shared batches, each event twice: every
// account ends as the replay of the same events says (members, capped
// engagement, fit), and each account that crossed published exactly one
// MQA record.
func TestProcessorAccounts(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		rules := accountRules(t)
		r := startProcessor(t, store, rules)
		sfx := newID("acct")
		evs, accounts := accountHistory(sfx, rand.New(rand.NewPCG(4, 2)))
		twice := append(append([]*event.Event{}, evs...), evs...)
		for i := 0; i < len(twice); i += 17 {
			r.produceEvents(t, twice[i:min(i+17, len(twice))]...)
		}
		rp := scoring.NewReplayer(rules, testWindow)
		for _, e := range evs {
			rp.Apply(e)
		}
		m := rules.Model("b2b")
		eventually(t, "accounts as the replay", 30*time.Second, func() (bool, string) {
			for _, a := range accounts {
				want := rp.States()[scoring.Account(a)]
				got := leadstatetest.State(t, store, scoring.Account(a))
				if got == nil {
					return false, a + ": no state"
				}
				gs, ws := got.Model("b2b"), want.Model("b2b")
				if gs == nil || math.Abs(gs.V-ws.V) > 1e-9 || gs.T != ws.T || gs.Fit != ws.Fit || gs.MQL != ws.MQL || len(got.Members) != len(want.Members) {
					return false, fmt.Sprintf("%s: got %+v want %+v", a, got, want)
				}
				sum, engaged, _ := scoring.Engagement(got, m, gs.T)
				wsum, wengaged, _ := scoring.Engagement(want, m, ws.T)
				if math.Abs(sum-wsum) > 1e-9 || engaged != wengaged {
					return false, fmt.Sprintf("%s: engagement %v (%d) want %v (%d)", a, sum, engaged, wsum, wengaged)
				}
			}
			return true, ""
		})
		crossings := 0
		for _, a := range accounts {
			crossings += rp.AccountCrossings(a, "b2b")
		}
		if crossings == 0 {
			t.Fatal("the history makes no MQA: the test proves nothing")
		}
		var mqas []event.MQA
		eventually(t, "MQA records", 15*time.Second, func() (bool, string) {
			var unique int
			mqas, unique = r.mqas(t)
			return unique == crossings, fmt.Sprintf("%d records, %d distinct, want %d", len(mqas), unique, crossings)
		})
		if len(mqas) != crossings {
			t.Fatalf("%d MQA records for %d crossings", len(mqas), crossings)
		}
		for _, x := range mqas {
			if x.EngagedMembers < 2 || x.Score < 120 || len(x.TopMembers) == 0 || x.TopMembers[0].Points > 50 {
				t.Errorf("MQA record %+v", x)
			}
		}
		// The lead that moved counts in its new account only.
		moved := leadstatetest.State(t, store, scoring.Lead(sfx+"-l0-0"))
		if moved.MemberOf != accounts[1] {
			t.Fatalf("moved lead is a member of %q", moved.MemberOf)
		}
		if n := r.metric(t, "leadstream_processor_mqa_published_total", ""); int(n) != crossings {
			t.Fatalf("mqa_published_total = %v, want %d", n, crossings)
		}
	})
}

// A processor killed between a member's write and its account's: the
// redelivered batch repairs the account and publishes the crossing once; a
// crossing stored but not published is published from the account's outbox
// with its id.
func TestProcessorRepairsAccounts(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		rules := accountRules(t)
		core := scoring.NewCore(rules, testWindow)
		sfx := newID("rep")
		acct := "acct-" + sfx
		l1, l2 := sfx+"-1", sfx+"-2"
		evs := []*event.Event{
			groupCall(sfx+"-g1", l1, acct, t0, `{"industry":"software"}`),
			groupCall(sfx+"-g2", l2, acct, t0, ""),
			touch(sfx+"-f1", event.FormSubmit, "", l1, t0.Add(time.Minute)),
			touch(sfx+"-f2", event.FormSubmit, "", l1, t0.Add(2*time.Minute)),
			touch(sfx+"-f3", event.FormSubmit, "", l2, t0.Add(3*time.Minute)),
			touch(sfx+"-f4", event.FormSubmit, "", l2, t0.Add(4*time.Minute)),
		}
		// The "crashed" processor stores the leads' writes only.
		sc := NewScorer(core, store, scoring.DefaultAnonymousTTL)
		f := &facts{recs: map[scoring.Subject]leadstate.Record{}, applied: map[scoring.AppliedQuery]bool{}}
		var plan *scoring.Plan
		for {
			plan = core.Plan(evs, nil, f, time.Now().UnixMilli())
			if plan.Complete() {
				break
			}
			if err := sc.learnMissing(ctx, f, plan); err != nil {
				t.Fatal(err)
			}
		}
		var cs []leadstate.Commit
		for _, w := range plan.Writes {
			if w.Subject.Account {
				if len(w.MQAs) != 1 {
					t.Fatalf("the account write holds %d crossings, want 1", len(w.MQAs))
				}
				continue
			}
			c := leadstate.Commit{Subject: w.Subject, Expect: f.recs[w.Subject].Version, State: w.State}
			for _, s := range w.Seen {
				c.Seen = append(c.Seen, leadstate.Seen{FP: s.FP, Bucket: s.Bucket, ExpireAt: core.BucketExpiry(s.Bucket)})
			}
			cs = append(cs, c)
		}
		res, err := store.Commit(ctx, cs)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range res {
			if x.Status != leadstate.Stored {
				t.Fatalf("commit: %+v", x)
			}
		}
		if st := leadstatetest.State(t, store, scoring.Account(acct)); st != nil {
			t.Fatalf("account stored: %+v", st)
		}
		r := startProcessor(t, store, rules)
		r.produceEvents(t, evs...)
		rp := scoring.NewReplayer(rules, testWindow)
		for _, e := range evs {
			rp.Apply(e)
		}
		want := rp.States()[scoring.Account(acct)].Model("b2b")
		eventually(t, "account repaired", 15*time.Second, func() (bool, string) {
			st := leadstatetest.State(t, store, scoring.Account(acct))
			if st == nil || st.Model("b2b") == nil {
				return false, "no account"
			}
			got := st.Model("b2b")
			return math.Abs(got.V-want.V) < 1e-9 && got.Fit == want.Fit && got.MQL && len(st.Members) == 2, fmt.Sprintf("%+v", st)
		})
		eventually(t, "one MQA", 15*time.Second, func() (bool, string) {
			mqas, unique := r.mqas(t)
			return len(mqas) == 1 && unique == 1 && r.events(t, "duplicate") == float64(len(evs)), fmt.Sprintf("%d records, duplicates %v", len(mqas), r.events(t, "duplicate"))
		})

		// A second account crosses, stored with its record in the outbox,
		// and the processor dies before publishing it.
		acct2 := "acct2-" + sfx
		l3, l4 := sfx+"-3", sfx+"-4"
		evs2 := []*event.Event{
			groupCall(sfx+"-g3", l3, acct2, t0, `{"industry":"software"}`), groupCall(sfx+"-g4", l4, acct2, t0, ""),
			touch(sfx+"-f5", event.FormSubmit, "", l3, t0.Add(time.Minute)), touch(sfx+"-f6", event.FormSubmit, "", l3, t0.Add(2*time.Minute)),
			touch(sfx+"-f7", event.FormSubmit, "", l4, t0.Add(3*time.Minute)), touch(sfx+"-f8", event.FormSubmit, "", l4, t0.Add(4*time.Minute)),
		}
		sc2 := NewScorer(scoring.NewCore(rules, testWindow), store, scoring.DefaultAnonymousTTL)
		res2, err := sc2.Score(ctx, evs2, map[scoring.Subject]leadstate.Record{})
		if err != nil || len(res2.OutboxMQA) != 1 {
			t.Fatalf("Score: %v, %d MQA records pending", err, len(res2.OutboxMQA))
		}
		pending := res2.OutboxMQA[0]
		r.produceEvents(t, evs2[len(evs2)-1]) // the trigger, redelivered
		eventually(t, "pending MQA published", 15*time.Second, func() (bool, string) {
			mqas, _ := r.mqas(t)
			for _, x := range mqas {
				if x.MQAID == pending.MQAID {
					return len(mqas) == 2, fmt.Sprintf("%d records", len(mqas))
				}
			}
			return false, fmt.Sprintf("%d records, none with id %s", len(mqas), pending.MQAID)
		})
		if n := leadstatetest.Client(t, store).Exists(ctx, leadstatetest.Key(scoring.Account(acct2), "o")).Val(); n != 0 {
			t.Fatalf("the account's outbox is still there")
		}
	})
}

// An account crosses at an event of one member; later in the same batch that
// member moves to another account. The processor stores the batch (the MQA
// record in the first account's outbox) and dies before publishing it. The
// README promises the record is published: "a processor killed before
// publishing leaves it there, and the redelivered trigger publishes it". The
// redelivered batch must find it although its lead is now in another account;
// and so must a batch of the lead's (from another partition) scored before
// the redelivery, in which the lead sees its removal stored and forgets the
// account.
func TestProcessorPublishesPendingMQAOfAccountTheTriggerLeft(t *testing.T) {
	for _, between := range []bool{false, true} {
		t.Run(fmt.Sprintf("scored_between=%v", between), func(t *testing.T) {
			leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
				ctx := context.Background()
				rules := accountRules(t)
				sfx := newID("mv")
				acctA, acctB := "a-"+sfx, "b-"+sfx
				l1, l2 := sfx+"-1", sfx+"-2"
				evs := []*event.Event{
					groupCall(sfx+"-g1", l1, acctA, t0, `{"industry":"software"}`),
					groupCall(sfx+"-g2", l2, acctA, t0, ""),
					touch(sfx+"-f1", event.FormSubmit, "", l1, t0.Add(time.Minute)),
					touch(sfx+"-f2", event.FormSubmit, "", l1, t0.Add(2*time.Minute)),
					touch(sfx+"-f3", event.FormSubmit, "", l2, t0.Add(3*time.Minute)),
					touch(sfx+"-f4", event.FormSubmit, "", l2, t0.Add(4*time.Minute)), // A crosses here (50+50+20 = 120)
					groupCall(sfx+"-g5", l2, acctB, t0.Add(5*time.Minute), ""),        // l2 moves to B
				}
				score := func(evs []*event.Event) *Scored {
					t.Helper()
					sc := NewScorer(scoring.NewCore(rules, testWindow), store, scoring.DefaultAnonymousTTL)
					res, err := sc.Score(ctx, evs, map[scoring.Subject]leadstate.Record{})
					if err != nil {
						t.Fatal(err)
					}
					return res
				}
				// An earlier batch, stored and published: A at 100, no crossing yet.
				if res := score(evs[:5]); len(res.OutboxMQA) != 0 {
					t.Fatalf("first batch: %d MQA records", len(res.OutboxMQA))
				}
				evs = evs[5:]
				// The "crashed" processor: the next batch is stored, nothing published.
				res := score(evs)
				if len(res.OutboxMQA) != 1 || res.OutboxMQA[0].AccountID != acctA {
					t.Fatalf("first run: %d MQA records pending (%+v), want A's one", len(res.OutboxMQA), res.OutboxMQA)
				}
				pending := res.OutboxMQA[0]
				var ids []string
				if between {
					// l2's event from another partition: l2 sees its
					// tombstone stored in A and forgets A.
					res := score([]*event.Event{touch(sfx+"-f6", event.FormSubmit, "", l2, t0.Add(6*time.Minute))})
					for _, m := range res.OutboxMQA {
						ids = append(ids, m.MQAID)
					}
					if st := leadstatetest.State(t, store, scoring.Lead(l2)); st == nil || len(st.Left) != 0 {
						t.Fatalf("l2 after its next event: %+v, want it to have forgotten A", st)
					}
				}
				// Kafka redelivers the batch (offsets were not committed).
				for _, m := range score(evs).OutboxMQA {
					ids = append(ids, m.MQAID)
				}
				left := leadstatetest.Client(t, store).HLen(ctx, leadstatetest.Key(scoring.Account(acctA), "o")).Val()
				if !slices.Contains(ids, pending.MQAID) {
					t.Fatalf("MQA records to publish %v, want the pending %s of account A; A's outbox still holds %d record(s) that nothing will ever publish", ids, pending.MQAID, left)
				}
			})
		})
	}
}

// A lead leaves a full account while this processor holds an older copy of
// it, in which the lead (evicted at once when it joined) has no entry, and
// another processor has since put the lead's entry back: the lead's
// tombstone is still written, its compare-and-set finds the copy stale, and
// the lead does not stay counted in both accounts.
func TestProcessorLeaverOfFullAccountWithStaleRead(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		core := scoring.NewCore(accountRules(t), testWindow)
		core.SetMaxAccountMembers(2)
		sc := NewScorer(core, store, scoring.DefaultAnonymousTTL)
		sfx := newID("full")
		acme, globex := "acme-"+sfx, "globex-"+sfx
		x, y, z := sfx+"-x", sfx+"-y", sfx+"-z"
		score := func(recs map[scoring.Subject]leadstate.Record, evs ...*event.Event) {
			t.Helper()
			if recs == nil {
				recs = map[scoring.Subject]leadstate.Record{}
			}
			if _, err := sc.Score(ctx, evs, recs); err != nil {
				t.Fatal(err)
			}
		}
		holdsLive := func(acct, lead string) bool {
			st := leadstatetest.State(t, store, scoring.Account(acct))
			for _, m := range st.Members {
				if m.Lead == lead && !m.Left {
					return true
				}
			}
			return false
		}
		at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
		score(nil, groupCall(sfx+"-gy", y, acme, at(0), ""))
		score(nil, touch(sfx+"-fy", event.FormSubmit, "", y, at(1)))
		score(nil, groupCall(sfx+"-gz", z, acme, at(2), ""))
		score(nil, touch(sfx+"-fz", event.FormSubmit, "", z, at(3)))
		score(nil, groupCall(sfx+"-gx", x, acme, at(4), "")) // acme full: x (0 points) evicted at once
		if holdsLive(acme, x) {
			t.Fatal("setup: acme holds x")
		}
		old, err := store.Read(ctx, []scoring.Subject{scoring.Account(acme)})
		if err != nil {
			t.Fatal(err)
		}
		// Another processor: x comes back into acme with its next events.
		score(nil, touch(sfx+"-fx1", event.FormSubmit, "", x, at(5)), touch(sfx+"-fx2", event.FormSubmit, "", x, at(6)))
		if !holdsLive(acme, x) {
			t.Fatal("setup: x did not come back into acme")
		}
		// This processor, with its older copy of acme: x moves to globex.
		score(map[scoring.Subject]leadstate.Record{scoring.Account(acme): old[scoring.Account(acme)]},
			groupCall(sfx+"-gx2", x, globex, at(7), ""))
		// Later events of x, read fresh.
		score(nil, touch(sfx+"-fx3", event.FormSubmit, "", x, at(8)))
		score(nil, touch(sfx+"-fx4", event.FormSubmit, "", x, at(9)))
		st := leadstatetest.State(t, store, scoring.Lead(x))
		if st.MemberOf == globex && holdsLive(acme, x) {
			t.Fatalf("x is a member of globex (Left %+v), yet acme still holds its live entry: x counts in both accounts for ever; acme %+v",
				st.Left, leadstatetest.State(t, store, scoring.Account(acme)).Members)
		}
	})
}

// An account no lead belongs to (a visitor's group call: a browser key may
// name any group id) expires like a visitor; once a lead joins, it is kept
// for ever. Every such account was kept for ever.
func TestProcessorMemberlessAccountExpires(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		sc := NewScorer(scoring.NewCore(accountRules(t), testWindow), store, time.Hour)
		sfx := newID("ttl")
		acct, anon, lead := "acct-"+sfx, "anon-"+sfx, "lead-"+sfx
		g := groupCall(sfx+"-g", "", acct, time.Now(), `{"industry":"software"}`)
		g.AnonymousID = anon
		if _, err := sc.Score(ctx, []*event.Event{g}, map[scoring.Subject]leadstate.Record{}); err != nil {
			t.Fatal(err)
		}
		c := leadstatetest.Client(t, store)
		key := leadstatetest.Key(scoring.Account(acct), "s")
		if ttl := c.PTTL(ctx, key).Val(); ttl <= 0 || ttl > time.Hour {
			t.Fatalf("account of a visitor's group call: pttl %v, want at most the anonymous ttl (1h)", ttl)
		}
		id := touch(sfx+"-id", event.Identify, anon, lead, time.Now())
		if _, err := sc.Score(ctx, []*event.Event{id}, map[scoring.Subject]leadstate.Record{}); err != nil {
			t.Fatal(err)
		}
		if st := leadstatetest.State(t, store, scoring.Lead(lead)); st.MemberOf != acct {
			t.Fatalf("the identified lead is a member of %q, want %q", st.MemberOf, acct)
		}
		if ttl := c.PTTL(ctx, key).Val(); ttl != -1 {
			t.Fatalf("account with a member: pttl %v, want none (kept)", ttl)
		}
	})
}
