package leadstate

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/scoring"
)

func codecSample() *scoring.State {
	return &scoring.State{Subject: scoring.Anon("visitor-1"), Into: "lead-9", Pending: true, MergeMark: "merge:a:visitor-1", MergeTime: -5, MaxTime: 1772449200123,
		Recent:  []scoring.BucketIDs{{Bucket: -2, IDs: []uint64{7}}, {Bucket: 9, IDs: []uint64{}}},
		Spilled: []int64{-2},
		Models: []scoring.ModelState{{Name: "a"}, {
			Name: "default", RulesHash: "h", V: -0.5, T: 7, Fit: 1e-300,
			FitReasons: []event.Reason{{Rule: "r", Points: 2}},
			Rules:      map[string]scoring.RuleValue{"x": {V: 1, T: 2}, "": {V: 3, T: -4}},
			Caps:       map[scoring.CapKey][]scoring.CapHit{{Rule: "x", Window: 0}: {{Time: 1, ID: "é", Points: 1}}, {Rule: "x", Window: -86400000}: nil},
		}},
		Traits: map[string]*scoring.Trait{"t": {Value: []byte(`{"a":[1,2]}`), Time: 3, ID: "i"}},
	}
}

// codecAccountSample has every account field: a lead's and an account's.
func codecAccountSamples() []*scoring.State {
	lead := codecSample()
	lead.Subject = scoring.Lead("lead-1")
	lead.Group = &scoring.Membership{Account: "acme", Time: 5, ID: "g1"}
	lead.Domain = &scoring.Membership{Account: "acme.example", Time: -1, ID: "i1"}
	lead.MemberOf, lead.AcctSeq = "acme", 1<<40
	lead.Left = []scoring.LeftAccount{{Account: "globex", Seq: 3}}
	acct := &scoring.State{Subject: scoring.Account("acme"),
		Models: []scoring.ModelState{{Name: "default", V: 40, T: 9, Fit: 30, MQL: true, MQLAt: 9, MQLTrigger: "e1"}},
		Traits: map[string]*scoring.Trait{"name": {Value: []byte(`"Acme"`), Time: 3, ID: "g1"}},
		Members: []scoring.AccountEntry{
			{Lead: "a", Seq: 2, Values: []scoring.MemberValue{{Model: "default", V: 1.5, T: 9}, {Model: "x", V: -2, T: -3}}},
			{Lead: "b", Seq: 7, Left: true},
		}}
	return []*scoring.State{lead, acct}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, st := range append([]*scoring.State{codecSample(), {Subject: scoring.Lead("")}, {Subject: scoring.Lead("l"), Into: "m"}}, codecAccountSamples()...) {
		b := encodeState(nil, st)
		got, err := decodeState(b)
		if err != nil {
			t.Fatal(err)
		}
		// Empty cap lists decode as empty, not nil.
		for i := range st.Models {
			for k, v := range st.Models[i].Caps {
				if v == nil {
					st.Models[i].Caps[k] = []scoring.CapHit{}
				}
			}
		}
		if !reflect.DeepEqual(got, st) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, st)
		}
		if !bytes.Equal(encodeState(nil, got), b) {
			t.Fatal("encoding is not stable")
		}
	}
}

// The decoder never panics nor allocates beyond its input on damaged
// values; what it accepts encodes back to the same bytes.
func FuzzDecodeState(f *testing.F) {
	f.Add(encodeState(nil, codecSample()))
	f.Add([]byte{codecVersion, 0})
	for _, st := range codecAccountSamples() {
		f.Add(encodeState(nil, st))
	}
	f.Add([]byte{codecVersion, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("error %v is not ErrCorruptState", err)
			}
			return
		}
		if again, err := decodeState(encodeState(nil, st)); err != nil || !reflect.DeepEqual(again, st) {
			t.Fatalf("re-encoding %+v: %v", st, err)
		}
	})
}
