package scoring

import (
	"slices"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
)

// A subject with no state in a score audience's model has score 0 there, as
// one whose points decayed to 0: score_gte ≤ 0 holds, score_gte > 0 does
// not. A subject with no state at all (an unknown visitor) is in no
// audience, and a visitor merged into a lead, asked about on its own, is in
// no score audience (its score is the lead's).
func TestAudienceScoreWithoutModelState(t *testing.T) {
	r, err := Parse("r.yaml", []byte(`
models:
  - name: m
    half_life: 1h
    threshold: 100
    rules:
      - {name: view, event: page_view, points: 5}
      - {name: unsubscribe, event: custom, track: Unsubscribed, points: -50}
  - name: other
    threshold: 100
    rules:
      - {name: open, event: email_open, points: 10}
audiences:
  - {name: zero, model: m, score_gte: 0}
  - {name: negative, model: m, score_gte: -10}
  - {name: positive, model: m, score_gte: 1}
  - {name: opened, event: email_open, window: 7d, model: m, score_gte: 0}
`))
	if err != nil {
		t.Fatal(err)
	}
	unsub := ev("u1", event.Custom, t0, "", "unsub")
	unsub.Track = "Unsubscribed"
	rp := replay(t, r, []*event.Event{
		pv("p1", t0, "", "viewer", "/x"),
		ev("o1", event.EmailOpen, t0, "", "opener"),
		unsub,
		ev("o2", event.EmailOpen, t0, "L", ""),
		ev("id", event.Identify, t0.Add(time.Minute), "L", "opener"),
	})
	st := rp.States()
	at := t0.Add(2 * time.Minute).UnixMilli()
	later := t0.Add(1000 * time.Hour).UnixMilli()
	for _, c := range []struct {
		what  string
		chain []*State
		at    int64
		want  []string
	}{
		{"viewer, 5 points", []*State{st[Anon("viewer")]}, at, []string{"zero", "negative", "positive"}},
		{"viewer, decayed to 0", []*State{st[Anon("viewer")]}, later, []string{"zero", "negative"}},
		{"unsubscribed, -50", []*State{st[Anon("unsub")]}, at, nil},
		{"lead without state in m", []*State{st[Lead("L")]}, at, []string{"zero", "negative", "opened"}},
		{"merged visitor, with its lead", []*State{st[Anon("opener")], st[Lead("L")]}, at, []string{"zero", "negative", "opened"}},
		{"merged visitor alone", []*State{st[Anon("opener")]}, at, nil},
		{"unknown visitor", []*State{nil}, at, nil},
		{"no chain", nil, at, nil},
	} {
		if got := r.AudiencesAt(c.chain, c.at); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.what, got, c.want)
		}
	}
	if st[Lead("L")].Model("m") != nil || st[Anon("opener")].Into != "L" {
		t.Fatalf("setup: lead %+v visitor into %q", st[Lead("L")].Models, st[Anon("opener")].Into)
	}
}
