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

// With a dedup window that is not a multiple of 8 h its buckets are not
// whole hours, and an edge may fall inside the clock hour that gives a form
// post (or an email open) its id: the same post at :20 and at :40 around that
// edge scores once.
func TestSameHourIDAcrossUnalignedBucket(t *testing.T) {
	r := coreRules(t)
	rp := NewReplayer(r, 36*time.Hour) // 4.5 h buckets
	c := rp.Core()
	b := c.Bucket(t0.UnixMilli()) + 1
	for ; (b*c.bucket)%hourMs != 30*60*1000; b++ {
	}
	edge := time.UnixMilli(b * c.bucket).UTC()
	o1 := rp.Apply(ev("form-hour-id", event.FormSubmit, edge.Add(-10*time.Minute), "L", ""))
	o2 := rp.Apply(ev("form-hour-id", event.FormSubmit, edge.Add(10*time.Minute), "L", ""))
	if o1 != Scored || o2 != Duplicate {
		t.Errorf("one post (one id, one hour) around the edge at %v: %v, %v; want scored, duplicate", edge, o1, o2)
	}
	// With whole-hour buckets (the default window) edges fall on the hour.
	if d := NewCore(r, 0).bucket; d%hourMs != 0 {
		t.Errorf("default bucket %d ms is not whole hours", d)
	}
}
