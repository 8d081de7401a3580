package event

import "testing"

// An mql_id is how consumers drop a redelivered crossing, across processor
// versions too: the function must never change. Golden values from the first
// release, and the parts of the input never run together.
func TestMQLIDIsStable(t *testing.T) {
	f := func(lead, model, trigger, want string) {
		t.Helper()
		if got := MQLID(lead, model, trigger); got != want {
			t.Errorf("MQLID(%q, %q, %q) = %s, want %s", lead, model, trigger, got, want)
		}
	}
	f("lead-42", "default", "evt-1", "90aa2c13-7aa8-5be6-a37c-7b35c6108196")
	if MQLID("a", "bc", "d") == MQLID("ab", "c", "d") {
		t.Error("MQLID runs its parts together")
	}
}
