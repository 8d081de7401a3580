package processor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// One event id applied both by a lead (in a bucket it spilled: the lead holds
// over InlineIDs ids there) and by a visitor (a client sent one messageId
// anonymously, then as the lead). The visitor's identify merges it into the
// lead: the merge recorded the visitor's ids in the lead, that one too; the
// commit refused the write as a duplicate and the plan was made again the
// same way until the attempts ran out — the partition stalled on it.
func TestProcessorMergeOfIDBothApplied(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		sc := NewScorer(scoring.NewCore(scoring.Default(), testWindow), store, scoring.DefaultAnonymousTTL)
		lead, anon := newID("lead"), newID("anon")
		shared := newID("msg")
		var evs []*event.Event
		for i := range scoring.InlineIDs + 10 {
			evs = append(evs, pageView(fmt.Sprintf("%s-pv%d", lead, i), "", lead, "/", t0.Add(time.Duration(i)*time.Second)))
		}
		evs = append(evs, pageView(shared, "", lead, "/", t0.Add(time.Hour)))
		if _, err := sc.Score(ctx, evs, map[scoring.Subject]leadstate.Record{}); err != nil {
			t.Fatal(err)
		}
		if res, err := sc.Score(ctx, []*event.Event{pageView(shared, anon, "", "/", t0.Add(time.Hour))}, map[scoring.Subject]leadstate.Record{}); err != nil || res.Outcomes[0] != scoring.Scored {
			t.Fatalf("the visitor's copy: %+v %v", res, err)
		}
		id := touch(newID("identify"), event.Identify, anon, lead, t0.Add(2*time.Hour))
		res, err := sc.Score(ctx, []*event.Event{id}, map[scoring.Subject]leadstate.Record{})
		if err != nil {
			t.Fatalf("identify merging the visitor into the lead: %v", err)
		}
		if st := leadstatetest.State(t, store, scoring.Anon(anon)); st == nil || st.Into != lead || st.Pending {
			t.Fatalf("visitor after the identify (%v): %+v, want merged into the lead", res.Outcomes, st)
		}
		// Its redelivery is a duplicate.
		if res, err := sc.Score(ctx, []*event.Event{id}, map[scoring.Subject]leadstate.Record{}); err != nil || res.Outcomes[0] != scoring.Duplicate {
			t.Fatalf("redelivered identify: %+v %v, want duplicate", res, err)
		}
	})
}

// A crossing of lead B waits in B's outbox; the same batch aliases B into A.
// The processor dies before Kafka acknowledged the MQL records. The
// redelivered batch is all duplicates, resolved to the survivor A: B's
// outbox must be read too (only A's was: B's crossing was never published).
func TestProcessorPublishesPendingMQLOfAliasedLead(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		rules, err := scoring.Parse("r.yaml", []byte(`models:
  - name: trial
    half_life: 720h
    threshold: 40
    rules:
      - {name: form-submit, event: form_submit, points: 50}
`))
		if err != nil {
			t.Fatal(err)
		}
		a, b := newID("leadA"), newID("leadB")
		form := touch(b+"-fs", event.FormSubmit, "", b, t0)
		alias := &event.Event{ID: newID("alias"), Type: event.Alias, EventTime: t0.Add(time.Minute), ReceivedAt: t0.Add(time.Minute), LeadID: a, PreviousID: b}
		batch := []*event.Event{form, alias}
		res, err := NewScorer(scoring.NewCore(rules, testWindow), store, scoring.DefaultAnonymousTTL).Score(ctx, batch, map[scoring.Subject]leadstate.Record{})
		if err != nil || len(res.Outbox) != 2 {
			t.Fatalf("first attempt: %+v %v (want B's crossing and A's by the merge)", res, err)
		}
		// A's crossing by the merge names the alias, not the merge mark
		// ("merge:l:" and B's id, an e-mail, outliving B's erasure).
		for _, m := range res.Outbox {
			if m.LeadID == a && (m.TriggerEventID != alias.ID || m.MQLID != event.MQLID(a, "trial", alias.ID)) {
				t.Errorf("A's crossing by the merge: trigger %q, id %q; want the alias %q", m.TriggerEventID, m.MQLID, alias.ID)
			}
		}
		// Crash: nothing published, offsets not committed. A new processor.
		res, err = NewScorer(scoring.NewCore(rules, testWindow), store, scoring.DefaultAnonymousTTL).Score(ctx, batch, map[scoring.Subject]leadstate.Record{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, m := range res.Outbox {
			got[m.LeadID] = true
		}
		if !got[a] || !got[b] || len(res.Outbox) != 2 {
			t.Fatalf("redelivery (outcomes %v): %d MQL records to publish, of leads %v; want B's and A's (B's outbox holds %d, A's %d)",
				res.Outcomes, len(res.Outbox), got, outboxLen(t, store, b), outboxLen(t, store, a))
		}
	})
}

// Two processors handle opposite aliases of two leads with history at once
// (alias A<-B keyed by A and alias B<-A keyed by B: two partitions). Both
// read A and B as survivors and each stores its first step, the source
// frozen and pointing at the other: two different keys, both
// compare-and-sets win, and A and B point at each other. The next event of
// either recursed without end (the processor died of a stack overflow, and
// every processor given the batch after it). Now the cycle is broken where
// every processor breaks it — the lower id survives — and nothing is
// counted twice.
func TestProcessorOppositeAliasesCycle(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		rules := scoring.Default()
		core := scoring.NewCore(rules, testWindow)
		sc := NewScorer(core, store, scoring.DefaultAnonymousTTL)
		a, b := newID("leadA"), newID("leadB") // a < b
		ref := newID("leadC")                  // the same events on one lead
		first := []*event.Event{pageView(a+"-pv", "", a, "/pricing", t0), pageView(b+"-pv", "", b, "/pricing", t0)}
		if _, err := sc.Score(ctx, first, map[scoring.Subject]leadstate.Record{}); err != nil {
			t.Fatal(err)
		}
		alias := func(user, prev string) *event.Event {
			at := t0.Add(time.Minute)
			return &event.Event{ID: newID("alias"), Type: event.Alias, EventTime: at, ReceivedAt: at, LeadID: user, PreviousID: prev}
		}
		now := time.Now().UnixMilli()
		// Both processors read the same states, then each stores its
		// first phase (the frozen source).
		var plans []*scoring.Plan
		var fs []*facts
		for _, e := range []*event.Event{alias(a, b), alias(b, a)} {
			f := &facts{recs: map[scoring.Subject]leadstate.Record{}, applied: map[scoring.AppliedQuery]bool{}}
			if err := sc.read(ctx, f.recs, subjectsOf(e)); err != nil {
				t.Fatal(err)
			}
			plan := core.Plan([]*event.Event{e}, nil, f, now)
			if !plan.Complete() {
				t.Fatalf("incomplete plan")
			}
			plans, fs = append(plans, plan), append(fs, f)
		}
		for i, plan := range plans {
			var cs []leadstate.Commit
			for _, w := range plan.Writes {
				if w.Phase == 0 {
					cs = append(cs, leadstate.Commit{Subject: w.Subject, Expect: fs[i].recs[w.Subject].Version, State: w.State, MQLs: w.MQLs})
				}
			}
			res, err := store.Commit(ctx, cs)
			if err != nil {
				t.Fatal(err)
			}
			for j, r := range res {
				if r.Status != leadstate.Stored || (!cs[j].Subject.Anonymous && !cs[j].State.Pending) {
					t.Fatalf("plan %d phase 0 write %v: status %v, pending %v", i, cs[j].Subject, r.Status, cs[j].State.Pending)
				}
			}
		}
		// The next events of A and of B, on a new processor.
		sc = NewScorer(scoring.NewCore(rules, testWindow), store, scoring.DefaultAnonymousTTL)
		next := []*event.Event{pageView(a+"-pv2", "", a, "/pricing", t0.Add(time.Hour)), pageView(b+"-pv2", "", b, "/pricing", t0.Add(2*time.Hour))}
		res, err := sc.Score(ctx, next, map[scoring.Subject]leadstate.Record{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Outcomes[0] != scoring.Scored || res.Outcomes[1] != scoring.Scored {
			t.Fatalf("outcomes %v", res.Outcomes)
		}
		stA, stB := leadstatetest.State(t, store, scoring.Lead(a)), leadstatetest.State(t, store, scoring.Lead(b))
		if stA.Into != "" || stA.Pending || stB.Into != a || stB.Pending || len(stB.Models) != 0 {
			t.Fatalf("after the cycle: A into %q pending %v; B into %q pending %v with %d models; want B merged into A (the lower id)",
				stA.Into, stA.Pending, stB.Into, stB.Pending, len(stB.Models))
		}
		refEvs := []*event.Event{pageView(ref+"-1", "", ref, "/pricing", t0), pageView(ref+"-2", "", ref, "/pricing", t0),
			pageView(ref+"-3", "", ref, "/pricing", t0.Add(time.Hour)), pageView(ref+"-4", "", ref, "/pricing", t0.Add(2*time.Hour))}
		if _, err := sc.Score(ctx, refEvs, map[scoring.Subject]leadstate.Record{}); err != nil {
			t.Fatal(err)
		}
		stC := leadstatetest.State(t, store, scoring.Lead(ref))
		at := t0.Add(3 * time.Hour).UnixMilli()
		for _, m := range rules.Models {
			got, want := stA.Model(m.Name).ScoreAt(at, m.HalfLife), stC.Model(m.Name).ScoreAt(at, m.HalfLife)
			if !near(got, want) {
				t.Errorf("model %s: A's score %v, want %v (both leads' four page views once each)", m.Name, got, want)
			}
		}
	})
}

// A visitor's page view, its identify as L1 and its identify as L2 (a shared
// device) are stored; the processor dies before committing the offsets. The
// redelivered page view passes through the visitor, now linked to L2: it
// is a duplicate (the visitor's ids had moved to L1 only, and it scored
// again on L2).
func TestProcessorRelinkedVisitorRedelivery(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		rules := scoring.Default()
		anon, l1, l2 := newID("anon"), newID("l1"), newID("l2")
		batch := []*event.Event{
			pageView(anon+"-pv", anon, "", "/pricing", t0),
			touch(newID("id1"), event.Identify, anon, l1, t0.Add(time.Minute)),
			touch(newID("id2"), event.Identify, anon, l2, t0.Add(2*time.Minute)),
		}
		if _, err := NewScorer(scoring.NewCore(rules, testWindow), store, scoring.DefaultAnonymousTTL).Score(ctx, batch, map[scoring.Subject]leadstate.Record{}); err != nil {
			t.Fatal(err)
		}
		v1, _ := modelState(t, store, l2, "default")
		res, err := NewScorer(scoring.NewCore(rules, testWindow), store, scoring.DefaultAnonymousTTL).Score(ctx, batch, map[scoring.Subject]leadstate.Record{})
		if err != nil {
			t.Fatal(err)
		}
		v2, _ := modelState(t, store, l2, "default")
		l1v, _ := modelState(t, store, l1, "default")
		if res.Outcomes[0] != scoring.Duplicate || v1 != v2 || l1v == "" {
			t.Fatalf("redelivered batch: outcomes %v; L2's value %q -> %q (L1 holds %q): want a duplicate, L2 unchanged", res.Outcomes, v1, v2, l1v)
		}
	})
}

// A person whose id changed many times, each new id aliased to the next: a
// chain of merged leads longer than the states one read follows and than the
// batch's attempts. An event of the first id, on a processor that knows
// nothing yet, scores on the last lead. It scored 8 hops down the chain, on a
// lead merged away (and a chain past the attempts would have failed the
// batch at every try).
func TestProcessorLongAliasChain(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		rules := scoring.Default()
		sc := NewScorer(scoring.NewCore(rules, testWindow), store, scoring.DefaultAnonymousTTL)
		const n = 250
		base := newID("chain")
		id := func(i int) string { return fmt.Sprintf("%s-%03d", base, i) }
		if _, err := sc.Score(ctx, []*event.Event{pageView(base+"-pv", "", id(0), "/pricing", t0)}, map[scoring.Subject]leadstate.Record{}); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < n; i++ {
			at := t0.Add(time.Duration(i) * time.Second)
			al := &event.Event{ID: fmt.Sprintf("%s-al%d", base, i), Type: event.Alias, EventTime: at, ReceivedAt: at, LeadID: id(i), PreviousID: id(i - 1)}
			if _, err := sc.Score(ctx, []*event.Event{al}, map[scoring.Subject]leadstate.Record{}); err != nil {
				t.Fatalf("alias %d: %v", i, err)
			}
		}
		ref := newID("ref") // the same two page views on one lead
		if _, err := sc.Score(ctx, []*event.Event{pageView(ref+"-pv", "", ref, "/pricing", t0), pageView(ref+"-pv2", "", ref, "/pricing", t0.Add(time.Hour))}, map[scoring.Subject]leadstate.Record{}); err != nil {
			t.Fatal(err)
		}
		fresh := NewScorer(scoring.NewCore(rules, testWindow), store, scoring.DefaultAnonymousTTL)
		res, err := fresh.Score(ctx, []*event.Event{pageView(base+"-pv2", "", id(0), "/pricing", t0.Add(time.Hour))}, map[scoring.Subject]leadstate.Record{})
		if err != nil {
			t.Fatalf("an event of the first id of a chain of %d: %v", n, err)
		}
		if res.Outcomes[0] != scoring.Scored {
			t.Fatalf("outcome %v, want scored", res.Outcomes[0])
		}
		last, want := leadstatetest.State(t, store, scoring.Lead(id(n-1))), leadstatetest.State(t, store, scoring.Lead(ref))
		if last.Into != "" || last.Model("default") == nil || last.Model("default").V != want.Model("default").V {
			t.Fatalf("last lead of the chain: %+v, want %v points like %s", last.Model("default"), want.Model("default").V, ref)
		}
		// The lead API and the audiences API read the chain to its end too.
		lr, err := store.ReadLead(ctx, id(0))
		if err != nil {
			t.Fatal(err)
		}
		if lr.Survivor == nil || lr.Survivor.ID != id(n-1) {
			t.Fatalf("ReadLead of the first id: survivor %v, want %s", lr.Survivor, id(n-1))
		}
		chain, err := store.ReadChain(ctx, scoring.Lead(id(0)))
		if err != nil {
			t.Fatal(err)
		}
		if len(chain) != n || chain[n-1].ID != id(n-1) {
			t.Fatalf("ReadChain of the first id: %d states, want %d ending at %s", len(chain), n, id(n-1))
		}
	})
}
