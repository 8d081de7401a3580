package leadstate_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
)

// t0 is a fixed event time: tests never read the clock for scoring.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	day = 24 * time.Hour
	hl  = 720 * time.Hour // the default half-life
)

// newID returns a random id: the Redis servers are shared by every test.
func newID(prefix string) string { return fmt.Sprintf("%s-%016x", prefix, rand.Uint64()) }

// key is the documented key layout (see the package doc).
func key(s leadstate.Subject, suffix string) string {
	if s.Anonymous {
		return "ls:{a:" + s.ID + "}:" + suffix
	}
	return "ls:{" + s.ID + "}:" + suffix
}

func ms(tm time.Time) int64 { return tm.UnixMilli() }

func hit(rule string, points float64, at time.Time) leadstate.Hit {
	return leadstate.Hit{Rule: rule, Points: points, TimeMs: ms(at)}
}

// model is a model update named "m".
func model(halfLife time.Duration, threshold, rearm float64, hits ...leadstate.Hit) leadstate.ModelUpdate {
	return leadstate.ModelUpdate{Name: "m", HalfLife: halfLife, Threshold: threshold, RearmBelow: rearm, Hits: hits}
}

// apply applies the event id (dedup and trigger id) to subj and fails on error.
func apply(t *testing.T, s *leadstate.Store, subj leadstate.Subject, id string, models ...leadstate.ModelUpdate) leadstate.Result {
	t.Helper()
	res, err := leadstatetest.Apply(context.Background(), s, &leadstate.Update{Subject: subj, DedupID: id, TriggerEventID: id, Models: models})
	if err != nil {
		t.Fatalf("Apply(%s): %v", id, err)
	}
	return res
}

// hash returns a model hash of subj.
func hash(t *testing.T, s *leadstate.Store, subj leadstate.Subject, model string) map[string]string {
	t.Helper()
	h, err := leadstatetest.Client(t, s).HGetAll(context.Background(), key(subj, "m:"+model)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// vt returns the stored behaviour state (v at reference time t) of model "m".
func vt(t *testing.T, s *leadstate.Store, subj leadstate.Subject) (float64, int64) {
	t.Helper()
	h := hash(t, s, subj, "m")
	v, err := strconv.ParseFloat(h["v"], 64)
	if err != nil {
		t.Fatalf("field v of %s: %v", key(subj, "m:m"), err)
	}
	tm, err := strconv.ParseFloat(h["t"], 64)
	if err != nil {
		t.Fatalf("field t of %s: %v", key(subj, "m:m"), err)
	}
	return v, int64(tm)
}

func hlen(t *testing.T, s *leadstate.Store, k string) int64 {
	t.Helper()
	n, err := leadstatetest.Client(t, s).HLen(context.Background(), k).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// near reports whether a and b agree to rel relative to scale (at least 1).
func near(a, b, rel, scale float64) bool {
	return math.Abs(a-b) <= rel*math.Max(1, math.Max(scale, math.Max(math.Abs(a), math.Abs(b))))
}
