package event

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// AppendJSON must produce exactly encoding/json's bytes: the topic format is a
// public contract and consumers may compare records byte for byte.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	f := func(e Event) {
		t.Helper()
		want, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendJSON(nil, &e)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("AppendJSON:\n got %s\nwant %s", got, want)
		}
	}
	at := time.Date(2026, 11, 22, 16, 39, 58, 120e6, time.UTC)
	f(Event{ID: "m1", Type: PageView, EventTime: at, ReceivedAt: at.Add(80 * time.Millisecond), AnonymousID: "a1"})
	f(Event{ID: "m2", Type: DealWon, EventTime: at, ReceivedAt: at, LeadID: "ada@example.com", Revenue: 1234.5, Currency: "EUR",
		Properties: json.RawMessage(" { \"a\" : [1, 2, {\"b\": null}] ,\n\"c\":\"<&>\" } "), Traits: json.RawMessage(`{"title":"CTO"}`)})
	f(Event{ID: "q\"\\\n\t\r\b\f\x01\x1f<>&\u2028\u2029é😀\xff", Type: Custom, EventTime: at, ReceivedAt: at, LeadID: "x", Bot: true, BotReason: "user_agent:curl"})
	for _, r := range []float64{1e-7, 1e21, 123456789012345678, 0.1, 1e-6, 999999999999999999999, -3.25} {
		f(Event{ID: "r", Type: DealWon, EventTime: at, ReceivedAt: at, LeadID: "l", Revenue: r})
	}
	f(Event{ID: "z", Type: Alias, EventTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)), ReceivedAt: at, LeadID: "l", PreviousID: "p",
		WriteKeyID: "wk", Campaign: "c", UTMSource: "s", UTMMedium: "m", UTMCampaign: "uc", UTMTerm: "t", UTMContent: "co",
		URL: "https://x.example/?a=1&b=<2>", Path: "/p", Referrer: "r", Title: "T", Track: "tr", IP: "198.51.100.7", UserAgent: "ua"})
	f(Event{ID: "o", Type: Custom, EventTime: at, ReceivedAt: at, LeadID: "l", OriginalTimestamp: at.Add(time.Hour).In(time.FixedZone("y", -7200)),
		Context: json.RawMessage(` {"ip" : "198.51.100.7", "library":{"name":"analytics-go"}} `), Integrations: json.RawMessage(`{"All":true}`)})

	// Random strings over the characters that need care.
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "\"", "\\", "<", ">", "&", "\n", "\x00", "\x7f", "é", "\u2028", "😀", "\xff", "\xe2\x80", " "}
	for range 2000 {
		s := ""
		for range rng.IntN(12) {
			s += alphabet[rng.IntN(len(alphabet))]
		}
		f(Event{ID: s, Type: Custom, EventTime: at, ReceivedAt: at, LeadID: s, Title: s})
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("id", "title \u2028 <b>", 12.5, []byte(`{"a":1}`))
	f.Fuzz(func(t *testing.T, id, title string, revenue float64, props []byte) {
		at := time.Date(2026, 11, 22, 16, 39, 58, 120e6, time.UTC)
		e := Event{ID: id, Type: Custom, EventTime: at, ReceivedAt: at, LeadID: "l", Title: title, Revenue: revenue}
		if json.Valid(props) && isObject(props) {
			e.Properties = props
		}
		want, err := json.Marshal(&e)
		if err != nil {
			return // NaN/Inf revenue: encoding/json refuses, and so does the collector
		}
		got, err := AppendJSON(nil, &e)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("AppendJSON:\n got %s\nwant %s", got, want)
		}
	})
}

func BenchmarkMarshal(b *testing.B) {
	at := time.Date(2026, 11, 22, 16, 39, 58, 120e6, time.UTC)
	e := Event{ID: "ajs-next-1-1a2b3c4d5e", Type: PageView, EventTime: at, ReceivedAt: at, AnonymousID: "0b7c9d3e-5f61-4a2b-9c8d-000000000001",
		WriteKeyID: "wk_1a2b3c4d5e6f", UTMSource: "google", UTMMedium: "cpc", UTMCampaign: "spring", Campaign: "spring",
		URL: "https://acme.example/pricing?utm_source=google&utm_medium=cpc&utm_campaign=spring", Path: "/pricing", Title: "Pricing — Acme",
		Referrer: "https://www.google.com/", Properties: json.RawMessage(`{"url":"https://acme.example/pricing","path":"/pricing"}`),
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36", IP: "198.51.100.7"}
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = AppendJSON(buf[:0], &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkUnmarshal(b *testing.B) {
	at := time.Date(2026, 11, 22, 16, 39, 58, 120e6, time.UTC)
	e := Event{ID: "ajs-next-1-1a2b3c4d5e", Type: PageView, EventTime: at, ReceivedAt: at, AnonymousID: "0b7c9d3e-5f61-4a2b-9c8d-000000000001",
		WriteKeyID: "wk_1a2b3c4d5e6f", UTMSource: "google", UTMMedium: "cpc", UTMCampaign: "spring", Campaign: "spring",
		URL: "https://acme.example/pricing?utm_source=google&utm_medium=cpc&utm_campaign=spring", Path: "/pricing", Title: "Pricing — Acme",
		Referrer: "https://www.google.com/", Properties: json.RawMessage(`{"url":"https://acme.example/pricing","path":"/pricing"}`),
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36", IP: "198.51.100.7"}
	raw, _ := Marshal(&e)
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		for b.Loop() {
			var out Event
			if err := json.Unmarshal(raw, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		var out Event
		for b.Loop() {
			if err := Unmarshal(raw, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Unmarshal stays as strict as encoding/json, also in fields it does not know:
// a malformed record goes to the dead-letter topic, it is not half-read.
func TestUnmarshalStrict(t *testing.T) {
	ok := `{"event_id":"e1","type":"page_view","event_time":"2026-11-22T16:39:58.12Z","received_at":"2026-11-22T16:39:58.12Z","anonymous_id":"a1","properties":{"p":1}`
	var e Event
	if err := Unmarshal([]byte(ok+`}`), &e); err != nil || string(e.Properties) != `{"p":1}` {
		t.Fatalf("valid record: %v %s", err, e.Properties)
	}
	for _, bad := range []string{ok + `,"zz":{""}}`, ok + `,"traits":{"a":}}`, ok, ok + `}x`, `{"event_id":"e1","type":"page_view"}`} {
		if err := Unmarshal([]byte(bad), &e); err == nil {
			t.Errorf("Unmarshal(%s) accepted a malformed or invalid record", bad)
		}
	}
}

// appendCompact writes what encoding/json writes for a json.RawMessage.
func FuzzAppendCompact(f *testing.F) {
	f.Add([]byte(` { "a" : [1, 2, {"b": null}] ,` + "\n\t" + `"c":"<&> \u2028 \u2029 \u00e9 \\\" \u003c"} `))
	f.Add([]byte(`{"k":"` + "\xe2\x80\xa8\xe2\x80\xa9\xe2\x80\xff\xe2" + `"}`))
	f.Add([]byte(`"x"`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return
		}
		want, err := json.Marshal(json.RawMessage(raw))
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendCompact([]byte("prefix"), raw)
		if err != nil || string(got) != "prefix"+string(want) {
			t.Fatalf("appendCompact(%q) = %q, %v; encoding/json %q", raw, got, err, want)
		}
	})
}

// SizeHint is never under the size of an event without escapes to write.
func TestSizeHint(t *testing.T) {
	for _, e := range sampleEvents() {
		b, err := Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		if h := SizeHint(&e); h < len(b)-64 || h > len(b)+256 {
			t.Errorf("SizeHint = %d for %d bytes: %s", h, len(b), b)
		}
	}
}
