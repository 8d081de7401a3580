package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// historySample is what Redis holds at one point of a long history.
type historySample struct {
	day                                    int
	leads, visitors, accounts              int // state keys
	buckets, bucketIDs, outboxes           int
	leadBytes, visitorBytes, accountBytes  int64 // state values (STRLEN)
	maxLead, maxVisitor, maxAccount        int64
	maxMembers                             int
	memory                                 int64 // MEMORY USAGE of every key
	noTTLVisitors, noTTLBuckets, cacheSize int
	leadIDs                                int // lead ids sent so far
}

// TestLongHistoryStaysBounded scores three years of synthetic history at
// accelerated event time through the processor's Scorer and a Redis server
// of its own, and checks what the README says grows with what ("Bounded
// state — what grows with what", "Accounts", "Personalization"): a fixed
// population of leads (page views, capped e-mail opens, forms, resends of
// recent events, a new cookie every quarter, a move to another account every
// year), plus every day new visitors that never come back, some of which
// name a made-up account, identify as a new lead or are aliased.
//
// The history runs from now into the future with the scorer's clock at the
// end of each simulated day, so every expiry the processor sets is still in
// the future in real time; each simulated week the test deletes the keys
// whose PEXPIRETIME has passed in simulated time, as Redis would have.
// Visitors, dedup sets and memberless accounts must plateau; lead states
// must grow only with the lead ids sent; no outbox may stay; no state may
// grow with the history. LEADSTREAM_LONG_HISTORY_SCALE=N multiplies the
// population (the README's figures are from N=1).
func TestLongHistoryStaysBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("long history")
	}
	scale := 1
	if s := os.Getenv("LEADSTREAM_LONG_HISTORY_SCALE"); s != "" {
		fmt.Sscan(s, &scale)
	}
	srv := testsvc.PrivateRedis(t)
	ctx := context.Background()
	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	store := leadstate.NewStore(rdb)
	ttl := scoring.DefaultAnonymousTTL
	core := scoring.NewCore(scoring.Default(), 0)
	sc := NewScorer(core, store, ttl)
	sc.cache = newStateCache(200)

	const (
		days        = 3 * 365
		sampleEvery = 30
		sweepEvery  = 7
	)
	nLeads, visitorsPerDay := 40*scale, 12*scale
	rng := rand.New(rand.NewPCG(1, 2))
	day0 := time.Now().Truncate(24 * time.Hour).Add(24 * time.Hour)
	leadIDs := map[string]bool{}
	type sent struct {
		e   *event.Event
		day int
	}
	var recent []sent // leads' events of the last 20 days, for resends
	var samples []historySample
	outcomes := map[scoring.Outcome]int{}
	mqls, mqas := 0, 0
	seq := 0
	id := func(p string) string { seq++; return fmt.Sprintf("%s-%08d", p, seq) }

	for d := 0; d < days; d++ {
		base := day0.Add(time.Duration(d) * 24 * time.Hour)
		at := func() time.Time { return base.Add(time.Duration(rng.Int64N(int64(23 * time.Hour)))) }
		var evs []*event.Event
		add := func(e *event.Event) *event.Event {
			if e.ReceivedAt.IsZero() {
				e.ReceivedAt = e.EventTime
			}
			evs = append(evs, e)
			return e
		}
		for l := range nLeads {
			lead := fmt.Sprintf("lead-%04d", l)
			leadIDs[lead] = true
			if d%365 == l%365 || d == 0 { // joins, then moves to another account once a year
				acct := fmt.Sprintf("acct-%d", (l+d/365)%8)
				add(&event.Event{ID: id("g"), Type: event.Group, LeadID: lead, GroupID: acct, EventTime: at(),
					Traits: json.RawMessage(`{"name":"` + acct + `","industry":"software","employees":450}`)})
			}
			if d%90 == l%90 { // a new browser: anonymous views, then an identify with traits
				anon := fmt.Sprintf("cookie-%d-%d", l, d/90)
				t0 := at()
				add(pageView(id("pv"), anon, "", "/pricing", t0))
				add(&event.Event{ID: id("id"), Type: event.Identify, AnonymousID: anon, LeadID: lead, EventTime: t0.Add(time.Minute),
					Traits: json.RawMessage(`{"title":"VP Sales","employees":450,"email":"x@acme.example"}`)})
			}
			if rng.IntN(10) >= 3 {
				continue
			}
			for range 1 + rng.IntN(3) {
				path := "/docs"
				if rng.IntN(3) == 0 {
					path = "/pricing"
				}
				recent = append(recent, sent{add(pageView(id("pv"), "", lead, path, at())), d})
			}
			for range rng.IntN(6) { // more than the cap of 3 a day
				add(touch(id("eo"), event.EmailOpen, "", lead, at()))
			}
			if rng.IntN(10) == 0 {
				add(touch(id("fs"), event.FormSubmit, "", lead, at()))
			}
		}
		// One hot lead: 30 events a day, past the 256 ids a state keeps, so
		// its ids spill to dedup sets.
		leadIDs["hot"] = true
		for range 30 {
			recent = append(recent, sent{add(pageView(id("pv"), "", "hot", "/docs", at())), d})
		}
		// Resends of recent lead events (SDK retries): duplicates.
		keep := recent[:0]
		for _, s := range recent {
			if d-s.day < 20 {
				keep = append(keep, s)
			}
		}
		recent = keep
		for range 3 {
			if len(recent) > 0 {
				e := *recent[rng.IntN(len(recent))].e
				e.ReceivedAt = base.Add(23 * time.Hour)
				add(&e)
			}
		}
		for v := range visitorsPerDay {
			anon := fmt.Sprintf("v-%d-%d", d, v)
			t0 := at()
			for i := range 1 + rng.IntN(3) {
				add(pageView(id("pv"), anon, "", []string{"/", "/pricing", "/blog"}[i], t0.Add(time.Duration(i)*time.Minute)))
			}
			switch {
			case v == 0: // names a made-up account, never becomes a lead
				add(&event.Event{ID: id("g"), Type: event.Group, AnonymousID: anon, GroupID: fmt.Sprintf("made-up-%d", d), EventTime: t0.Add(5 * time.Minute),
					Traits: json.RawMessage(`{"name":"x"}`)})
			case v == 1 && d%2 == 0: // identifies as a lead id never seen again
				lead := fmt.Sprintf("new-%d", d)
				leadIDs[lead] = true
				add(touch(id("id"), event.Identify, anon, lead, t0.Add(5*time.Minute)))
				if d%10 == 0 { // … which is aliased into yet another id
					leadIDs["alias-"+lead] = true
					add(&event.Event{ID: id("al"), Type: event.Alias, LeadID: "alias-" + lead, PreviousID: lead, EventTime: t0.Add(6 * time.Minute)})
				}
			}
		}
		for _, e := range evs {
			if e.ReceivedAt.IsZero() || e.ReceivedAt.Before(e.EventTime) {
				e.ReceivedAt = e.EventTime
			}
		}
		now := base.Add(24*time.Hour - time.Second)
		sc.clock = func() time.Time { return now }
		res, err := sc.Score(ctx, evs, map[scoring.Subject]leadstate.Record{})
		if err != nil {
			t.Fatalf("day %d: %v", d, err)
		}
		for _, o := range res.Outcomes {
			outcomes[o]++
		}
		// The processor acknowledges what Kafka took.
		mqls += len(res.Outbox)
		mqas += len(res.OutboxMQA)
		if err := store.AckOutbox(ctx, res.Outbox); err != nil {
			t.Fatal(err)
		}
		if err := store.AckOutboxMQA(ctx, res.OutboxMQA); err != nil {
			t.Fatal(err)
		}
		if d%sweepEvery == sweepEvery-1 || d%sampleEvery == sampleEvery-1 {
			sweepExpired(t, rdb, now)
		}
		if d%sampleEvery == sampleEvery-1 {
			s := sampleHistory(t, rdb, d+1)
			var accts []scoring.Subject
			for a := range 8 {
				accts = append(accts, scoring.Account(fmt.Sprintf("acct-%d", a)))
			}
			recs, err := store.Read(ctx, accts)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if r.State != nil {
					s.maxMembers = max(s.maxMembers, len(r.State.Members))
				}
			}
			s.cacheSize = len(sc.cache.cur) + len(sc.cache.prev)
			s.leadIDs = len(leadIDs)
			samples = append(samples, s)
		}
	}
	t.Logf("%d leads, %d visitors a day, %d days: outcomes %v, %d MQL and %d MQA records", nLeads, visitorsPerDay, days, outcomes, mqls, mqas)
	t.Logf("%5s %6s %8s %5s %7s %8s %6s %9s %9s %8s %8s %8s %7s %9s", "day", "leads", "visitors", "accts", "buckets", "bucketid", "outbox",
		"lead B", "visitor B", "max lead", "max acct", "members", "cache", "memory")
	for _, s := range samples {
		t.Logf("%5d %6d %8d %5d %7d %8d %6d %9d %9d %8d %8d %8d %7d %9d", s.day, s.leads, s.visitors, s.accounts, s.buckets, s.bucketIDs, s.outboxes,
			s.leadBytes, s.visitorBytes, s.maxLead, s.maxAccount, s.maxMembers, s.cacheSize, s.memory)
	}

	last := samples[len(samples)-1]
	// Year 2 (after the first anonymous-ttl and a week) against year 3.
	var y2 []historySample
	for _, s := range samples {
		if s.day > 365+int(ttl/(24*time.Hour))-365+30 && s.day <= 2*365 {
			y2 = append(y2, s)
		}
	}
	peak := func(f func(historySample) int64) (hi int64) {
		for _, s := range y2 {
			hi = max(hi, f(s))
		}
		return hi
	}
	bounded := func(what string, f func(historySample) int64, slack float64) {
		t.Helper()
		hi := peak(f)
		for _, s := range samples {
			if s.day > 2*365 && float64(f(s)) > float64(hi)*slack {
				t.Errorf("%s grows: %d on day %d, at most %d in year 2", what, f(s), s.day, hi)
				return
			}
		}
	}
	bounded("visitor states", func(s historySample) int64 { return int64(s.visitors) }, 1.1)
	bounded("visitor state bytes", func(s historySample) int64 { return s.visitorBytes }, 1.1)
	bounded("dedup sets", func(s historySample) int64 { return int64(s.buckets) }, 1.25)
	bounded("dedup ids in sets", func(s historySample) int64 { return int64(s.bucketIDs) }, 1.25)
	bounded("largest lead state", func(s historySample) int64 { return s.maxLead }, 1.25)
	for _, s := range samples {
		// Leads are kept, one state per lead id sent, and nothing else.
		if s.leads != s.leadIDs {
			t.Errorf("day %d: %d lead states, %d lead ids sent", s.day, s.leads, s.leadIDs)
		}
		// Members and tombstones: at most the leads that were ever members.
		if s.maxMembers > nLeads {
			t.Errorf("day %d: an account holds %d entries, %d leads exist", s.day, s.maxMembers, nLeads)
		}
	}
	// Visitors live at most anonymous-ttl after their last write (plus
	// the sweep's week): the ones of the last 400 days, and the quarterly
	// cookies of the fixed leads.
	if want := (int(ttl/(24*time.Hour)) + sweepEvery) * (visitorsPerDay + nLeads/90 + 1); last.visitors > want {
		t.Errorf("%d visitor states, at most %d expected", last.visitors, want)
	}
	// Accounts: 8 with members, plus the made-up ones of the last 400 days.
	if want := 8 + int(ttl/(24*time.Hour)) + sweepEvery; last.accounts > want {
		t.Errorf("%d account states, at most %d expected", last.accounts, want)
	}
	for _, s := range samples {
		if s.outboxes != 0 {
			t.Errorf("day %d: %d outboxes left after every record was acknowledged", s.day, s.outboxes)
		}
		if s.noTTLVisitors != 0 || s.noTTLBuckets != 0 {
			t.Errorf("day %d: %d visitor states and %d dedup sets without an expiry", s.day, s.noTTLVisitors, s.noTTLBuckets)
		}
		if s.cacheSize > 2*200 {
			t.Errorf("day %d: state cache holds %d records, at most 400", s.day, s.cacheSize)
		}
	}
}

// sweepExpired deletes the keys whose expiry lies before now, as Redis
// would have had the history happened in real time.
func sweepExpired(t *testing.T, rdb redis.UniversalClient, now time.Time) {
	t.Helper()
	ctx := context.Background()
	keys := allKeys(t, rdb)
	pipe := rdb.Pipeline()
	exp := make([]*redis.DurationCmd, len(keys))
	for i, k := range keys {
		exp[i] = pipe.PExpireTime(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	var del []string
	for i, c := range exp {
		if ms := c.Val(); ms > 0 && ms.Milliseconds() <= now.UnixMilli() {
			del = append(del, keys[i])
		}
	}
	for len(del) > 0 {
		n := min(len(del), 1000)
		if err := rdb.Del(ctx, del[:n]...).Err(); err != nil {
			t.Fatal(err)
		}
		del = del[n:]
	}
}

func allKeys(t *testing.T, rdb redis.UniversalClient) []string {
	t.Helper()
	ctx := context.Background()
	var keys []string
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return keys
}

// sampleHistory measures every key by kind.
func sampleHistory(t *testing.T, rdb redis.UniversalClient, day int) historySample {
	t.Helper()
	ctx := context.Background()
	keys := allKeys(t, rdb)
	pipe := rdb.Pipeline()
	type probe struct {
		size *redis.IntCmd
		mem  *redis.IntCmd
		exp  *redis.DurationCmd
	}
	ps := make([]probe, len(keys))
	for i, k := range keys {
		ps[i].mem = pipe.MemoryUsage(ctx, k)
		ps[i].exp = pipe.PExpireTime(ctx, k)
		switch {
		case strings.HasSuffix(k, "}:s"):
			ps[i].size = pipe.StrLen(ctx, k)
		case strings.Contains(k, "}:d:"):
			ps[i].size = pipe.SCard(ctx, k)
		case strings.HasSuffix(k, "}:o"):
			ps[i].size = pipe.HLen(ctx, k)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	s := historySample{day: day}
	for i, k := range keys {
		p := ps[i]
		s.memory += p.mem.Val()
		var n int64
		if p.size != nil {
			n = p.size.Val()
		}
		noTTL := p.exp.Val() < 0
		switch {
		case strings.Contains(k, "}:d:"):
			s.buckets++
			s.bucketIDs += int(n)
			if noTTL {
				s.noTTLBuckets++
			}
		case strings.HasSuffix(k, "}:o"):
			s.outboxes++
		case strings.Contains(k, "{l:"):
			s.leads++
			s.leadBytes += n
			s.maxLead = max(s.maxLead, n)
		case strings.Contains(k, "{a:"):
			s.visitors++
			s.visitorBytes += n
			s.maxVisitor = max(s.maxVisitor, n)
			if noTTL {
				s.noTTLVisitors++
			}
		case strings.Contains(k, "{c:"):
			s.accounts++
			s.accountBytes += n
			s.maxAccount = max(s.maxAccount, n)
		}
	}
	return s
}

// TestVisitorExpiryCountsFromTheWrite pins what the expiries of a write are
// measured from (README "Bounded state"): a visitor's state expires
// anonymous-ttl after the processor wrote it — its clock, not the event's
// time — so a backdated event (a server key's, up to the dedup window old)
// keeps a visitor that long after it is processed; an event that changes
// nothing (a custom event no rule or audience matches) does not renew it.
// Dedup sets expire by event time: two windows after their bucket's end.
func TestVisitorExpiryCountsFromTheWrite(t *testing.T) {
	srv := testsvc.PrivateRedis(t)
	ctx := context.Background()
	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	store := leadstate.NewStore(rdb)
	const ttl = 400 * 24 * time.Hour
	core := scoring.NewCore(scoring.Default(), 0)
	sc := NewScorer(core, store, ttl)
	now := time.Now().Truncate(time.Second)
	sc.clock = func() time.Time { return now }
	expiry := func(k string) time.Time {
		t.Helper()
		d, err := rdb.PExpireTime(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		return time.UnixMilli(d.Milliseconds())
	}

	// A page view of 20 days ago, received now (a server key's backdated event).
	at := now.Add(-20 * 24 * time.Hour)
	e := pageView("old-view", "v-backdated", "", "/", at)
	e.ReceivedAt = now
	if _, err := sc.Score(ctx, []*event.Event{e}, map[scoring.Subject]leadstate.Record{}); err != nil {
		t.Fatal(err)
	}
	k := leadstatetest.Key(scoring.Anon("v-backdated"), "s")
	if got, want := expiry(k), now.Add(ttl); !got.Equal(want) {
		t.Errorf("visitor expires %v, want processing time + ttl = %v (event time + ttl = %v)", got, want, at.Add(ttl))
	}

	// A day later an event that changes nothing: no write, no renewal.
	later := now.Add(24 * time.Hour)
	sc.clock = func() time.Time { return later }
	c := touch("custom-1", event.Custom, "v-backdated", "", later)
	c.Track = "Nothing Scores This"
	res, err := sc.Score(ctx, []*event.Event{c}, map[scoring.Subject]leadstate.Record{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcomes[0] == scoring.Scored {
		t.Fatalf("custom event scored: %v", res.Outcomes[0])
	}
	if got, want := expiry(k), now.Add(ttl); !got.Equal(want) {
		t.Errorf("after an event that changed nothing the visitor expires %v, want still %v", got, want)
	}
}
