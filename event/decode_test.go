package event

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// reference is the decoding Unmarshal must equal: encoding/json, then Validate.
func reference(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return e, err
	}
	return e, e.Validate()
}

func checkSame(t *testing.T, b []byte) {
	t.Helper()
	want, werr := reference(b)
	var got Event
	gerr := Unmarshal(b, &got)
	if (gerr == nil) != (werr == nil) {
		t.Fatalf("Unmarshal(%s): err %v, encoding/json: %v", b, gerr, werr)
	}
	if gerr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("Unmarshal(%s):\n got %+v\nwant %+v", b, got, want)
	}
}

func sampleEvents() []Event {
	at := time.Date(2026, 11, 22, 16, 39, 58, 120e6, time.UTC)
	return []Event{
		{ID: "e1", Type: PageView, EventTime: at, ReceivedAt: at.Add(time.Second), AnonymousID: "a1", URL: "https://x.example/?a=1&b=<2>",
			Title: "Prix — \u2028 \"Acme\" \\ \x01 \U0001F600", Properties: json.RawMessage(`{"url":"https://x.example/","n":[1,2.5e3,true,null]}`),
			OriginalTimestamp: at.Add(-time.Hour), Context: json.RawMessage(`{"library":{"name":"analytics.js"},"page":{"url":"https://x.example/"}}`),
			Integrations: json.RawMessage(`{"All":false,"Salesforce":true}`)},
		{ID: "e2", Type: Identify, EventTime: at, ReceivedAt: at, LeadID: "lead@acme.example", AnonymousID: "a1",
			Traits: json.RawMessage(`{"email":"lead@acme.example","employees":250}`), Properties: json.RawMessage(`{}`)},
		{ID: "e3", Type: DealWon, EventTime: at, ReceivedAt: at, LeadID: "l", Revenue: 1234.5678, Currency: "EUR", Bot: true, BotReason: "user_agent:x"},
		{ID: "e4", Type: Alias, EventTime: at.In(time.FixedZone("x", 3600)), ReceivedAt: at, LeadID: "l", PreviousID: "p", WriteKeyID: "wk",
			Campaign: "c", UTMSource: "s", UTMMedium: "m", UTMCampaign: "c", UTMTerm: "t", UTMContent: "ct", Path: "/p", Referrer: "r", Track: "Signed Up",
			IP: "198.51.100.7", UserAgent: "Mozilla/5.0", Revenue: -0.5},
	}
}

func TestUnmarshalEqualsEncodingJSON(t *testing.T) {
	for _, e := range sampleEvents() {
		b, err := Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		var got Event
		if !decodeFast(b, &got) {
			t.Errorf("the fast path refused a record AppendJSON wrote: %s", b)
		}
		checkSame(t, b)
	}
	ok := `{"event_id":"e1","type":"page_view","event_time":"2026-11-22T16:39:58.12Z","received_at":"2026-11-22T16:39:58.12Z","anonymous_id":"a1"`
	for _, c := range []string{
		ok + `}`, " \n" + ok + ` , "title" : "x\u0026y\ud83d\ude00\ud800\u00e9\/" } `, ok + `,"title":"a\ud800\ud800b"}`,
		ok + `,"title":"\ud83dx"}`, ok + `,"Title":"case variant"}`, ok + `,"unknown":{"x":[1]}}`, ok + `,"lead_id":null}`,
		ok + `,"properties":null}`, ok + `,"properties":[1]}`, ok + `,"properties":{"a":1},"properties":{"b":2}}`,
		ok + `,"revenue":"12"}`, ok + `,"revenue":1e400}`, ok + `,"revenue":-0}`, ok + `,"revenue":01}`, ok + `,"bot":1}`,
		ok + `,"bot":truex}`, ok + `,"bot":false}`, ok + `,"title":"bad \xff utf8"}`, ok + `,"title":"bad \xff utf8 \n"}`,
		ok + `,"title":"x\u00"}`, ok + `,"title":5}`, ok + `,"event_time":"2026-11-22T16:39:58.12+01:00"}`,
		ok + `,"event_time":"2026-11-22 16:39:58"}`, ok + `,"event_time":"\u0032026-11-22T16:39:58Z"}`, ok + `,"event_time":null}`,
		ok + `,"traits":{"a":}}`, ok + `}x`, ok + `,}`, ok, `{}`, `[]`, ``, `{"event_id":"e1","type":"page_view"}`,
		ok + `,"type":"nope"}`, ok + `,"type":"page\u005fview"}`, `{"event\u005fid":"x"}`,
	} {
		checkSame(t, []byte(c))
	}
}

// Random records and random damage to them: Unmarshal must decode exactly
// what encoding/json does and fail exactly where it fails.
func TestUnmarshalRandomEqualsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "é", "\"", "\\", "<", "&", "\u2028", "\x00", "\x7f", "\xff", " ", "\U0001F600", "/", "\t"}
	str := func() string {
		var sb strings.Builder
		for n := rng.IntN(12); n > 0; n-- {
			sb.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return sb.String()
	}
	for i := 0; i < 3000; i++ {
		e := sampleEvents()[rng.IntN(4)]
		e.Title, e.URL, e.LeadID = str(), str(), str()
		e.Revenue = float64(rng.IntN(1e6)) / 100
		b, err := Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		checkSame(t, b)
		// Damage: drop, duplicate or replace one byte.
		d := append([]byte(nil), b...)
		j := rng.IntN(len(d))
		switch rng.IntN(3) {
		case 0:
			d = append(d[:j], d[j+1:]...)
		case 1:
			d = append(d[:j+1], d[j:]...)
		default:
			const junk = "{}[]\",:\\0x \xff"
			d[j] = junk[rng.IntN(len(junk))]
		}
		checkSame(t, d)
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, e := range sampleEvents() {
		b, _ := Marshal(&e)
		f.Add(b)
	}
	f.Add([]byte(`{"event_id":"e","type":"custom","event_time":"2026-01-01T00:00:00Z","received_at":"2026-01-01T00:00:00Z","lead_id":"\ud800"}`))
	f.Fuzz(func(t *testing.T, b []byte) { checkSame(t, b) })
}

func ExampleUnmarshal() {
	var e Event
	err := Unmarshal([]byte(`{"event_id":"e1","type":"page_view","event_time":"2026-11-22T16:39:58Z","received_at":"2026-11-22T16:39:58Z","anonymous_id":"a1","url":"https://x.example/?a=1\u0026b=2"}`), &e)
	fmt.Println(err, e.URL)
	// Output: <nil> https://x.example/?a=1&b=2
}

// Nesting in properties counts from the event object, as in encoding/json.
func TestUnmarshalDepthLimit(t *testing.T) {
	ok := `{"event_id":"e1","type":"page_view","event_time":"2026-11-22T16:39:58.12Z","received_at":"2026-11-22T16:39:58.12Z","anonymous_id":"a1","properties":`
	for _, n := range []int{9998, 9999, 10000} {
		checkSame(t, []byte(ok+strings.Repeat(`{"a":`, n)+`1`+strings.Repeat(`}`, n)+`}`))
	}
}
