package scoring

import (
	"slices"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
)

// One event counts once in a question that reads the visitor's link and its
// lead together, even when the two hold it at different times: the link's
// write was lost while the lead's was stored (a processor killed between
// them), and the client resent the event, its time moved a little by the
// clock-skew correction. The lead finds it a duplicate, the link records it
// with the resend's time (visitorHits). Two page views are not three.
func TestAudienceChainCountsAnEventOnce(t *testing.T) {
	r := audRules(t)
	p1 := pv("p1", t0.Add(time.Hour), "", "v", "/pricing")
	p2 := pv("p2", t0.Add(2*time.Hour), "", "v", "/pricing")
	rp := replay(t, r, []*event.Event{ev("id", event.Identify, t0, "L", "v"), p1})
	before := rp.States()[Anon("v")].Clone()
	rp.Apply(p2)
	rp.facts.states[Anon("v")] = before // the link's write of p2 lost
	resent := *p2
	resent.EventTime = resent.EventTime.Add(800 * time.Millisecond)
	if o := rp.Apply(&resent); o != Duplicate {
		t.Fatalf("resend: %v", o)
	}
	v, l := rp.States()[Anon("v")], rp.States()[Lead("L")]
	if !slices.Equal(hitIDs(v, "pricing-returner"), []string{"p1", "p2"}) || !slices.Equal(hitIDs(l, "pricing-returner"), []string{"p1", "p2"}) {
		t.Fatalf("setup: link %v lead %v", v.Audiences, l.Audiences)
	}
	at := t0.Add(3 * time.Hour).UnixMilli()
	if got := r.AudiencesAt([]*State{v, l}, at); slices.Contains(got, "pricing-returner") {
		t.Errorf("visitor with its lead proven, two pricing views (one held at two times): %v, want no pricing-returner", got)
	}
	// A third view makes it one.
	rp.Apply(pv("p3", t0.Add(150*time.Minute), "", "v", "/pricing"))
	v, l = rp.States()[Anon("v")], rp.States()[Lead("L")]
	if got := r.AudiencesAt([]*State{v, l}, at); !slices.Contains(got, "pricing-returner") {
		t.Errorf("three pricing views: %v, want pricing-returner", got)
	}
}
