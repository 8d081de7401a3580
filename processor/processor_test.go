package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadapi"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
	"github.com/prometheus/client_golang/prometheus"
)

func records(t *testing.T, evs ...*event.Event) []stream.Record {
	t.Helper()
	recs := make([]stream.Record, len(evs))
	for i, e := range evs {
		b, err := event.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = stream.Record{Key: []byte(e.Key()), Value: b}
	}
	return recs
}

// A visitor's journey through Kafka and the processor: anonymous page views,
// an identify that links and merges the visitor into a lead (with traits for
// fit), a form submit that makes the lead an MQL. The score is what the rules
// say, exactly one MQL is published, redelivery changes nothing, and records
// that are not events go to the dead-letter topic without stopping anything.
func TestProcessorJourney(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		rules := scoring.Default()
		m := &rules.Models[0]
		r := startProcessor(t, store, rules)
		anon, lead := newID("anon"), newID("lead")+"@example.com"
		id := func(s string) string { return anon + "-" + s }
		at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

		identify := touch(id("id1"), event.Identify, anon, lead, at(3))
		identify.Traits = json.RawMessage(`{"title":"VP Marketing","employees":500}`)
		formSubmit := touch(id("fs1"), event.FormSubmit, anon, lead, at(4))
		formSubmit.Track, formSubmit.Properties = "Form Submitted", json.RawMessage(`{"form":"whitepaper"}`)
		journey := []*event.Event{
			pageView(id("pv1"), anon, "", "/", at(0)),
			pageView(id("pv2"), anon, "", "/pricing", at(1)),
			pageView(id("pv3"), anon, "", "/pricing/enterprise", at(2)),
			identify,   // merge 45 behaviour points; fit 20 + 10
			formSubmit, // +30: ≈105 >= 100
		}
		// Dead letters in the visitor's partition, between its events.
		dead := []string{"\x00not json at all", `{"type":"page_view","anonymous_id":"x"}`}
		recs := records(t, journey...)
		recs = append(recs[:3:3], stream.Record{Key: []byte(anon), Value: []byte(dead[0])}, stream.Record{Key: []byte(anon), Value: []byte(dead[1])})
		recs = append(recs, records(t, journey[3:]...)...)
		r.produce(t, stream.TopicEvents, recs...)

		state := func() string {
			return fmt.Sprintf("scored=%v duplicate=%v dead_letter=%v no_match=%v mql_published=%v outbox=%d",
				r.events(t, "scored"), r.events(t, "duplicate"), r.events(t, "dead_letter"), r.events(t, "no_match"),
				r.metric(t, "leadstream_processor_mql_published_total", ""), outboxLen(t, store, lead))
		}
		wait := func(what string, scored, duplicate, deadLetter float64) {
			t.Helper()
			eventually(t, what, 15*time.Second, func() (bool, string) {
				return r.events(t, "scored") == scored && r.events(t, "duplicate") == duplicate && r.events(t, "dead_letter") == deadLetter &&
					r.metric(t, "leadstream_processor_mql_published_total", "") == 1 && outboxLen(t, store, lead) == 0, state()
			})
		}
		wait("journey processed", 5, 0, 2)

		if l := leadstatetest.LinkedLead(t, store, anon); l != lead {
			t.Fatalf("LinkedLead(%s) = %q", anon, l)
		}
		if n := r.metric(t, "leadstream_processor_merges_total", ""); n != 1 {
			t.Errorf("merges = %v, want 1", n)
		}
		if tr := leadstatetest.Traits(t, store, lead); tr["title"] != "VP Marketing" {
			t.Errorf("Traits(%s) = %v", lead, tr)
		}
		if av, _ := modelState(t, store, "a:"+anon, m.Name); av != "" {
			t.Errorf("anonymous state left after the merge: v=%s", av)
		}

		// Score: behaviour as scoring computes it, decayed to the read time, plus fit.
		fitReasons := []event.Reason{{Rule: "senior-title", Points: 20}, {Rule: "big-company", Points: 10}}
		checkScore := func(evs []*event.Event) (v float64, tm int64) {
			t.Helper()
			v, tm, _ = expect(m, evs...)
			now := time.UnixMilli(tm).Add(48 * time.Hour)
			lv, err := leadapi.Read(ctx, store, lead, rules.Models, now)
			if err != nil {
				t.Fatal(err)
			}
			mv := lv.Models[m.Name]
			want := scoring.ValueAt(v, tm, now.UnixMilli(), m.HalfLife) + 30
			if !near(mv.Score, want) || mv.Fit != 30 || !mv.MQL || mv.MQLAt == nil || !mv.MQLAt.Equal(at(4)) {
				t.Fatalf("lead view at %v: %+v, want score %v (fit 30), MQL at %v", now, mv, want, at(4))
			}
			sv, st := modelState(t, store, lead, m.Name)
			gotV, _ := strconv.ParseFloat(sv, 64)
			if !near(gotV, v) || st != strconv.FormatInt(tm, 10) {
				t.Fatalf("stored (v, t) = (%s, %s), want (%v, %d)", sv, st, v, tm)
			}
			return v, tm
		}
		v, tm := checkScore(journey)

		// Exactly one MQL, the one the form submit triggered.
		_, _, ruleVals := expect(m, journey...)
		want := event.MQL{MQLID: event.MQLID(lead, m.Name, formSubmit.ID), LeadID: lead, Model: m.Name, Score: v + 30, Threshold: 100,
			CrossedAt: time.UnixMilli(tm).UTC(), TriggerEventID: formSubmit.ID, Reasons: reasons(ruleVals, fitReasons)}
		checkMQL := func() {
			t.Helper()
			mqls, unique := r.mqls(t)
			if len(mqls) != 1 || unique != 1 {
				t.Fatalf("%d MQL records (%d distinct): %+v, want exactly one", len(mqls), unique, mqls)
			}
			got := mqls[0]
			if got.MQLID != want.MQLID || got.LeadID != want.LeadID || got.Model != want.Model || !near(got.Score, want.Score) ||
				got.Threshold != want.Threshold || !got.CrossedAt.Equal(want.CrossedAt) || got.TriggerEventID != want.TriggerEventID ||
				!sameReasons(got.Reasons, want.Reasons) {
				t.Fatalf("MQL record\n got %+v\nwant %+v", got, want)
			}
		}
		checkMQL()

		// The records that are not events, with the reason.
		dls := r.readTopic(t, stream.TopicDeadLetter)
		if len(dls) != len(dead) {
			t.Fatalf("%d dead letters, want %d", len(dls), len(dead))
		}
		for i, dl := range dls {
			var rec struct {
				SourceTopic string `json:"source_topic"`
				Partition   int    `json:"partition"`
				Offset      int64  `json:"offset"`
				Reason      string `json:"reason"`
				Value       string `json:"value"`
			}
			if err := json.Unmarshal(dl.Value, &rec); err != nil {
				t.Fatalf("dead letter %s: %v", dl.Value, err)
			}
			if rec.SourceTopic != r.kcfg.Topic(stream.TopicEvents) || rec.Value != dead[i] || rec.Reason == "" || rec.Offset != int64(3+i) ||
				string(dl.Key) != anon {
				t.Errorf("dead letter %d: %+v (key %q), want value %q from %s offset %d with a reason", i, rec, dl.Key, dead[i], r.kcfg.Topic(stream.TopicEvents), 3+i)
			}
		}

		// Redelivery of the whole journey: all duplicates, nothing changes.
		sv, st := modelState(t, store, lead, m.Name)
		r.produceEvents(t, journey...)
		wait("redelivery processed", 5, 5, 2)
		if sv2, st2 := modelState(t, store, lead, m.Name); sv2 != sv || st2 != st {
			t.Fatalf("redelivery changed the state: (%s, %s) -> (%s, %s)", sv, st, sv2, st2)
		}
		checkScore(journey)
		checkMQL()
		if n := r.metric(t, "leadstream_processor_merges_total", ""); n != 1 {
			t.Errorf("merges = %v after redelivery, want 1", n)
		}

		// The processor keeps going: the linked visitor's page view and the
		// lead's click score on the lead; more garbage is dead-lettered.
		more := []*event.Event{pageView(id("pv4"), anon, "", "/docs", at(10)), touch(id("ec1"), event.EmailClick, "", lead, at(11))}
		r.produce(t, stream.TopicEvents, append(records(t, more...), stream.Record{Key: []byte(lead), Value: []byte("{")})...)
		wait("more events processed", 7, 5, 3)
		checkScore(append(journey, more...))
		checkMQL()
	})
}

// The outbox survives a processor that died between applying a crossing and
// publishing it: the redelivered trigger publishes the pending MQL and clears it.
func TestProcessorPublishesPendingOutbox(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		rules, err := scoring.Parse("test_rules.yaml", []byte(`
models:
  - name: trial
    half_life: 168h
    threshold: 40
    rules:
      - {name: page-view, event: page_view, points: 5}
      - {name: pricing-page, event: page_view, url: "/pricing*", points: 15}
      - {name: form-submit, event: form_submit, points: 30}
`))
		if err != nil {
			t.Fatal(err)
		}
		lead := newID("lead")
		form := touch(lead+"-fs1", event.FormSubmit, "", lead, t0)
		trigger := pageView(lead+"-pv1", "", lead, "/pricing", t0.Add(time.Hour))
		// A processor scores both and dies before publishing the crossing.
		sc := NewScorer(scoring.NewCore(rules, testWindow), store, scoring.DefaultAnonymousTTL)
		res, err := sc.Score(ctx, []*event.Event{form, trigger}, map[scoring.Subject]leadstate.Record{})
		if err != nil || res.Outcomes[0] != scoring.Scored || res.Outcomes[1] != scoring.Scored || len(res.Outbox) != 1 {
			t.Fatalf("Score = %+v, %v; want both scored and a crossing", res, err)
		}
		pending := res.Outbox[0]
		if pending.MQLID != event.MQLID(lead, "trial", trigger.ID) {
			t.Fatalf("pending MQL %+v", pending)
		}
		// The processor "crashed" here: nothing was published.
		sv, st := modelState(t, store, lead, "trial")

		r := startProcessor(t, store, rules)
		r.produceEvents(t, trigger)
		eventually(t, "pending MQL published", 15*time.Second, func() (bool, string) {
			n := outboxLen(t, store, lead)
			return n == 0 && r.events(t, "duplicate") == 1, fmt.Sprintf("outbox=%d duplicate=%v", n, r.events(t, "duplicate"))
		})
		mqls, unique := r.mqls(t)
		if len(mqls) != 1 || unique != 1 {
			t.Fatalf("%d MQL records (%d distinct), want 1", len(mqls), unique)
		}
		got := mqls[0]
		if got.MQLID != pending.MQLID || got.LeadID != lead || got.Model != "trial" || got.Score != pending.Score || got.Threshold != 40 ||
			!got.CrossedAt.Equal(trigger.EventTime) || got.TriggerEventID != trigger.ID || !sameReasons(got.Reasons, pending.Reasons) {
			t.Fatalf("published %+v, pending was %+v", got, pending)
		}
		v, tm, _ := expect(&rules.Models[0], form, trigger)
		if !near(got.Score, v) || tm != trigger.EventTime.UnixMilli() {
			t.Fatalf("published score %v, want %v", got.Score, v)
		}
		if sv2, st2 := modelState(t, store, lead, "trial"); sv2 != sv || st2 != st {
			t.Fatalf("redelivered trigger changed the state: (%s, %s) -> (%s, %s)", sv, st, sv2, st2)
		}
		if n := r.events(t, "scored"); n != 0 {
			t.Fatalf("scored = %v, want 0", n)
		}
	})
}

// A crossing made by a merge (an identify folding a visitor's points into its
// lead) survives a processor that died between storing it and publishing it:
// the redelivered identify publishes the pending MQL. The identify scores no
// points itself, so without its id recorded the redelivery planned it as
// "no match" and never looked at the lead's outbox (CI's kill test lost one
// crossing this way). The same for an alias merging a lead into another.
func TestProcessorPublishesPendingMergeOutbox(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		rules, err := scoring.Parse("test_rules.yaml", []byte(`
models:
  - name: trial
    half_life: 168h
    threshold: 40
    rules:
      - {name: pricing-page, event: page_view, url: "/pricing*", points: 15}
      - {name: form-submit, event: form_submit, points: 30}
`))
		if err != nil {
			t.Fatal(err)
		}
		for _, kind := range []string{"identify", "alias"} {
			t.Run(kind, func(t *testing.T) {
				lead, anon := newID("lead"), newID("anon")
				form := touch(lead+"-fs1", event.FormSubmit, "", lead, t0)
				var earlier, trigger *event.Event
				if kind == "identify" {
					earlier = pageView(anon+"-pv1", anon, "", "/pricing", t0.Add(time.Minute))
					trigger = touch(anon+"-id1", event.Identify, anon, lead, t0.Add(time.Hour))
				} else {
					old := newID("lead")
					earlier = pageView(old+"-pv1", "", old, "/pricing", t0.Add(time.Minute))
					trigger = touch(old+"-al1", event.Alias, "", lead, t0.Add(time.Hour))
					trigger.PreviousID = old
				}
				sc := NewScorer(scoring.NewCore(rules, testWindow), store, scoring.DefaultAnonymousTTL)
				res, err := sc.Score(ctx, []*event.Event{form, earlier}, map[scoring.Subject]leadstate.Record{})
				if err != nil || len(res.Outbox) != 0 {
					t.Fatalf("Score = %+v, %v; want no crossing yet", res, err)
				}
				// The merge crosses; the processor "crashes" before publishing.
				res, err = NewScorer(scoring.NewCore(rules, testWindow), store, scoring.DefaultAnonymousTTL).
					Score(ctx, []*event.Event{trigger}, map[scoring.Subject]leadstate.Record{})
				if err != nil || len(res.Outbox) != 1 {
					t.Fatalf("Score(%s) = %+v, %v; want a crossing", kind, res, err)
				}
				pending := res.Outbox[0]
				if n := outboxLen(t, store, lead); n != 1 {
					t.Fatalf("outbox holds %d, want 1", n)
				}

				r := startProcessor(t, store, rules)
				r.produceEvents(t, trigger)
				eventually(t, "pending merge MQL published", 15*time.Second, func() (bool, string) {
					n := outboxLen(t, store, lead)
					return n == 0, fmt.Sprintf("outbox=%d duplicate=%v no_match=%v", n, r.events(t, "duplicate"), r.events(t, "no_match"))
				})
				mqls, unique := r.mqls(t)
				if len(mqls) != 1 || unique != 1 || mqls[0].MQLID != pending.MQLID || mqls[0].LeadID != lead {
					t.Fatalf("published %+v, want the pending %+v once", mqls, pending)
				}
				if n := r.events(t, "scored"); n != 0 {
					t.Fatalf("scored = %v, want 0", n)
				}
			})
		}
	})
}

// Many visitors interleaved in shared batches, each event delivered twice: the
// batch pipeline (bulk link reads, merges flushing earlier updates, dedup of
// copies in one batch) ends with every lead scored as the rules say, and
// exactly one MQL for every lead that reached the threshold.
func TestProcessorManyVisitors(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		rules := scoring.Default()
		m := &rules.Models[0]
		r := startProcessor(t, store, rules)
		const visitors = 30
		vs, all := journeys(visitors)
		// Interleave visitors, then deliver everything a second time.
		recs := records(t, all...)
		r.produce(t, stream.TopicEvents, append(recs, recs...)...)
		n := float64(len(all))
		eventually(t, "all events processed and MQLs published", 15*time.Second, func() (bool, string) {
			s, d, pub := r.events(t, "scored"), r.events(t, "duplicate"), r.metric(t, "leadstream_processor_mql_published_total", "")
			return s == n && d == n && pub >= visitors/2, fmt.Sprintf("scored=%v duplicate=%v want %v each; mql published=%v of %d", s, d, n, pub, visitors/2)
		})
		mqls, unique := r.mqls(t)
		byLead := map[string]event.MQL{}
		for _, rec := range mqls {
			byLead[rec.LeadID] = rec
		}
		if len(mqls) != visitors/2 || unique != visitors/2 || len(byLead) != visitors/2 {
			t.Fatalf("%d MQL records, %d distinct, for %d leads; want %d", len(mqls), unique, len(byLead), visitors/2)
		}
		for i, v := range vs {
			bv, tm, _ := expect(m, v.evs...)
			lv, err := leadapi.Read(ctx, store, v.lead, rules.Models, time.UnixMilli(tm))
			if err != nil {
				t.Fatal(err)
			}
			mv := lv.Models[m.Name]
			if !near(mv.Score, bv+20) || mv.Fit != 20 || mv.MQL != (i%2 == 0) {
				t.Errorf("visitor %d: %+v, want score %v (fit 20), MQL %v", i, mv, bv+20, i%2 == 0)
			}
			if l := leadstatetest.LinkedLead(t, store, v.anon); l != v.lead {
				t.Errorf("visitor %d: LinkedLead = %q", i, l)
			}
			rec, ok := byLead[v.lead]
			if ok != (i%2 == 0) {
				t.Errorf("visitor %d: MQL published %v, want %v", i, ok, i%2 == 0)
			}
			if ok && (rec.MQLID != event.MQLID(v.lead, m.Name, rec.TriggerEventID) || !strings.HasPrefix(rec.TriggerEventID, v.anon+"-") ||
				rec.Score < 100 || outboxLen(t, store, v.lead) != 0) {
				t.Errorf("visitor %d: MQL %+v", i, rec)
			}
		}
	})
}

// An identify scores its fit as of its own event time: a lead whose activity
// faded does not become an MQL by identifying months later, one that
// identifies right away does, crossing at the identify's time.
func TestProcessorIdentifyFitTime(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		rules := scoring.Default()
		m := &rules.Models[0]
		r := startProcessor(t, store, rules)
		type lead struct {
			id       string
			identify *event.Event
			wantMQL  bool
		}
		var leads []lead
		var evs []*event.Event
		f := func(identifyAfter time.Duration, wantMQL bool) {
			l := lead{id: newID("lead"), wantMQL: wantMQL}
			l.identify = touch(l.id+"-id1", event.Identify, "", l.id, t0.Add(identifyAfter))
			l.identify.Traits = json.RawMessage(`{"title":"Chief Marketing Officer","employees":"250"}`) // fit 30
			evs = append(evs, touch(l.id+"-fs1", event.FormSubmit, "", l.id, t0), touch(l.id+"-dw1", event.DealWon, "", l.id, t0), l.identify)
			leads = append(leads, l)
		}
		f(2*m.HalfLife, false) // 80 decayed to 20, + 30 = 50
		f(time.Minute, true)   // ≈ 80 + 30
		f(-time.Minute, true)  // identify first: 80 + 30 at t0
		f(m.HalfLife/10, true) // 80·2^-0.1 + 30 ≈ 104.6
		f(m.HalfLife/2, false) // 80·2^-0.5 + 30 ≈ 86.6
		r.produceEvents(t, evs...)
		wantMQLs := 0
		for _, l := range leads {
			if l.wantMQL {
				wantMQLs++
			}
		}
		// An event counts as scored once applied; its MQL record is
		// published right after, so wait for both.
		eventually(t, "events processed and MQLs published", 15*time.Second, func() (bool, string) {
			n, pub := r.events(t, "scored"), r.metric(t, "leadstream_processor_mql_published_total", "")
			return n == float64(len(evs)) && pub >= float64(wantMQLs), fmt.Sprintf("scored=%v of %d, mql published=%v of %d", n, len(evs), pub, wantMQLs)
		})
		mqls, _ := r.mqls(t)
		byLead := map[string]event.MQL{}
		for _, rec := range mqls {
			byLead[rec.LeadID] = rec
		}
		for i, l := range leads {
			at := l.identify.EventTime
			if at.Before(t0) {
				at = t0
			}
			v, err := leadapi.Read(ctx, store, l.id, rules.Models, at)
			if err != nil {
				t.Fatal(err)
			}
			mv := v.Models[m.Name]
			want := 80*scoring.DecayFactor(at.Sub(t0).Milliseconds(), m.HalfLife) + 30
			rec, published := byLead[l.id]
			if mv.MQL != l.wantMQL || published != l.wantMQL || !near(mv.Score, want) {
				t.Errorf("lead %d: score %v MQL %v published %v; want score %v, MQL %v", i, mv.Score, mv.MQL, published, want, l.wantMQL)
			}
			if published && (!rec.CrossedAt.Equal(at) || !near(rec.Score, want) || rec.TriggerEventID != l.identify.ID) {
				t.Errorf("lead %d: MQL %+v, want crossed at %v with score %v", i, rec, at, want)
			}
		}
		if len(mqls) != len(byLead) {
			t.Errorf("%d MQL records for %d leads", len(mqls), len(byLead))
		}
	})
}

// One batch that merges the same visitor into two leads and identifies a lead
// twice: the visitor's history is counted once (on the lead it met first;
// the second merge finds its state gone), events after a merge score on the
// lead it was merged into, traits accumulate over the identifies in batch
// order, and each identify's fit is that of the traits as of it. Another
// visitor, merged once and identified twice, is redelivered: nothing changes.
// (A visitor linked to two leads is not redelivered: its events before the
// first merge would then resolve to the second lead, in this version as in
// the one before it.)
func TestProcessorBatchMergesAndIdentifies(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		rules := scoring.Default()
		m := &rules.Models[0]
		r := startProcessor(t, store, rules)
		a, b := newID("anon"), newID("anon")
		l1, l2, l3 := newID("lead"), newID("lead"), newID("lead")
		at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
		identify := func(anon, id, lead, traits string, min int) *event.Event {
			e := touch(anon+"-"+id, event.Identify, anon, lead, at(min))
			e.Traits = json.RawMessage(traits)
			return e
		}
		pv1 := pageView(a+"-pv1", a, "", "/pricing", at(0))
		id1 := identify(a, "id1", l1, `{"title":"CTO"}`, 1) // merges a into l1
		pv2 := pageView(a+"-pv2", a, "", "/", at(2))
		id2 := identify(a, "id2", l2, `{"title":"CTO"}`, 3) // merges a again, into l2: nothing left to move
		id3 := identify(a, "id3", l2, `{"employees":500}`, 4)
		pv3 := pageView(a+"-pv3", a, "", "/docs", at(5))
		evsA := []*event.Event{pv1, id1, pv2, id2, id3, pv3}
		pvB1 := pageView(b+"-pv1", b, "", "/pricing", at(0))
		idB1 := identify(b, "id1", l3, `{"title":"VP Sales","employees":50}`, 1) // merges b into l3
		pvB2 := pageView(b+"-pv2", b, "", "/", at(2))
		idB2 := identify(b, "id2", l3, `{"employees":5000}`, 3)
		evsB := []*event.Event{pvB1, idB1, pvB2, idB2}
		// Each visitor's events are keyed by it: one partition, in this order.
		recsB := records(t, evsB...)
		n := float64(len(evsA) + len(evsB))

		type want struct {
			lead   string
			evs    []*event.Event
			fit    float64
			traits string
		}
		wants := []want{
			{l1, []*event.Event{pv1, id1, pv2}, 20, `map[title:CTO]`},
			{l2, []*event.Event{id2, id3, pv3}, 30, `map[employees:500 title:CTO]`},
			{l3, evsB, 30, `map[employees:5000 title:VP Sales]`},
		}
		check := func(what string, scored, duplicate float64) {
			t.Helper()
			eventually(t, what, 15*time.Second, func() (bool, string) {
				s, d := r.events(t, "scored"), r.events(t, "duplicate")
				return s == scored && d == duplicate, fmt.Sprintf("scored=%v duplicate=%v", s, d)
			})
			for _, w := range wants {
				v, tm, _ := expect(m, w.evs...)
				now := at(60)
				lv, err := leadapi.Read(ctx, store, w.lead, rules.Models, now)
				if err != nil {
					t.Fatal(err)
				}
				score := scoring.ValueAt(v, tm, now.UnixMilli(), m.HalfLife) + w.fit
				if mv := lv.Models[m.Name]; !near(mv.Score, score) || mv.Fit != w.fit {
					t.Errorf("%s: lead %s: %+v, want score %v (fit %v)", what, w.lead, mv, score, w.fit)
				}
				if tr := leadstatetest.Traits(t, store, w.lead); fmt.Sprint(tr) != w.traits {
					t.Errorf("%s: traits of %s = %v; want %s", what, w.lead, tr, w.traits)
				}
			}
			for anon, lead := range map[string]string{a: l2, b: l3} {
				if l := leadstatetest.LinkedLead(t, store, anon); l != lead {
					t.Errorf("%s: LinkedLead(%s) = %q; want %s", what, anon, l, lead)
				}
				if av, _ := modelState(t, store, "a:"+anon, m.Name); av != "" {
					t.Errorf("%s: state of %s left after the merge: v=%s", what, anon, av)
				}
			}
			// a into l1 and b into l3 move histories; a re-linked to l2
			// has nothing left to move, and is not counted.
			if n := r.metric(t, "leadstream_processor_merges_total", ""); n != 2 {
				t.Errorf("%s: merges = %v, want 2", what, n)
			}
		}
		r.produce(t, stream.TopicEvents, append(records(t, evsA...), recsB...)...)
		check("batch processed", n, 0)
		sv, st := modelState(t, store, l3, m.Name)
		r.produce(t, stream.TopicEvents, recsB...)
		check("redelivery processed", n, float64(len(evsB)))
		if sv2, st2 := modelState(t, store, l3, m.Name); sv2 != sv || st2 != st {
			t.Fatalf("redelivery changed the state: (%s, %s) -> (%s, %s)", sv, st, sv2, st2)
		}
	})
}

// The links of a batch are read while the previous batch is handled
// (prepare): a visitor that batch merges is missing from them, and handle
// adds it, so the visitor's next page view scores on the lead. After a batch
// that took several attempts the links are read again instead.
func TestProcessorLinksReadAhead(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		rules := scoring.Default()
		m := &rules.Models[0]
		p, err := New(Config{Kafka: stream.Config{Brokers: []string{"127.0.0.1:1"}, Partitions: 1, ReplicationFactor: -1}, Group: "scoring", BatchSize: 100, DedupWindow: testWindow}, rules, store, quiet, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		msgs := func(evs ...*event.Event) []stream.Message {
			var out []stream.Message
			for i, r := range records(t, evs...) {
				out = append(out, stream.Message{Topic: "events", Offset: int64(i), Key: r.Key, Value: r.Value})
			}
			return out
		}
		for _, retried := range []bool{false, true} {
			anon, lead := newID("anon"), newID("lead")
			pv1 := pageView(anon+"-pv1", anon, "", "/pricing", t0)
			id := touch(anon+"-id1", event.Identify, anon, lead, t0.Add(time.Minute))
			pv2 := pageView(anon+"-pv2", anon, "", "/", t0.Add(2*time.Minute))
			first, second := msgs(pv1, id), msgs(pv2)
			ahead := p.prepare(ctx, second) // before the first batch linked the visitor
			if err := p.handle(ctx, first, p.prepare(ctx, first)); err != nil {
				t.Fatal(err)
			}
			if retried {
				// As if the attempt above had failed after linking (say, the
				// dead-letter topic was down): the retry finds the visitor
				// linked and merges nothing.
				if err := p.handle(ctx, first, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.handle(ctx, second, ahead); err != nil {
				t.Fatal(err)
			}
			v, tm, _ := expect(m, pv1, id, pv2)
			sv, st := modelState(t, store, lead, m.Name)
			if got, _ := strconv.ParseFloat(sv, 64); !near(got, v) || st != strconv.FormatInt(tm, 10) {
				t.Errorf("retried=%v: lead (v, t) = (%s, %s), want (%v, %d)", retried, sv, st, v, tm)
			}
			if av, _ := modelState(t, store, "a:"+anon, m.Name); av != "" {
				t.Errorf("retried=%v: the page view after the merge scored on the visitor: v=%s", retried, av)
			}
		}
	})
}

// TestProcessorScoreDelay checks the accept-to-score histogram: one sample per
// handled event with a received_at (bots excepted), measured from received_at.
func TestProcessorScoreDelay(t *testing.T) {
	store := leadstatetest.Open(t, testsvc.Redis(t))
	r := startProcessor(t, store, scoring.Default())
	lead := newID("lead")
	now := time.Now().UTC().Truncate(time.Millisecond)
	late := pageView(lead+"-pv1", "", lead, "/pricing", now)
	late.ReceivedAt = now.Add(-90 * time.Second) // accepted 90 s ago, scored now
	unmatched := touch(lead+"-c1", event.Custom, "", lead, now)
	unmatched.Track = "Nothing Scores This"
	bot := pageView(lead+"-bot", "", lead, "/", now)
	bot.Bot, bot.BotReason = true, "user_agent:headlesschrome"
	r.produceEvents(t, late, unmatched, bot)

	var count uint64
	var sum float64
	eventually(t, "score delay observed", 15*time.Second, func() (bool, string) {
		mfs, err := r.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "leadstream_processor_score_delay_seconds" {
				h := mf.GetMetric()[0].GetHistogram()
				count, sum = h.GetSampleCount(), h.GetSampleSum()
			}
		}
		return count >= 2, fmt.Sprintf("count=%d sum=%v bot=%v", count, sum, r.events(t, "bot"))
	})
	eventually(t, "bot counted", 15*time.Second, func() (bool, string) {
		return r.events(t, "bot") == 1, fmt.Sprintf("bot=%v", r.events(t, "bot"))
	})
	if count != 2 {
		t.Errorf("score delay samples = %d, want 2 (the page view and the unmatched event; not the bot)", count)
	}
	// The page view waited ≥ 90 s; the unmatched event ~0 s; neither minutes more.
	if sum < 90 || sum > 150 {
		t.Errorf("score delay sum = %vs, want 90 s plus the pipeline's own small delay", sum)
	}
}

// An alias whose userId and previousId are both leads folds previousId into
// userId: its history scores on the survivor, its later events too, the
// lead API of previousId names the survivor, and a redelivery of the whole
// sequence changes nothing.
func TestProcessorAliasMergesLeads(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		ctx := context.Background()
		rules := scoring.Default()
		m := &rules.Models[0]
		r := startProcessor(t, store, rules)
		old, survivor := newID("lead"), newID("lead")
		at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
		f1 := touch(old+"-f1", event.FormSubmit, "", old, at(0))
		p1 := pageView(survivor+"-p1", "", survivor, "/pricing", at(1))
		alias := &event.Event{ID: survivor + "-alias", Type: event.Alias, EventTime: at(2), ReceivedAt: at(2), LeadID: survivor, PreviousID: old}
		f2 := touch(old+"-f2", event.FormSubmit, "", old, at(3)) // after the alias: scores on the survivor
		evs := []*event.Event{f1, p1, alias, f2}
		// The old lead has a history before the alias arrives (otherwise
		// the alias only links it, and its events score on the survivor).
		r.produceEvents(t, f1)
		eventually(t, "the old lead scored", 15*time.Second, func() (bool, string) {
			return r.events(t, "scored") == 1, fmt.Sprintf("scored=%v", r.events(t, "scored"))
		})
		r.produceEvents(t, p1, alias, f2)
		// The alias matches no rule (it only merges).
		eventually(t, "alias processed", 15*time.Second, func() (bool, string) {
			return r.events(t, "scored") == 3 && r.events(t, "no_match") == 1, fmt.Sprintf("scored=%v no_match=%v", r.events(t, "scored"), r.events(t, "no_match"))
		})
		v, tm, _ := expect(m, f1, p1, f2)
		now := at(60)
		for _, lead := range []string{old, survivor} {
			lv, err := leadapi.Read(ctx, store, lead, rules.Models, now)
			if err != nil {
				t.Fatal(err)
			}
			want := scoring.ValueAt(v, tm, now.UnixMilli(), m.HalfLife)
			if mv := lv.Models[m.Name]; !lv.Known || !near(mv.Score, want) {
				t.Errorf("lead API of %s: %+v, want score %v", lead, lv, want)
			}
			if wantInto := map[string]string{old: survivor, survivor: ""}[lead]; lv.MergedInto != wantInto {
				t.Errorf("lead API of %s: merged_into %q, want %q", lead, lv.MergedInto, wantInto)
			}
		}
		if n := r.metric(t, "leadstream_processor_merges_total", ""); n != 1 {
			t.Errorf("merges = %v, want 1", n)
		}
		sv, st := modelState(t, store, survivor, m.Name)
		r.produceEvents(t, evs...)
		// The alias merged, so its id is stored with the merge: its
		// redelivery is a duplicate too.
		eventually(t, "redelivery processed", 15*time.Second, func() (bool, string) {
			return r.events(t, "duplicate") == 4 && r.events(t, "no_match") == 1, fmt.Sprintf("duplicate=%v no_match=%v", r.events(t, "duplicate"), r.events(t, "no_match"))
		})
		if n := r.metric(t, "leadstream_processor_merges_total", ""); n != 1 {
			t.Errorf("merges = %v after redelivery, want 1", n)
		}
		if sv2, st2 := modelState(t, store, survivor, m.Name); sv2 != sv || st2 != st {
			t.Fatalf("redelivery changed the survivor: (%s, %s) -> (%s, %s)", sv, st, sv2, st2)
		}
	})
}
