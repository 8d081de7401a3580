package audience

import (
	"testing"

	"github.com/leadstream/leadstream/scoring"
)

// Own opens the leads of a visitor's chain only to a question that proves one
// of them.
func TestOwn(t *testing.T) {
	visitor := &scoring.State{Into: "lead-a"}
	leadA := &scoring.State{Into: "lead-b"} // merged into lead-b since
	leadB := &scoring.State{}
	chain := []*scoring.State{visitor, leadA, leadB}
	for _, c := range []struct {
		lead string
		want int
	}{
		{"", 1},       // no proof: the visitor's own state
		{"lead-x", 1}, // another lead's proof
		{"lead-a", 3}, // the lead it identified as
		{"lead-b", 3}, // the lead that one was merged into
	} {
		if got := Own(chain, c.lead); len(got) != c.want || got[0] != visitor {
			t.Errorf("Own(chain, %q): %d states, want %d starting with the visitor's", c.lead, len(got), c.want)
		}
	}
	if got := Own([]*scoring.State{nil}, "lead-a"); len(got) != 1 || got[0] != nil {
		t.Errorf("unknown visitor: %v", got)
	}
	if got := Own(nil, "lead-a"); got != nil {
		t.Errorf("empty chain: %v", got)
	}
	// A visitor never identified: its state is the whole chain whatever the proof.
	alone := []*scoring.State{{}}
	if got := Own(alone, "lead-a"); len(got) != 1 {
		t.Errorf("unlinked visitor: %d states", len(got))
	}
}
