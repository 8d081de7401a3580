package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// The crossings a dry run reports are all those of the history, as live
// scoring published them: also those of a lead alias merged into another
// since (its MQL record was published before the merge).
func TestRescoreCrossingsOfMergedLead(t *testing.T) {
	store := leadstatetest.Open(t, testsvc.Redis(t))
	sfx := fmt.Sprintf("%x", rand.Uint64())
	old, survivor := "old-"+sfx, "new-"+sfx
	rules := scoring.Default()
	rp := scoring.NewReplayer(rules, 0)
	at := time.Now().UTC().Add(-time.Hour)
	n := 0
	apply := func(e event.Event) {
		n++
		e.ID, e.EventTime, e.ReceivedAt = fmt.Sprintf("%s-%d", sfx, n), at.Add(time.Duration(n)*time.Second), at.Add(time.Duration(n)*time.Second)
		rp.Apply(&e)
	}
	for range 4 { // 4 × 30 points: the old id crosses 100
		apply(event.Event{Type: event.FormSubmit, LeadID: old})
	}
	apply(event.Event{Type: event.Alias, LeadID: survivor, PreviousID: old})
	res, err := compareRescore(context.Background(), store, rules, rp, time.Now(), 5)
	if err != nil {
		t.Fatal(err)
	}
	want := rp.Crossings(old, "default") + rp.Crossings(survivor, "default")
	if want == 0 {
		t.Fatal("BUG: the test's history has no crossing")
	}
	if got := res[0].Crossings; got != want {
		t.Errorf("dry run reports %d crossings, the history holds %d (old %d, survivor %d)", got, want,
			rp.Crossings(old, "default"), rp.Crossings(survivor, "default"))
	}
}
