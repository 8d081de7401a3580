package processor

import (
	"fmt"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
)

// A resend whose corrected event time crossed the edge of a dedup bucket is a
// duplicate with real Redis too, where the first copy's id was spilled into
// the earlier bucket's set (the visitor had over scoring.InlineIDs events).
func TestProcessorDedupAcrossBucketEdge(t *testing.T) {
	leadstatetest.Each(t, func(t *testing.T, store *leadstate.Store) {
		rules := scoring.Default()
		r := startProcessor(t, store, rules)
		c := scoring.NewCore(rules, testWindow)
		// The start of t0's bucket (buckets are W/8 long): before t0, within the window.
		size := testWindow.Milliseconds() / 8
		edge := time.UnixMilli(c.Bucket(t0.UnixMilli()) * size).UTC()
		if c.Bucket(edge.UnixMilli()) != c.Bucket(edge.UnixMilli()-1)+1 {
			t.Fatalf("%v is not a bucket edge", edge)
		}
		anon := newID("edge")
		var evs []*event.Event
		for i := range scoring.InlineIDs + 20 {
			evs = append(evs, pageView(fmt.Sprintf("%s-pv%d", anon, i), anon, "", "/", edge.Add(-time.Minute)))
		}
		form := touch(anon+"-form", event.FormSubmit, anon, "", edge.Add(-time.Millisecond))
		evs = append(evs, form)
		r.produce(t, stream.TopicEvents, records(t, evs...)...)
		n := float64(len(evs))
		eventually(t, "the first copies scored", 15*time.Second, func() (bool, string) {
			s := r.events(t, "scored")
			return s == n, fmt.Sprintf("scored=%v want %v", s, n)
		})
		resent := *form
		resent.EventTime, resent.ReceivedAt = edge.Add(300*time.Millisecond), edge.Add(300*time.Millisecond)
		r.produce(t, stream.TopicEvents, records(t, &resent)...)
		eventually(t, "the resend across the edge is a duplicate", 15*time.Second, func() (bool, string) {
			s, d := r.events(t, "scored"), r.events(t, "duplicate")
			return s == n && d == 1, fmt.Sprintf("scored=%v duplicate=%v, want %v and 1", s, d, n)
		})
	})
}
