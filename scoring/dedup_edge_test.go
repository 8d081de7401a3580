package scoring

import (
	"fmt"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
)

// A resent event whose corrected time moved across the edge of a dedup
// bucket (received − sentAt differs by the network latency of each send) is
// still a duplicate: the neighbouring bucket is checked by the edge, whether
// the first copy's id is inline in the state or spilled beside it.
func TestDedupAcrossBucketEdge(t *testing.T) {
	rules := Default()
	const window = 80 * time.Second // buckets of 10 s, slack 2.5 s
	edge := time.UnixMilli(1_800_000_000_000).UTC()
	if NewCore(rules, window).Bucket(edge.UnixMilli())*10_000 != edge.UnixMilli() {
		t.Fatal("edge is not the start of a bucket")
	}
	for _, tc := range []struct {
		name        string
		filler      int // other events of the visitor first, in the earlier bucket
		first, then time.Duration
	}{
		{"inline, forward", 0, -time.Millisecond, time.Millisecond},
		{"inline, backward", 0, 2 * time.Second, -2 * time.Second},
		{"spilled, forward", 300, -time.Millisecond, 400 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var evs []*event.Event
			for i := range tc.filler {
				evs = append(evs, ev(fmt.Sprintf("f%d", i), event.PageView, edge.Add(-5*time.Second), "", "v"))
			}
			first := ev("form-1", event.FormSubmit, edge.Add(tc.first), "", "v")
			resent := *first
			resent.EventTime, resent.ReceivedAt = edge.Add(tc.then), edge.Add(tc.then)
			once, twice := NewReplayer(rules, window), NewReplayer(rules, window)
			for _, e := range append(evs, first) {
				once.Apply(e)
				twice.Apply(e)
			}
			if o := twice.Apply(&resent); o != Duplicate {
				t.Fatalf("the resent event across the edge: %v, want Duplicate", o)
			}
			if a, b := canon(once, rules), canon(twice, rules); fmt.Sprint(a) != fmt.Sprint(b) {
				t.Errorf("scored twice:\n once %v\ntwice %v", a, b)
			}
		})
	}
	// Away from an edge nothing else is looked at: the same id 5 s later in
	// the next bucket but one is a new event (ids are events, times differ
	// by far more than a resend moves them only in tests like this one).
	c := NewCore(rules, window)
	if _, ok := c.Neighbour(edge.Add(5 * time.Second).UnixMilli()); ok {
		t.Error("mid-bucket time has a neighbour")
	}
	if nb, ok := c.Neighbour(edge.Add(10*time.Second - time.Millisecond).UnixMilli()); !ok || nb != c.Bucket(edge.UnixMilli())+1 {
		t.Errorf("end of a bucket: neighbour %v %v", nb, ok)
	}
}

// Replay dedups an id by its bucket, as live scoring does, once its subject's
// ids spill beside its state too: one id at two event times ten days apart
// (two buckets) scores twice however many events the lead had before it (it
// was a duplicate after 300, when the replay kept one bucket per id).
func TestReplayDedupBySpilledBucket(t *testing.T) {
	r := coreRules(t)
	run := func(prior int) (Outcome, Outcome) {
		rp := NewReplayer(r, 0)
		for i := range prior {
			rp.Apply(ev(fmt.Sprintf("p%d", i), event.PageView, t0.Add(time.Duration(i)*time.Second), "L", ""))
		}
		rp.Apply(ev("filler", event.PageView, t0.Add(11*24*time.Hour-time.Minute), "L", ""))
		x1 := ev("same", event.FormSubmit, t0.Add(24*time.Hour), "L", "")
		x2 := ev("same", event.FormSubmit, t0.Add(11*24*time.Hour), "L", "")
		return rp.Apply(x1), rp.Apply(x2)
	}
	for _, prior := range []int{10, 300} {
		if a, b := run(prior); a != Scored || b != Scored {
			t.Errorf("after %d events: %v, %v; want both scored (two dedup buckets)", prior, a, b)
		}
	}
	// And a replayed state hands both buckets to Restore.
	rp := NewReplayer(r, 0)
	for i := range 300 {
		rp.Apply(ev(fmt.Sprintf("p%d", i), event.PageView, t0.Add(time.Duration(i)*time.Second), "L", ""))
	}
	rp.Apply(ev("same", event.FormSubmit, t0.Add(24*time.Hour), "L", ""))
	rp.Apply(ev("same", event.FormSubmit, t0.Add(11*24*time.Hour), "L", ""))
	n := 0
	for _, s := range rp.Spilled(Lead("L")) {
		if s.FP == Fingerprint("same") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("spilled %d entries of the id, want 2 (one per bucket)", n)
	}
}
