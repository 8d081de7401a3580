package segment

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/jsonx"
)

func TestDecodeMessage(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	r := &Request{WriteKeyID: "wk_1", ReceivedAt: now, IP: "192.0.2.1", UserAgent: "ua-header", Server: true}
	f := func(forceType, body string, check func(e *event.Event) bool) {
		t.Helper()
		e, err := decodeAndMap([]byte(body), false, single("m"), forceType, r, nil)
		if err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("decode %s: invalid event: %v", body, err)
		}
		if !check(e) {
			t.Fatalf("decode %s: unexpected %+v", body, e)
		}
	}
	f("", `{"type":"page","anonymousId":"a1","messageId":"m1","properties":{"url":"https://x.example/pricing?utm_source=g&utm_campaign=c1","title":"Pricing"}}`, func(e *event.Event) bool {
		return e.Type == event.PageView && e.Path == "/pricing" && e.UTMSource == "g" && e.Campaign == "c1" && e.Title == "Pricing" && e.ID == "m1" && e.EventTime.Equal(now)
	})
	f("track", `{"userId":"u1","event":"Email Opened"}`, func(e *event.Event) bool { return e.Type == event.EmailOpen && e.Track == "Email Opened" })
	f("track", `{"userId":"u1","event":"Email Link Clicked"}`, func(e *event.Event) bool { return e.Type == event.EmailClick })
	f("track", `{"userId":"u1","event":"Form Submitted"}`, func(e *event.Event) bool { return e.Type == event.FormSubmit })
	f("track", `{"userId":"u1","event":"Deal Won","properties":{"revenue":1234.5,"currency":"eur"}}`, func(e *event.Event) bool {
		return e.Type == event.DealWon && e.Revenue == 1234.5 && e.Currency == "EUR"
	})
	f("track", `{"userId":"u1","event":"Webinar Attended"}`, func(e *event.Event) bool { return e.Type == event.Custom && e.Track == "Webinar Attended" })
	f("identify", `{"userId":"u1","anonymousId":"a1","traits":{"title":"CTO"}}`, func(e *event.Event) bool {
		return e.Type == event.Identify && string(e.Traits) == `{"title":"CTO"}` && e.AnonymousID == "a1"
	})
	f("alias", `{"userId":"u1","previousId":"a1"}`, func(e *event.Event) bool { return e.Type == event.Alias && e.PreviousID == "a1" })
	f("track", `{"userId":42,"event":"x"}`, func(e *event.Event) bool { return e.LeadID == "42" })
	// A server SDK's relayed context wins over the request's; the request fills gaps.
	f("track", `{"userId":"u1","event":"x","context":{"ip":"198.51.100.7"}}`, func(e *event.Event) bool { return e.IP == "198.51.100.7" && e.UserAgent == "ua-header" })
	// Explicit timestamps without sentAt are kept; times far in the future are clamped to receipt.
	f("track", `{"userId":"u1","event":"x","timestamp":"2026-10-31T10:00:00.123Z"}`, func(e *event.Event) bool {
		return e.EventTime.Equal(time.Date(2026, 10, 31, 10, 0, 0, 123e6, time.UTC)) && e.OriginalTimestamp.Equal(e.EventTime)
	})
	f("track", `{"userId":"u1","event":"x","timestamp":"2030-01-01T00:00:00Z"}`, func(e *event.Event) bool {
		return e.EventTime.Equal(now) && e.OriginalTimestamp.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	})
	// originalTimestamp is corrected by the client's clock skew (receivedAt - sentAt).
	f("track", `{"userId":"u1","event":"x","originalTimestamp":"2026-11-01T11:00:00Z","sentAt":"2026-11-01T11:00:10Z"}`, func(e *event.Event) bool {
		return e.EventTime.Equal(now.Add(-10*time.Second)) && e.OriginalTimestamp.Equal(time.Date(2026, 11, 1, 11, 0, 0, 0, time.UTC))
	})
	// Without a messageId the id is derived from the content, so a retried body dedups.
	f("track", `{"userId":"u1","event":"x"}`, func(e *event.Event) bool { return strings.HasPrefix(e.ID, "gen-") })
	// The whole context and integrations are kept; empty ones are dropped.
	f("track", `{"userId":"u1","event":"x","context":{"library":{"name":"analytics-go"},"locale":"ja-JP"},"integrations":{"All":false}}`, func(e *event.Event) bool {
		return string(e.Context) == `{"library":{"name":"analytics-go"},"locale":"ja-JP"}` && string(e.Integrations) == `{"All":false}`
	})
	f("track", `{"userId":"u1","event":"x","context":{},"integrations":{}}`, func(e *event.Event) bool { return e.Context == nil && e.Integrations == nil })
}

func TestDecodeMessageErrors(t *testing.T) {
	r := &Request{WriteKeyID: "wk_1", ReceivedAt: time.Now(), Server: true}
	f := func(forceType, body, want string) {
		t.Helper()
		_, large := jsonx.Check([]byte(body)) // false for invalid JSON, which the decoder refuses
		_, err := decodeAndMap([]byte(body), large, single("m"), forceType, r, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("decode %s = %v, want error containing %q", body, err, want)
		}
	}
	f("", `{"userId":"u"}`, "m.type: is required")
	f("", `{"type":"bogus","userId":"u"}`, `unknown type "bogus"`)
	f("page", `{"type":"track","userId":"u"}`, "endpoint is /v1/page")
	f("track", `{"event":"x"}`, "userId or anonymousId is required")
	f("track", `{"userId":"u"}`, "m.event: is required for track")
	f("track", `{"userId":true,"event":"x"}`, "m.userId: must be a string or a number")
	f("track", `{"userId":"u","event":"x","properties":"s"}`, "m.properties: must be a JSON object")
	f("identify", `{"userId":"u","traits":[1]}`, "m.traits: must be a JSON object")
	f("track", `{"userId":"u","event":"x","context":"s"}`, "m.context: must be a JSON object")
	f("track", `{"userId":"u","event":"x","integrations":true}`, "m.integrations: must be a JSON object")
	f("track", `{"userId":"u","event":"x","context":{"ip":5}}`, "m: malformed JSON")
	f("track", `{"userId":"u","event":"x","timestamp":"yesterday"}`, "m.timestamp: not an ISO-8601 time")
	f("track", `{"userId":"u","event":"x","timestamp":"1969-12-31T23:59:59Z"}`, "m.timestamp: \"1969-12-31T23:59:59Z\" is not between 1970 and 2106")
	f("track", `{"userId":"u","event":"x","timestamp":"2026-01-01T00:00:00Z","sentAt":"soon"}`, `m.sentAt: not an ISO-8601 time: "soon"`)
	f("track", `{"userId":"u","event":"x","timestamp":"1999-01-01T00:00:00Z"}`, "before the year 2000")
	f("track", `{"userId":"u","event":"Deal Won","properties":{"revenue":"lots"}}`, "revenue: must be a number")
	f("alias", `{"userId":"u"}`, "alias needs both userId and previousId")
	f("track", `{"userId":"u",`, "malformed JSON")
	f("identify", `{"userId":"x","traits":{"n":1e400}}`, "m.traits.n: the number 1e400 is not finite as a 64-bit float")
	f("track", `{"userId":"u","event":"x","properties":{"p":"`+strings.Repeat("x", MaxEventBytes)+`"}}`, "over the limit of 32 KB")
}

// Segment's clock-skew rule and its bounds (see eventTime).
func TestEventTime(t *testing.T) {
	received := time.Date(2026, 11, 22, 16, 40, 0, 0, time.UTC)
	f := func(ts, sentAt string, want time.Time) {
		t.Helper()
		m := &message{Timestamp: ts}
		got, orig, err := eventTime(m, sentAt, true, received, single("m"))
		if err != nil {
			t.Fatalf("eventTime(%q, %q): %v", ts, sentAt, err)
		}
		if !got.Equal(want) {
			t.Errorf("eventTime(%q, %q) = %v, want %v", ts, sentAt, got, want)
		}
		if tsTime, _ := time.Parse(time.RFC3339Nano, ts); ts != "" && !orig.Equal(tsTime) {
			t.Errorf("eventTime(%q, %q): original %v, want the client's %v", ts, sentAt, orig, tsTime)
		}
	}
	// A clock an hour ahead: the event happened 2 s before it was sent,
	// which was (by our clock) 0.5 s ago: 2.5 s before receipt.
	f("2026-11-22T17:39:58.000Z", "2026-11-22T17:40:00.000Z", received.Add(-2*time.Second))
	// An hour behind, and 30 years behind (a phone whose clock was reset).
	f("2026-11-22T15:39:58.000Z", "2026-11-22T15:40:00.000Z", received.Add(-2*time.Second))
	f("1996-11-22T16:39:58.000Z", "1996-11-22T16:40:00.000Z", received.Add(-2*time.Second))
	// A backdated import by a server SDK with a good clock: kept.
	f("2026-01-01T00:00:00.000Z", "2026-11-22T16:40:00.000Z", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	// Sent before it happened: taken as happening when received, never later.
	f("2026-11-22T16:45:00.000Z", "2026-11-22T16:40:00.000Z", received)
	f("2026-11-22T16:39:58.000Z", "1970-01-01T00:00:00.000Z", received)
	// No sentAt: the client's time as it is, up to 5 minutes ahead.
	f("2026-11-22T16:44:00.000Z", "", received.Add(4*time.Minute))
	f("2026-11-22T16:46:00.000Z", "", received)
	f("", "2026-11-22T17:40:00.000Z", received)
	// A sentAt far in the future makes the event older than 2000: refused.
	if _, _, err := eventTime(&message{Timestamp: "2026-11-22T16:39:58Z"}, "9999-01-01T00:00:00Z", true, received, single("m")); err == nil || !strings.Contains(err.Error(), "before the year 2000") {
		t.Errorf("sentAt in year 9999: %v", err)
	}
}

func TestCall(t *testing.T) {
	for name, want := range map[string]string{"t": "track", "track": "track", "p": "page", "page": "page", "s": "screen", "screen": "screen",
		"i": "identify", "identify": "identify", "g": "group", "group": "group", "a": "alias", "alias": "alias", "b": "batch", "batch": "batch", "import": "batch"} {
		if got, ok := Call(name); !ok || got != want {
			t.Errorf("Call(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
	for _, name := range []string{"", "x", "m", "leads", "projects", "Track", "tracks"} {
		if got, ok := Call(name); ok {
			t.Errorf("Call(%q) = %q, want no call", name, got)
		}
	}
}

// events parses body for call and maps it for r.
func events(t *testing.T, body, call string, r *Request) ([]*event.Event, []Rejected, error) {
	t.Helper()
	b, err := Parse([]byte(body), call)
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(b.Release)
	return b.Events(r)
}

// A batch's messages are judged one by one.
func TestBatchRejectsMessagesAlone(t *testing.T) {
	r := &Request{WriteKeyID: "wk", ReceivedAt: time.Date(2026, 11, 22, 16, 40, 0, 0, time.UTC), IP: "192.0.2.1"}
	big := `{"type":"track","userId":"u","event":"big","messageId":"m-big","properties":{"p":"` + strings.Repeat("x", MaxEventBytes) + `"}}`
	evs, rejected, err := events(t, `{"batch":[
		{"type":"track","userId":"u","event":"ok-1","messageId":"m-1"},
		{"type":"track","userId":"u","messageId":"m-no-event"},
		`+big+`,
		5,
		{"type":"page","anonymousId":"a","messageId":{"x":1},"context":"nope"},
		{"type":"identify","userId":"u","messageId":"m-3","traits":{"title":"CTO"}}]}`, "batch", r)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.ID)
	}
	if !reflect.DeepEqual(ids, []string{"m-1", "m-3"}) {
		t.Errorf("accepted %v, want m-1 and m-3", ids)
	}
	want := []Rejected{
		{Index: 1, MessageID: "m-no-event", Error: "batch[1].event: is required for track"},
		{Index: 2, MessageID: "m-big", Error: fmt.Sprintf("batch[2]: event is %d bytes, over the limit of 32 KB (32768 bytes) per event", len(big)), Limit: LimitEventSize},
		{Index: 3, Error: "batch[3]: malformed JSON: json: cannot unmarshal number into Go value of type segment.message"},
		{Index: 4, Error: "batch[4]: malformed JSON: json: cannot unmarshal object into Go struct field message.messageId of type string"},
	}
	if !reflect.DeepEqual(rejected, want) {
		t.Errorf("rejected:\n got %+v\nwant %+v", rejected, want)
	}

	// No valid message: the batch is refused, with every message's reason.
	_, rejected, err = events(t, `{"batch":[{"type":"track","userId":"u"},`+big+`]}`, "batch", r)
	if err == nil || err.Error() != "batch: none of its 2 messages is valid (see rejected)" || len(rejected) != 2 {
		t.Fatalf("all invalid: %v, %+v", err, rejected)
	}
	var se *Error
	if !errors.As(err, &se) || se.Limit != "" {
		t.Errorf("mixed reasons: limit %q, want none", se.Limit)
	}
	_, _, err = events(t, `{"batch":[`+big+`,`+big+`]}`, "batch", r)
	if !errors.As(err, &se) || se.Limit != LimitEventSize {
		t.Errorf("all over the event limit: %v, want limit %s", err, LimitEventSize)
	}
	// An empty batch refuses nothing.
	if evs, rejected, err := events(t, `{"batch":[]}`, "batch", r); err != nil || len(evs) != 0 || len(rejected) != 0 {
		t.Errorf("empty batch: %v %v %v", evs, rejected, err)
	}
}

// The batch's context is merged into each message, the message's own fields
// winning, and its sentAt corrects every message's clock.
func TestBatchContext(t *testing.T) {
	r := &Request{WriteKeyID: "wk", ReceivedAt: time.Date(2026, 11, 22, 16, 40, 0, 0, time.UTC), IP: "192.0.2.1", UserAgent: "analytics-go (version: 3.3.0)"}
	evs, rejected, err := events(t, `{"batch":[
		{"type":"track","userId":"u","event":"a","messageId":"1","timestamp":"2026-11-22T17:39:50Z"},
		{"type":"track","userId":"u","event":"b","messageId":"2","timestamp":"2026-11-22T17:39:55Z","context":{"ip":"198.51.100.7","campaign":{"name":"own"}}},
		{"type":"track","userId":"u","event":"c","messageId":"3","timestamp":"2026-11-22T17:39:58Z","sentAt":"2026-11-22T16:39:59Z"}],
		"context":{"library":{"name":"analytics-go","version":"3.3.0"},"ip":"203.0.113.9","campaign":{"name":"batch-camp","source":"crm"}},
		"sentAt":"2026-11-22T17:40:00Z","messageId":"batch-1"}`, "batch", r)
	if err != nil || len(rejected) != 0 || len(evs) != 3 {
		t.Fatalf("%v %+v %v", evs, rejected, err)
	}
	check := func(e *event.Event, ctx, ip, campaign, source string, at time.Time) {
		t.Helper()
		if string(e.Context) != ctx || e.IP != ip || e.Campaign != campaign || e.UTMCampaign != campaign || e.UTMSource != source || !e.EventTime.Equal(at) {
			t.Errorf("event %s: context %s, ip %s, campaign %s/%s, source %s, time %v\nwant %s, %s, %s, %s, %v", e.ID, e.Context, e.IP, e.Campaign, e.UTMCampaign, e.UTMSource, e.EventTime,
				ctx, ip, campaign, source, at)
		}
	}
	check(evs[0], `{"library":{"name":"analytics-go","version":"3.3.0"},"ip":"203.0.113.9","campaign":{"name":"batch-camp","source":"crm"}}`,
		"203.0.113.9", "batch-camp", "crm", r.ReceivedAt.Add(-10*time.Second))
	check(evs[1], `{"library":{"name":"analytics-go","version":"3.3.0"},"ip":"198.51.100.7","campaign":{"name":"own"}}`,
		"198.51.100.7", "own", "", r.ReceivedAt.Add(-5*time.Second))
	// Its own sentAt wins over the batch's: its clock was right.
	check(evs[2], `{"library":{"name":"analytics-go","version":"3.3.0"},"ip":"203.0.113.9","campaign":{"name":"batch-camp","source":"crm"}}`,
		"203.0.113.9", "batch-camp", "crm", r.ReceivedAt)

	// A context over the event limit, or not an object, refuses the batch.
	for body, want := range map[string]string{
		`{"batch":[],"context":{"x":"` + strings.Repeat("x", MaxEventBytes) + `"}}`: "context: the batch's context is 32776 bytes",
		`{"batch":[],"context":[1]}`:            "context: must be a JSON object",
		`{"batch":[],"context":{"page":"url"}}`: "context: malformed JSON",
	} {
		if _, err := Parse([]byte(body), "batch"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.60s…: %v, want %q", body, err, want)
		}
	}
	// What the merges add to a batch is bounded like the batch itself: a
	// large context in a batch of many small messages refuses the request.
	ctx := `"context":{"pad":"` + strings.Repeat("z", 20_000) + `"}`
	small := func(n int) string {
		return strings.TrimSuffix(strings.Repeat(`{"type":"track","userId":"u","event":"e"},`, n), ",")
	}
	_, _, err = events(t, `{"batch":[`+small(30)+`],`+ctx+`}`, "batch", r)
	var se *Error
	if !errors.As(err, &se) || se.Limit != LimitBatchSize || !strings.Contains(err.Error(), "context merged into its messages") {
		t.Errorf("30 messages × a 20 KB context: %v", err)
	}
	if evs, _, err := events(t, `{"batch":[`+small(20)+`],`+ctx+`}`, "batch", r); err != nil || len(evs) != 20 {
		t.Errorf("a few messages with a 20 KB context: %d events, %v", len(evs), err)
	}
	// A message whose size with the batch's context is over the limit is refused alone.
	msg := `{"type":"track","userId":"u","event":"e","properties":{"p":"` + strings.Repeat("x", MaxEventBytes-100) + `"}}`
	_, rejected, _ = events(t, `{"batch":[`+msg+`,{"type":"track","userId":"u","event":"e"}],"context":{"pad":"`+strings.Repeat("y", 200)+`"}}`, "batch", r)
	if len(rejected) != 1 || rejected[0].Limit != LimitEventSize || !strings.Contains(rejected[0].Error, "with its batch's context") {
		t.Errorf("message over the limit with the batch context: %+v", rejected)
	}
}

// The campaign of a call without a page: context.campaign.name, for every type.
func TestCampaignWithoutURL(t *testing.T) {
	r := &Request{WriteKeyID: "wk", ReceivedAt: time.Now().UTC(), Server: true} // an ESP relaying its clicks
	for _, call := range []string{"track", "identify", "page", "group"} {
		body := `{"userId":"u","event":"Email Link Clicked","groupId":"g","context":{"campaign":{"name":"spring","source":"esp","medium":"email"}}}`
		evs, _, err := events(t, body, call, r)
		if err != nil {
			t.Fatal(err)
		}
		if e := evs[0]; e.Campaign != "spring" || e.UTMCampaign != "spring" || e.UTMMedium != "email" || e.URL != "" {
			t.Errorf("%s: campaign %q, utm_campaign %q, medium %q, url %q", call, e.Campaign, e.UTMCampaign, e.UTMMedium, e.URL)
		}
	}
}

// A browser's connection address wins over its page's context.ip; a server
// SDK relays its visitor's.
func TestClientIP(t *testing.T) {
	body := `{"userId":"u","event":"e","context":{"ip":"203.0.113.9"}}`
	for _, c := range []struct {
		browser bool
		want    string
	}{{true, "192.0.2.1"}, {false, "203.0.113.9"}} {
		evs, _, err := events(t, body, "track", &Request{WriteKeyID: "wk", ReceivedAt: time.Now().UTC(), IP: "192.0.2.1", Browser: c.browser})
		if err != nil {
			t.Fatal(err)
		}
		if evs[0].IP != c.want {
			t.Errorf("browser %v: ip %q, want %q", c.browser, evs[0].IP, c.want)
		}
		if string(evs[0].Context) != `{"ip":"203.0.113.9"}` {
			t.Errorf("browser %v: context %s, want it as sent", c.browser, evs[0].Context)
		}
	}
}

// Parse refuses what no call can come from, before any key is checked.
func TestParseErrors(t *testing.T) {
	f := func(body, call, want string, limit Limit) {
		t.Helper()
		_, err := Parse([]byte(body), call)
		var se *Error
		if !errors.As(err, &se) || !strings.Contains(err.Error(), want) || se.Limit != limit {
			t.Errorf("Parse(%.40q, %s) = %v, want %q (limit %q)", body, call, err, want, limit)
		}
	}
	f(`{"batch":[}`, "batch", "malformed JSON: invalid character", "")
	f(`{"batch":5}`, "batch", "malformed JSON: json: cannot unmarshal number", "")
	f(`{"writeKey":"k"}`, "batch", `batch: a "batch" array is required`, "")
	f(`{"userId":"u","event":"e","writeKey":5}`, "track", "malformed JSON: json: cannot unmarshal number", "")
	f(`{"userId":"u","event":"`+strings.Repeat("x", MaxEventBytes)+`"}`, "track", "body: event is", LimitEventSize)
	// A single call that decodes, or whose key still reads, is left to Events.
	b, err := Parse([]byte(`{"userId":"u","event":5,"writeKey":"k"}`), "track")
	if err != nil || b.WriteKey != "k" {
		t.Fatalf("Parse = %v, %v", b, err)
	}
	if _, _, err := b.Events(&Request{ReceivedAt: time.Now()}); err == nil || !strings.HasPrefix(err.Error(), "track: malformed JSON") {
		t.Errorf("Events = %v", err)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"type":"page","anonymousId":"a1","properties":{"url":"https://x.example/p?utm_source=g"}}`))
	f.Add([]byte(`{"type":"track","userId":"u","event":"Deal Won","properties":{"revenue":1}}`))
	f.Add([]byte(`{"type":"identify","userId":1,"traits":{"a":[1,{"b":null}]},"context":{"page":{"url":"%zz"}}}`))
	f.Add([]byte(`{"type":"alias","userId":"u","previousId":"a"}`))
	r := &Request{WriteKeyID: "wk", ReceivedAt: time.Now()}
	bc := new(batchContext)
	if err := bc.init(json.RawMessage(`{"library":{"name":"x"},"page":{"url":"https://x.example/?utm_campaign=c"}}`), "2026-01-01T00:00:00Z"); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !jsonx.Valid(b) {
			return // Parse refuses it before decoding
		}
		for _, bc := range []*batchContext{nil, bc} {
			e, err := decodeAndMap(b, true, single("m"), "", r, bc)
			if err != nil {
				continue
			}
			// Whatever is accepted must be a valid canonical event: the collector panics otherwise.
			if verr := e.Validate(); verr != nil {
				t.Fatalf("accepted %q as an invalid event: %v", b, verr)
			}
			// The fast decoder must be as strict as encoding/json: the encoder
			// copies the objects without validating them again.
			if !json.Valid(b) {
				t.Fatalf("accepted invalid JSON %q", b)
			}
			for _, raw := range [][]byte{e.Properties, e.Traits, e.Context, e.Integrations} {
				if len(raw) > 0 && !json.Valid(raw) {
					t.Fatalf("accepted invalid JSON %q inside %q", raw, b)
				}
			}
			out, err := event.Marshal(e)
			if err != nil || !json.Valid(out) {
				t.Fatalf("accepted %q but encoded it as %q (%v)", b, out, err)
			}
		}
	})
}

// A message whose own context has many keys (more than merge keeps in its
// small list) merges the same way: the batch's members it lacks, then its
// own, which win.
func TestBatchContextManyKeys(t *testing.T) {
	bc := &batchContext{}
	var batchKeys, ownKeys []string
	for i := range 40 {
		batchKeys = append(batchKeys, fmt.Sprintf(`"k%d":"batch"`, i))
	}
	for i := 30; i < 60; i++ {
		ownKeys = append(ownKeys, fmt.Sprintf(`"k%d":"own"`, i))
	}
	if err := bc.init([]byte("{"+strings.Join(batchKeys, ",")+"}"), ""); err != nil {
		t.Fatal(err)
	}
	merged := bc.merge([]byte("{" + strings.Join(ownKeys, ",") + "}"))
	var got map[string]string
	if err := json.Unmarshal(merged, &got); err != nil {
		t.Fatalf("merged context %s: %v", merged, err)
	}
	if len(got) != 60 || strings.Count(string(merged), `"k`) != 60 {
		t.Fatalf("merged %d keys (%s), want 60, each once", len(got), merged)
	}
	for i := range 60 {
		want := "batch"
		if i >= 30 {
			want = "own"
		}
		if v := got[fmt.Sprintf("k%d", i)]; v != want {
			t.Errorf("k%d = %q, want %q", i, v, want)
		}
	}
}

// BenchmarkMergeManyKeys merges a batch context of 3,000 keys into a message
// context of 3,000 other keys (a hostile batch: keys × keys comparisons
// with a list, keys + keys with a set).
func BenchmarkMergeManyKeys(b *testing.B) {
	bc := &batchContext{}
	var bk, ok []string
	for i := range 3000 {
		bk = append(bk, fmt.Sprintf(`"b%d":1`, i))
		ok = append(ok, fmt.Sprintf(`"o%d":1`, i))
	}
	if err := bc.init([]byte("{"+strings.Join(bk, ",")+"}"), ""); err != nil {
		b.Fatal(err)
	}
	own := []byte("{" + strings.Join(ok, ",") + "}")
	for b.Loop() {
		bc.merge(own)
	}
}
