package leadstate_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

func newID(prefix string) string { return fmt.Sprintf("%s-%016x", prefix, rand.Uint64()) }

// sampleState is a state using every field of the encoding.
func sampleState(s scoring.Subject) *scoring.State {
	return &scoring.State{Subject: s, Into: "", MaxTime: 1772449200123,
		Recent:  []scoring.BucketIDs{{Bucket: 3, IDs: []uint64{1, 1 << 63, ^uint64(0)}}},
		Spilled: []int64{3, 4},
		Models: []scoring.ModelState{{
			Name: "default", RulesHash: "0123456789abcdef", V: 42.125, T: 1772449200123, Fit: 30,
			FitReasons: []event.Reason{{Rule: "senior", Points: 20}, {Rule: "big", Points: 10}},
			MQL:        true, MQLAt: 1772449100000, MQLTrigger: "evt-1",
			Rules: map[string]scoring.RuleValue{"open": {V: 19.5, T: 1772449200000}, "view": {V: -3, T: 1772440000000}},
			Caps: map[scoring.CapKey][]scoring.CapHit{{Rule: "open", Window: 1772409600000}: {
				{Time: 1772449100000, ID: "o1", Points: 10}, {Time: 1772449200000, ID: "o2", Points: 10}}},
		}},
		Traits: map[string]*scoring.Trait{"title": {Value: []byte(`"VP"`), Time: 1772449000000, ID: "i1"}},
	}
}

func commit(t *testing.T, s *leadstate.Store, c leadstate.Commit) leadstate.CommitResult {
	t.Helper()
	res, err := s.Commit(context.Background(), []leadstate.Commit{c})
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

// Commit is a compare-and-set: it stores a state only over the version it
// was computed from, records the ids, refuses ids applied already, and keeps
// the MQL records until acknowledged.
func TestCommitCompareAndSet(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		lead := scoring.Lead(newID("lead") + "@example.com")
		st := sampleState(lead)
		day := time.Now().Add(24 * time.Hour).UnixMilli()
		mql := event.MQL{MQLID: event.MQLID(lead.ID, "default", "evt-1"), LeadID: lead.ID, Model: "default", Score: 102.5,
			Threshold: 100, CrossedAt: time.UnixMilli(1772449100000).UTC(), TriggerEventID: "evt-1", Reasons: []event.Reason{{Rule: "open", Points: 19.5}}}
		r := commit(t, s, leadstate.Commit{Subject: lead, State: st, Seen: []leadstate.Seen{{FP: scoring.Fingerprint("evt-1"), Bucket: 7, ExpireAt: day}, {FP: scoring.Fingerprint("evt-2"), Bucket: 8, ExpireAt: day}},
			MQLs: []event.MQL{mql}})
		if r.Status != leadstate.Stored || len(r.Version) != 8 {
			t.Fatalf("first commit: %+v", r)
		}
		if pending, err := s.Outbox(ctx, []string{lead.ID}); err != nil || len(pending) != 1 || !reflect.DeepEqual(pending[0], mql) {
			t.Fatalf("outbox after the first commit: %+v, %v", pending, err)
		}
		if got := leadstatetest.State(t, s, lead); !reflect.DeepEqual(got, st) {
			t.Fatalf("read back:\n got %+v\nwant %+v", got, st)
		}
		c := leadstatetest.Client(t, s)
		if ttl := c.PTTL(ctx, leadstatetest.Key(lead, "s")).Val(); ttl != -1 {
			t.Errorf("a lead's state expires (pttl %v)", ttl)
		}
		if ttl := c.PTTL(ctx, leadstatetest.Key(lead, "d:7")).Val(); ttl <= 0 || ttl > 24*time.Hour {
			t.Errorf("dedup bucket pttl %v, want its expiry", ttl)
		}

		// A writer that read before the first commit loses.
		st2 := sampleState(lead)
		st2.Models[0].V = 1
		if r := commit(t, s, leadstate.Commit{Subject: lead, State: st2}); r.Status != leadstate.Conflict || r.Current.Version != currentVersion(t, s, lead) || !reflect.DeepEqual(r.Current.State, st) {
			t.Fatalf("stale commit: %+v", r)
		}
		// Ids applied already: nothing is stored, the duplicates are named.
		if r := commit(t, s, leadstate.Commit{Subject: lead, Expect: currentVersion(t, s, lead), State: st2,
			Seen: []leadstate.Seen{{FP: scoring.Fingerprint("evt-3"), Bucket: 7, ExpireAt: day}, {FP: scoring.Fingerprint("evt-2"), Bucket: 8, ExpireAt: day}}}); r.Status != leadstate.Duplicate || !reflect.DeepEqual(r.Dups, []uint64{scoring.Fingerprint("evt-2")}) {
			t.Fatalf("duplicate commit: %+v", r)
		}
		if got := leadstatetest.State(t, s, lead); !reflect.DeepEqual(got, st) {
			t.Fatal("a refused commit changed the state")
		}
		if n := c.SCard(ctx, leadstatetest.Key(lead, "d:7")).Val(); n != 1 {
			t.Fatalf("a refused commit recorded ids: %d in the bucket", n)
		}
		// Over the current version it goes through; the outbox still holds
		// the unacknowledged record, then acknowledging clears it.
		r = commit(t, s, leadstate.Commit{Subject: lead, Expect: currentVersion(t, s, lead), State: st2, Seen: []leadstate.Seen{{FP: scoring.Fingerprint("evt-3"), Bucket: 7, ExpireAt: day}}})
		if pending, err := s.Outbox(ctx, []string{lead.ID}); r.Status != leadstate.Stored || err != nil || len(pending) != 1 {
			t.Fatalf("commit over the current version: %+v, outbox %v %v", r, pending, err)
		}
		if err := s.AckOutbox(ctx, []event.MQL{mql}); err != nil {
			t.Fatal(err)
		}
		if n := leadstatetest.OutboxLen(t, s, lead.ID); n != 0 {
			t.Fatalf("outbox holds %d after the acknowledgement", n)
		}

		// A visitor's state expires.
		anon := scoring.Anon(newID("anon"))
		exp := time.Now().Add(time.Hour).UnixMilli()
		commit(t, s, leadstate.Commit{Subject: anon, State: &scoring.State{Subject: anon}, ExpireAt: exp})
		if ttl := c.PTTL(ctx, leadstatetest.Key(anon, "s")).Val(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("visitor state pttl %v", ttl)
		}
		if err := s.Touch(ctx, []scoring.Subject{anon}, time.Now().Add(2*time.Hour).UnixMilli()); err != nil {
			t.Fatal(err)
		}
		if ttl := c.PTTL(ctx, leadstatetest.Key(anon, "s")).Val(); ttl <= time.Hour {
			t.Errorf("touched visitor state pttl %v", ttl)
		}
	})
}

// Creating states (SET NX) and changing them (the script) go in one
// pipeline: each outcome is its own, a create that finds a state loses with
// the current one, and a visitor created with an expiry keeps it.
func TestCommitCreatesAndChanges(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		old, taken, fresh := scoring.Lead(newID("lead")), scoring.Lead(newID("lead")), scoring.Anon(newID("anon"))
		commit(t, s, leadstate.Commit{Subject: old, State: sampleState(old)})
		commit(t, s, leadstate.Commit{Subject: taken, State: sampleState(taken)})
		changed := sampleState(old)
		changed.Models[0].V = 42
		exp := time.Now().Add(time.Hour).UnixMilli()
		res, err := s.Commit(ctx, []leadstate.Commit{
			{Subject: old, Expect: currentVersion(t, s, old), State: changed},
			{Subject: taken, State: &scoring.State{Subject: taken}},
			{Subject: fresh, State: &scoring.State{Subject: fresh, Into: "somebody"}, ExpireAt: exp},
		})
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Status != leadstate.Stored || res[2].Status != leadstate.Stored || res[0].Version == res[2].Version {
			t.Fatalf("change and create: %+v, %+v", res[0], res[2])
		}
		if r := res[1]; r.Status != leadstate.Conflict || r.Current.Version != currentVersion(t, s, taken) || !reflect.DeepEqual(r.Current.State, sampleState(taken)) {
			t.Fatalf("create over a stored state: %+v", r)
		}
		if got := leadstatetest.State(t, s, old); got.Models[0].V != 42 {
			t.Fatalf("changed state reads back %+v", got.Models[0])
		}
		if v := currentVersion(t, s, fresh); v != res[2].Version {
			t.Fatalf("created state's version %x, commit said %x", v, res[2].Version)
		}
		c := leadstatetest.Client(t, s)
		if ttl := c.PTTL(ctx, leadstatetest.Key(fresh, "s")).Val(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("created visitor state pttl %v", ttl)
		}
	})
}

func currentVersion(t *testing.T, s *leadstate.Store, subj scoring.Subject) string {
	t.Helper()
	recs, err := s.Read(context.Background(), []scoring.Subject{subj})
	if err != nil {
		t.Fatal(err)
	}
	return recs[subj].Version
}

// Any string is a valid id: ids are hashed inside the hash tag, leads and
// visitors cannot meet, and no id (an e-mail address) shows in a key name.
func TestKeysAreSafe(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		suffix := newID("")
		ids := []string{"}" + suffix, "{" + suffix + "}", "a:" + suffix, suffix, "jane.doe+" + suffix + "@example.com", "", "\x00" + suffix, strings.Repeat("x", 5000)}
		var subjects []scoring.Subject
		for _, id := range ids {
			subjects = append(subjects, scoring.Lead(id), scoring.Anon(id))
		}
		day := time.Now().Add(time.Hour).UnixMilli()
		for _, subj := range subjects {
			st := sampleState(subj)
			r := commit(t, s, leadstate.Commit{Subject: subj, Expect: currentVersion(t, s, subj), State: st,
				Seen: []leadstate.Seen{{FP: scoring.Fingerprint("e" + suffix), Bucket: 1, ExpireAt: day}, {FP: scoring.Fingerprint("f" + suffix), Bucket: 2, ExpireAt: day}},
				MQLs: []event.MQL{{MQLID: "m", LeadID: subj.ID, Model: "default"}}})
			if r.Status != leadstate.Stored {
				t.Fatalf("%v: %+v", subj, r)
			}
			if err := s.AckOutbox(ctx, []event.MQL{{MQLID: "m", LeadID: subj.ID}}); err != nil {
				t.Fatal(err)
			}
		}
		tag := regexp.MustCompile(`^ls2:\{[la]:[0-9a-f]{32}\}:(s|o|d:-?[0-9]+)$`)
		seen := map[string]scoring.Subject{}
		for _, subj := range subjects {
			// Each subject reads back its own state: no two share keys.
			if got := leadstatetest.State(t, s, subj); got == nil || got.Subject != subj {
				t.Fatalf("%v reads back %+v", subj, got)
			}
			for _, k := range []string{leadstatetest.Key(subj, "s"), leadstatetest.Key(subj, "d:1")} {
				if !tag.MatchString(k) || strings.Contains(k, "@") {
					t.Errorf("key %q of %v", k, subj)
				}
				if other, ok := seen[k]; ok {
					t.Errorf("%v and %v share key %s", subj, other, k)
				}
				seen[k] = subj
			}
		}
	})
}

// ReadLead names the lead a merged lead now scores on.
func TestReadLeadFollowsMerges(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		a, b, c := scoring.Lead(newID("a")), scoring.Lead(newID("b")), scoring.Lead(newID("c"))
		commit(t, s, leadstate.Commit{Subject: a, State: &scoring.State{Subject: a, Into: b.ID}})
		commit(t, s, leadstate.Commit{Subject: b, State: &scoring.State{Subject: b, Into: c.ID}})
		commit(t, s, leadstate.Commit{Subject: c, State: sampleState(c)})
		rec, err := s.ReadLead(context.Background(), a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if rec.State == nil || rec.State.Into != b.ID || rec.Survivor == nil || rec.Survivor.ID != c.ID {
			t.Fatalf("ReadLead(a) = %+v", rec)
		}
		if rec, err := s.ReadLead(context.Background(), newID("unknown")); err != nil || rec.State != nil || rec.Survivor != nil {
			t.Fatalf("ReadLead(unknown) = %+v, %v", rec, err)
		}
	})
}

// Restore writes a replayed state and the ids still inside their buckets;
// DeleteFirstLayout removes the keys of the first layout and nothing else.
func TestRestoreAndFirstLayout(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, s *leadstate.Store) {
		ctx := context.Background()
		c := leadstatetest.Client(t, s)
		lead := newID("lead")
		old := []string{"ls:{" + lead + "}:seen", "ls:{" + lead + "}:m:default", "ls:{a:" + lead + "}:lead"}
		for _, k := range old {
			if err := c.Set(ctx, k, "x", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		core := scoring.NewCore(scoring.Default(), time.Hour)
		now := time.Now().UnixMilli()
		st := sampleState(scoring.Lead(lead))
		recentB, ancientB := core.Bucket(now-time.Minute.Milliseconds()), core.Bucket(now-30*24*time.Hour.Milliseconds())
		spilled := []scoring.Seen{{FP: scoring.Fingerprint("recent"), Bucket: recentB}, {FP: scoring.Fingerprint("ancient"), Bucket: ancientB}}
		if err := s.Restore(ctx, st, spilled, core, now, 0); err != nil {
			t.Fatal(err)
		}
		if got := leadstatetest.State(t, s, scoring.Lead(lead)); !reflect.DeepEqual(got, st) {
			t.Fatalf("restored %+v", got)
		}
		recent := leadstatetest.Key(scoring.Lead(lead), fmt.Sprintf("d:%d", recentB))
		ancient := leadstatetest.Key(scoring.Lead(lead), fmt.Sprintf("d:%d", ancientB))
		if c.SCard(ctx, recent).Val() != 1 || c.Exists(ctx, ancient).Val() != 0 {
			t.Fatal("restored dedup: recent id missing or expired bucket written")
		}
		n, err := s.DeleteFirstLayout(ctx)
		if err != nil || n < len(old) {
			t.Fatalf("DeleteFirstLayout = %d, %v", n, err)
		}
		for _, k := range old {
			if c.Exists(ctx, k).Val() != 0 {
				t.Errorf("%s left", k)
			}
		}
		if leadstatetest.State(t, s, scoring.Lead(lead)) == nil {
			t.Fatal("DeleteFirstLayout deleted a new-layout state")
		}
	})
}
