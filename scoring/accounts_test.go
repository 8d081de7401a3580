package scoring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
)

// acctRules: coreRules' models, the first scoring accounts with a member cap.
func acctRules(t testing.TB) *Rules {
	t.Helper()
	r, err := Parse("accounts.yaml", []byte(`models:
  - name: m
    half_life: 48h
    threshold: 100
    rules:
      - {name: view, event: page_view, points: 5}
      - {name: pricing, event: page_view, url: "/pricing*", points: 15}
      - {name: careers, event: page_view, url: "/careers*", points: -8}
      - {name: open, event: email_open, points: 10, cap: {count: 2, window: 24h}}
      - {name: form, event: form_submit, points: 30}
    fit:
      - {name: senior, trait: title, matches: '(?i)vp|cto', points: 20}
    accounts:
      threshold: 120
      rearm_below: 10
      member_cap: 50
      engaged_at: 20
      min_engaged: 2
      fit:
        - {name: saas, trait: industry, equals: software, points: 30}
  - name: flat
    half_life: 0s
    threshold: 60
    rules:
      - {name: form, event: form_submit, points: 20}
`))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func group(id string, at time.Time, lead, anon, account, traits string) *event.Event {
	e := ev(id, event.Group, at, lead, anon)
	e.GroupID = account
	if traits != "" {
		e.Traits = []byte(traits)
	}
	return e
}

// canonAccounts describes accounts (traits, live members' values decayed to
// the account's time, fit, engagement) and leads' memberships.
func canonAccounts(rp *Replayer, rules *Rules) map[Subject]string {
	out := map[Subject]string{}
	for s, st := range rp.States() {
		var b strings.Builder
		if !s.Account {
			if !s.Anonymous && (st.MemberOf != "" || st.Into != "") {
				fmt.Fprintf(&b, "member of %q", st.MemberOf)
				out[s] = b.String()
			}
			continue
		}
		keys := make([]string, 0, len(st.Traits))
		for k := range st.Traits {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "trait %s=%s ", k, st.Traits[k].Value)
		}
		for _, ms := range st.Models {
			m := rules.Model(ms.Name)
			fmt.Fprintf(&b, "%s t=%d v=%.9g fit=%g %v;", ms.Name, ms.T, ms.V, ms.Fit, ms.FitReasons)
			for _, e := range st.Members {
				if e.Left {
					continue
				}
				v, _ := e.value(ms.Name)
				x := ValueAt(v.V, v.T, ms.T, m.HalfLife)
				if math.Abs(x) < 1e-9 {
					x = 0
				}
				fmt.Fprintf(&b, " %s=%.9g", e.Lead, x)
			}
		}
		out[s] = b.String()
	}
	return out
}

// genAccounts is gen's history plus group calls: leads join accounts, move
// between them, a visitor's group call carries into its lead, account
// traits change.
func genAccounts(rng *rand.Rand, n int) []*event.Event {
	evs := gen(rng, n)
	accounts := []string{"acme", "globex", "initech"}
	industries := []string{"software", "retail"}
	for i := range n / 4 {
		at := t0.Add(time.Duration(rng.IntN(21*24*60)) * time.Minute)
		id := fmt.Sprintf("g%03d", i)
		acct := accounts[rng.IntN(len(accounts))]
		traits := fmt.Sprintf(`{"name":%q,"industry":%q,"employees":%d}`, strings.ToUpper(acct), industries[rng.IntN(2)], 50*rng.IntN(10))
		if rng.IntN(5) == 0 {
			evs = append(evs, group(id, at, "", "a3", acct, traits)) // a visitor of L2
			continue
		}
		evs = append(evs, group(id, at, []string{"L1", "L2", "L3", "L4"}[rng.IntN(4)], "", acct, traits))
	}
	return evs
}

// Accounts are as order-independent as leads: any arrival order, one event
// at a time or in batches, with duplicates, leaves every account with the
// same traits, members, member values, fit and engagement (to 1e-9), and
// every lead in the same account.
func TestAccountsAreOrderIndependent(t *testing.T) {
	r := acctRules(t)
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 11))
		evs := genAccounts(rng, 60+rng.IntN(60))
		sorted := slices.Clone(evs)
		sort.SliceStable(sorted, func(a, b int) bool { return sorted[a].EventTime.Before(sorted[b].EventTime) })
		ref := replay(t, r, sorted)
		want := canonAccounts(ref, r)
		checkEngagement(t, ref, r)
		for perm := range 6 {
			shuffled := slices.Clone(evs)
			rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
			var rp *Replayer
			if perm%2 == 0 {
				rp = replay(t, r, shuffled)
			} else {
				rp = replayBatches(t, r, shuffled, 1+rng.IntN(20))
			}
			diffCanon(t, fmt.Sprintf("seed %d perm %d", seed, perm), canonAccounts(rp, r), want)
			diffCanon(t, fmt.Sprintf("seed %d perm %d (leads)", seed, perm), canon(rp, r), canon(ref, r))
			checkEngagement(t, rp, r)
		}
	}
}

// checkEngagement holds every account to its members' own states: the
// members are exactly the leads whose state names the account, and the
// engagement is the sum of their capped behaviour values.
func checkEngagement(t *testing.T, rp *Replayer, r *Rules) {
	t.Helper()
	m := r.Model("m")
	members := map[string][]string{}
	for s, st := range rp.States() {
		if !s.Account && !s.Anonymous && st.MemberOf != "" {
			members[st.MemberOf] = append(members[st.MemberOf], s.ID)
		}
	}
	for s, st := range rp.States() {
		if !s.Account {
			continue
		}
		var live []string
		for _, e := range st.Members {
			if !e.Left {
				live = append(live, e.Lead)
			}
		}
		want := members[s.ID]
		sort.Strings(want)
		if !slices.Equal(live, want) {
			t.Fatalf("account %s members %v, leads naming it %v", s.ID, live, want)
		}
		ms := st.Model("m")
		if ms == nil {
			continue
		}
		sum := 0.0
		for _, l := range want {
			if lm := rp.States()[Lead(l)].Model("m"); lm != nil {
				sum += min(ValueAt(lm.V, lm.T, ms.T, m.HalfLife), m.Accounts.MemberCap)
			}
		}
		if math.Abs(sum-ms.V) > 1e-9 {
			t.Fatalf("account %s engagement %v, its members' capped values add up to %v", s.ID, ms.V, sum)
		}
	}
}

// One hyperactive member counts for member_cap; a second engaged member
// makes the account an MQA, once, whatever the order; the MQA record lists
// its engaged members and top members.
func TestAccountMemberCapAndMQA(t *testing.T) {
	r := acctRules(t)
	var evs []*event.Event
	evs = append(evs, group("g1", t0, "L1", "", "acme", `{"name":"Acme","industry":"software","employees":300}`))
	evs = append(evs, group("g2", t0, "L2", "", "acme", ""))
	for i := range 10 { // L1: 300 points, capped at 50
		evs = append(evs, ev(fmt.Sprintf("f%d", i), event.FormSubmit, t0.Add(time.Duration(i)*time.Minute), "L1", ""))
	}
	// L2: 20 points (engaged at 20), then 30 more.
	evs = append(evs, ev("p1", event.PageView, t0.Add(time.Hour), "L2", ""), ev("p2", event.PageView, t0.Add(time.Hour), "L2", ""),
		ev("p3", event.PageView, t0.Add(time.Hour), "L2", ""), ev("p4", event.PageView, t0.Add(time.Hour), "L2", ""),
		ev("f-l2", event.FormSubmit, t0.Add(2*time.Hour), "L2", ""))
	rng := rand.New(rand.NewPCG(1, 2))
	for perm := range 8 {
		order := slices.Clone(evs)
		if perm > 0 {
			rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		}
		var mqas []event.MQA
		rp := NewReplayer(r, 0)
		for _, e := range order {
			p := rp.core.Plan([]*event.Event{e}, nil, rp.facts, 0)
			for _, w := range p.Writes {
				mqas = append(mqas, w.MQAs...)
			}
			rp.Commit(p)
		}
		acct := rp.States()[Account("acme")]
		ms := acct.Model("m")
		if ms.Fit != 30 || !ms.MQL {
			t.Fatalf("perm %d: acme fit %v mqa %v", perm, ms.Fit, ms.MQL)
		}
		l1 := rp.States()[Lead("L1")].Model("m")
		if l1.V < 250 {
			t.Fatalf("L1 behaviour %v, want about 300", l1.V)
		}
		// L1 capped at 50, L2 at 50 (its 50 points decay a little to the account's time).
		sum, engaged, members := Engagement(acct, r.Model("m"), ms.T)
		if engaged != 2 || members[0].Points != 50 || math.Abs(sum-ms.V) > 1e-12 || sum > 100 {
			t.Fatalf("perm %d: engagement %v engaged %d members %v", perm, sum, engaged, members)
		}
		if len(mqas) != 1 {
			t.Fatalf("perm %d: %d MQA records, want exactly one: %+v", perm, len(mqas), mqas)
		}
		m := mqas[0]
		if m.AccountID != "acme" || m.Model != "m" || m.EngagedMembers != 2 || len(m.TopMembers) != 2 || m.Score < 120 ||
			m.MQAID != event.MQAID("acme", "m", m.TriggerEventID) || m.Threshold != 120 {
			t.Fatalf("perm %d: MQA record %+v", perm, m)
		}
		if rp.AccountCrossings("acme", "m") != 1 {
			t.Fatalf("perm %d: %d crossings", perm, rp.AccountCrossings("acme", "m"))
		}
	}
}

// A lead that moves leaves a tombstone in its old account and counts only
// in the new one; a duplicate of the older group call changes nothing.
func TestAccountMove(t *testing.T) {
	r := acctRules(t)
	rp := replay(t, r, []*event.Event{
		group("g1", t0, "L1", "", "acme", ""),
		ev("f1", event.FormSubmit, t0.Add(time.Minute), "L1", ""),
		group("g2", t0.Add(time.Hour), "L1", "", "globex", ""),
		group("g1", t0, "L1", "", "acme", ""),
	})
	l := rp.States()[Lead("L1")]
	acme, globex := rp.States()[Account("acme")], rp.States()[Account("globex")]
	if l.MemberOf != "globex" || len(acme.Members) != 1 || !acme.Members[0].Left || globex.Model("m").V != 30 || acme.Model("m").V != 0 {
		t.Fatalf("lead %+v\nacme %+v\nglobex %+v", l, acme, globex)
	}
}

// A processor killed between a member's write and its account's: the
// redelivered batch (duplicates now) repairs the account, and a retry
// never counts a member twice.
func TestAccountRepairAfterLostWrite(t *testing.T) {
	r := acctRules(t)
	evs := []*event.Event{
		group("g1", t0, "L1", "", "acme", `{"industry":"software"}`),
		group("g2", t0, "L2", "", "acme", ""),
		ev("f1", event.FormSubmit, t0.Add(time.Minute), "L1", ""),
		ev("f2", event.FormSubmit, t0.Add(2*time.Minute), "L2", ""),
		ev("f3", event.FormSubmit, t0.Add(3*time.Minute), "L2", ""),
	}
	want := canonAccounts(replayBatches(t, r, evs, len(evs)), r)
	for _, keep := range []func(w Write) bool{
		func(w Write) bool { return !w.Subject.Account }, // the account writes lost
		func(w Write) bool { return true },               // all stored, batch redelivered
	} {
		rp := NewReplayer(r, 0)
		p := rp.core.Plan(evs, nil, rp.facts, 0)
		var kept []Write
		for _, w := range p.Writes {
			if keep(w) {
				kept = append(kept, w)
			}
		}
		p.Writes = kept
		rp.Commit(p)
		var mqas int
		for range 2 { // redelivered, twice
			p := rp.core.Plan(evs, nil, rp.facts, 0)
			for _, o := range p.Outcomes {
				if o != Duplicate {
					t.Fatalf("redelivered event: %v, want duplicate", o)
				}
			}
			for _, w := range p.Writes {
				mqas += len(w.MQAs)
			}
			rp.Commit(p)
		}
		diffCanon(t, "after repair", canonAccounts(rp, r), want)
		checkEngagement(t, rp, r)
		if mqas > 1 {
			t.Fatalf("%d MQA records after redelivery", mqas)
		}
	}
}

// An account keeps at most its member limit of entries: tombstones go first,
// then the members contributing least.
func TestAccountMemberLimit(t *testing.T) {
	r := acctRules(t)
	rp := NewReplayer(r, 0)
	rp.Core().SetMaxAccountMembers(3)
	for i := range 5 {
		lead := fmt.Sprintf("L%d", i)
		rp.Apply(group("g"+lead, t0, lead, "", "acme", ""))
		for j := range i {
			rp.Apply(ev(fmt.Sprintf("f%d-%d", i, j), event.FormSubmit, t0.Add(time.Minute), lead, ""))
		}
	}
	acct := rp.States()[Account("acme")]
	var got []string
	for _, e := range acct.Members {
		got = append(got, e.Lead)
	}
	if !slices.Equal(got, []string{"L2", "L3", "L4"}) {
		t.Fatalf("kept members %v, want the three contributing most", got)
	}
}

// With from-email-domain, an identify's work e-mail makes the lead a member
// of its domain's account; free-mail never does, and a group call wins.
func TestEmailDomainAccounts(t *testing.T) {
	f := func(email, want string) {
		t.Helper()
		if got := EmailDomainAccount(email); got != want {
			t.Errorf("EmailDomainAccount(%q) = %q, want %q", email, got, want)
		}
	}
	f("ann@Acme.example", "acme.example")
	f("bob@gmail.com", "")
	f("carol@mail.yahoo.co.jp", "")
	f("dave@ezweb.ne.jp", "")
	f("no-at-sign", "")
	f("@acme.example", "")
	f("eve@localhost", "")

	r := acctRules(t)
	id := func(id, lead, email string, at time.Time) *event.Event {
		e := ev(id, event.Identify, at, lead, "")
		e.Traits = []byte(fmt.Sprintf(`{"email":%q}`, email))
		return e
	}
	rp := NewReplayer(r, 0)
	rp.Core().SetFromEmailDomain(true)
	rp.Apply(id("i1", "L1", "ann@acme.example", t0))
	rp.Apply(id("i2", "L2", "bob@gmail.com", t0))
	rp.Apply(id("i3", "L3", "carol@acme.example", t0))
	rp.Apply(group("g3", t0.Add(-time.Hour), "L3", "", "acct-7", ""))
	st := rp.States()
	if st[Lead("L1")].MemberOf != "acme.example" || st[Lead("L2")].MemberOf != "" || st[Lead("L3")].MemberOf != "acct-7" {
		t.Fatalf("members of: L1 %q L2 %q L3 %q", st[Lead("L1")].MemberOf, st[Lead("L2")].MemberOf, st[Lead("L3")].MemberOf)
	}
	off := replay(t, r, []*event.Event{id("i1", "L1", "ann@acme.example", t0)})
	if off.States()[Lead("L1")].MemberOf != "" {
		t.Fatal("from-email-domain off, yet a lead joined its domain's account")
	}
}

// The accounts section is checked like the rest of the file.
func TestParseAccountsErrors(t *testing.T) {
	f := func(section, want string) {
		t.Helper()
		_, err := Parse("r.yaml", []byte("models:\n  - name: m\n    threshold: 10\n    rules:\n      - {name: r, event: page_view, points: 1}\n    accounts:\n"+section))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("accounts %q: error %v, want it to contain %q", section, err, want)
		}
	}
	f("      member_cap: 5\n", "models[0].accounts.threshold: missing")
	f("      threshold: 10\n      rearm_below: 10\n", "models[0].accounts.rearm_below: must be < threshold")
	f("      threshold: 10\n      engaged_at: 0\n", "models[0].accounts.engaged_at: must be > 0")
	f("      threshold: 10\n      min_engaged: -1\n", "models[0].accounts.min_engaged: must be >= 0")
	f("      threshold: 10\n      member_cap: -1\n", "models[0].accounts.member_cap: must be > 0")
	f("      threshold: 10\n      fit:\n        - {name: a, trait: x, equals: y, points: 1}\n        - {name: a, trait: x, equals: z, points: 1}\n", "duplicate fit rule name")
	f("      threshold: 10\n      treshold: 3\n", "unknown key")
	r, err := Parse("r.yaml", []byte("models:\n  - name: m\n    threshold: 10\n    rules:\n      - {name: r, event: page_view, points: 1}\n    accounts: {threshold: 30, member_cap: 10}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := r.Models[0].Accounts
	if a.Threshold != 30 || a.RearmBelow != 15 || a.MemberCap != 10 || a.EngagedAt != DefaultEngagedAt || a.MinEngaged != 1 {
		t.Fatalf("accounts defaults: %+v", a)
	}
}

// An identify folds a visitor's points into a lead and makes the lead's
// account cross. The MQA record (trigger_event_id, mqa_id) must not depend on
// how the events are batched: not name the batch's last event (another
// lead's), nor a later event of the same lead in the batch, where a plan of
// each event alone (rescore) names the identify. (Not the merge mark: for an
// alias of a lead it holds the lead's id, an e-mail, and an MQA record
// outlives the lead's erasure.)
func TestAccountMQAOfMergeIndependentOfBatching(t *testing.T) {
	r := acctRules(t)
	setup := []*event.Event{
		group("g1", t0, "L1", "", "acme", `{"industry":"software"}`),
		group("g2", t0, "L2", "", "acme", ""),
		ev("f2a", event.FormSubmit, t0.Add(time.Minute), "L2", ""),
		ev("f2b", event.FormSubmit, t0.Add(2*time.Minute), "L2", ""),
		ev("f1", event.FormSubmit, t0.Add(3*time.Minute), "L1", ""),
	}
	v1 := ev("v1", event.PageView, t0.Add(4*time.Minute), "", "V")
	v1.Path = "/pricing"
	v2 := ev("v2", event.PageView, t0.Add(5*time.Minute), "", "V")
	v2.Path = "/pricing"
	setup = append(setup, v1, v2)
	identify := ev("id1", event.Identify, t0.Add(6*time.Minute), "L1", "V")
	for _, next := range []*event.Event{
		ev("z1", event.FormSubmit, t0.Add(7*time.Minute), "Z", ""),   // another lead, in no account
		ev("f1b", event.FormSubmit, t0.Add(7*time.Minute), "L1", ""), // the merge's survivor again
	} {
		mqas := func(batches ...[]*event.Event) []event.MQA {
			rp := replay(t, r, setup)
			var got []event.MQA
			for _, b := range batches {
				p := rp.core.Plan(b, nil, rp.facts, 0)
				for _, w := range p.Writes {
					got = append(got, w.MQAs...)
				}
				rp.Commit(p)
			}
			return got
		}
		alone := mqas([]*event.Event{identify}, []*event.Event{next})
		batched := mqas([]*event.Event{identify, next})
		if len(alone) != 1 || alone[0].TriggerEventID != identify.ID {
			t.Fatalf("then %s, one event per plan: MQA records %+v, want one named by the identify %q", next.ID, alone, identify.ID)
		}
		if len(batched) != 1 || batched[0].TriggerEventID != alone[0].TriggerEventID || batched[0].MQAID != alone[0].MQAID || batched[0].Score != alone[0].Score {
			t.Fatalf("then %s, in one batch: MQA records %+v, want %+v (as one event per plan)", next.ID, batched, alone)
		}
	}
}
