package leadapi_test

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadapi"
	"github.com/leadstream/leadstream/scoring"
)

// The account view decays every member to the time of the request, caps
// each at member_cap, adds fit, and lists members by contribution.
func TestViewAccount(t *testing.T) {
	rules := scoring.Default()
	m := rules.Model("default")
	rp := scoring.NewReplayer(rules, 0)
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	apply := func(e *event.Event) {
		e.ReceivedAt = e.EventTime
		rp.Apply(e)
	}
	for i, lead := range []string{"zoe", "adam"} {
		g := &event.Event{ID: "g-" + lead, Type: event.Group, EventTime: t0, LeadID: lead, GroupID: "acme"}
		if i == 0 {
			g.Traits = json.RawMessage(`{"name":"Acme","industry":"software","employees":10}`)
		}
		apply(g)
	}
	for _, id := range []string{"f1", "f2", "f3"} { // zoe: 90 points, capped at 60
		apply(&event.Event{ID: id, Type: event.FormSubmit, EventTime: t0, LeadID: "zoe"})
	}
	apply(&event.Event{ID: "f4", Type: event.FormSubmit, EventTime: t0, LeadID: "adam"}) // adam: 30

	now := t0.Add(m.HalfLife) // one half-life later: zoe 45, adam 15
	v := leadapi.ViewAccount("acme", rp.States()[scoring.Account("acme")], rules.Models, now)
	mv := v.Models["default"]
	if !v.Known || v.Traits["name"] != "Acme" || mv.Fit != 30 || math.Abs(mv.Engagement-60) > 1e-9 || math.Abs(mv.Score-90) > 1e-9 ||
		mv.EngagedMembers != 1 || mv.MQA || mv.Threshold != 150 {
		t.Fatalf("view %+v", v)
	}
	if len(v.Members) != 2 || v.Members[0].LeadID != "zoe" || math.Abs(v.Members[0].Scores["default"].Behaviour-45) > 1e-9 ||
		v.Members[0].Scores["default"].Contribution != 45 || math.Abs(v.Members[1].Scores["default"].Behaviour-15) > 1e-9 {
		t.Fatalf("members %+v", v.Members)
	}
	if unknown := leadapi.ViewAccount("nobody", nil, rules.Models, now); unknown.Known || len(unknown.Members) != 0 {
		t.Fatalf("unknown account %+v", unknown)
	}
}
