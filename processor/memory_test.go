package processor

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// What Redis holds for a lead depends on the rules and the dedup window,
// not on its history: 2,000 events spread over 400 days, scored as they
// happen (the scorer's clock follows the events; Redis expires what the
// processor gave an expiry in the past), leave far less than 2,000 events
// within one day, whose ids are all still inside the window. Default rules,
// default window. The figures are in the README ("Scoring rules").
func TestLeadStateStaysBounded(t *testing.T) {
	store := leadstatetest.Open(t, testsvc.Redis(t))
	rdb := leadstatetest.Client(t, store)
	ctx := context.Background()
	rules := scoring.Default()
	bytesOf := func(span time.Duration) (int64, int) {
		t.Helper()
		lead := newID("mem")
		sc := NewScorer(scoring.NewCore(rules, 0), store, scoring.DefaultAnonymousTTL)
		end := time.Now().Add(-time.Minute)
		const n = 2000
		step := span / n
		kinds := []func(e *event.Event){
			func(e *event.Event) { e.Type, e.Path = event.PageView, "/docs" },
			func(e *event.Event) { e.Type, e.Path = event.PageView, "/pricing" },
			func(e *event.Event) { e.Type = event.EmailOpen },
			func(e *event.Event) { e.Type = event.EmailClick },
			func(e *event.Event) { e.Type = event.FormSubmit },
		}
		for lo := 0; lo < n; lo += 50 {
			evs := make([]*event.Event, 50)
			for i := range evs {
				at := end.Add(-span + time.Duration(lo+i)*step)
				e := &event.Event{ID: fmt.Sprintf("%s-%08d-%x", lead, lo+i, lo+i), LeadID: lead, EventTime: at, ReceivedAt: at}
				kinds[(lo+i)%len(kinds)](e)
				evs[i] = e
			}
			now := evs[len(evs)-1].EventTime.Add(time.Second)
			sc.clock = func() time.Time { return now }
			res, err := sc.Score(ctx, evs, map[scoring.Subject]leadstate.Record{})
			if err != nil {
				t.Fatal(err)
			}
			for i, o := range res.Outcomes {
				if o != scoring.Scored && o != scoring.NoMatch {
					t.Fatalf("event %d: %v", lo+i, o)
				}
			}
		}
		var total int64
		keys := 0
		iter := rdb.Scan(ctx, 0, leadstatetest.Key(scoring.Lead(lead), "*"), 100).Iterator()
		for iter.Next(ctx) {
			b, err := rdb.MemoryUsage(ctx, iter.Val()).Result()
			if err != nil {
				t.Fatal(err)
			}
			total += b
			keys++
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
		st := leadstatetest.State(t, store, scoring.Lead(lead))
		t.Logf("2,000 events over %v: %d keys, %d bytes in Redis (state value %d windows open)", span, keys, total, len(st.Model("default").Caps))
		return total, keys
	}
	long, _ := bytesOf(400 * 24 * time.Hour)
	short, _ := bytesOf(24 * time.Hour)
	if long*4 > short {
		t.Errorf("2,000 events over 400 days hold %d bytes, over one day %d: old ids and windows were not released", long, short)
	}
	if short > 300_000 {
		t.Errorf("2,000 events within a day hold %d bytes (%s per event)", short, strconv.FormatInt(short/2000, 10))
	}
}
