package ingest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
)

func TestDecodeMessage(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	r := &request{writeKeyID: "wk_1", receivedAt: now, ip: "192.0.2.1", userAgent: "ua-header"}
	f := func(forceType, body string, check func(e *event.Event) bool) {
		t.Helper()
		e, err := decodeMessage([]byte(body), "m", forceType, r)
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
	// Client context wins over the request's; the request fills gaps.
	f("track", `{"userId":"u1","event":"x","context":{"ip":"198.51.100.7"}}`, func(e *event.Event) bool { return e.IP == "198.51.100.7" && e.UserAgent == "ua-header" })
	// Explicit timestamps are kept; times far in the future are clamped to receipt.
	f("track", `{"userId":"u1","event":"x","timestamp":"2026-10-31T10:00:00.123Z"}`, func(e *event.Event) bool {
		return e.EventTime.Equal(time.Date(2026, 10, 31, 10, 0, 0, 123e6, time.UTC))
	})
	f("track", `{"userId":"u1","event":"x","timestamp":"2030-01-01T00:00:00Z"}`, func(e *event.Event) bool { return e.EventTime.Equal(now) })
	// originalTimestamp is corrected by the client's clock skew (receivedAt - sentAt).
	f("track", `{"userId":"u1","event":"x","originalTimestamp":"2026-11-01T11:00:00Z","sentAt":"2026-11-01T11:00:10Z"}`, func(e *event.Event) bool {
		return e.EventTime.Equal(now.Add(-10 * time.Second))
	})
	// Without a messageId the id is derived from the content, so a retried body dedups.
	f("track", `{"userId":"u1","event":"x"}`, func(e *event.Event) bool { return strings.HasPrefix(e.ID, "gen-") })
}

func TestDecodeMessageErrors(t *testing.T) {
	r := &request{writeKeyID: "wk_1", receivedAt: time.Now()}
	f := func(forceType, body, want string) {
		t.Helper()
		_, err := decodeMessage([]byte(body), "m", forceType, r)
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
	f("track", `{"userId":"u","event":"x","timestamp":"yesterday"}`, "m.timestamp: not an ISO-8601 time")
	f("track", `{"userId":"u","event":"Deal Won","properties":{"revenue":"lots"}}`, "revenue: must be a number")
	f("alias", `{"userId":"u"}`, "alias needs both userId and previousId")
	f("track", `{"userId":"u",`, "malformed JSON")
	f("track", `{"userId":"u","event":"x","properties":{"p":"`+strings.Repeat("x", MaxEventBytes)+`"}}`, "over the limit of 32 KB")
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"type":"page","anonymousId":"a1","properties":{"url":"https://x.example/p?utm_source=g"}}`))
	f.Add([]byte(`{"type":"track","userId":"u","event":"Deal Won","properties":{"revenue":1}}`))
	f.Add([]byte(`{"type":"identify","userId":1,"traits":{"a":[1,{"b":null}]},"context":{"page":{"url":"%zz"}}}`))
	f.Add([]byte(`{"type":"alias","userId":"u","previousId":"a"}`))
	r := &request{writeKeyID: "wk", receivedAt: time.Now()}
	f.Fuzz(func(t *testing.T, b []byte) {
		if validJSON(b) != nil {
			return // the handler refuses it before decoding
		}
		e, err := decodeMessage(b, "m", "", r)
		if err != nil {
			return
		}
		// Whatever is accepted must be a valid canonical event: the collector panics otherwise.
		if verr := e.Validate(); verr != nil {
			t.Fatalf("accepted %q as an invalid event: %v", b, verr)
		}
		// The fast decoder must be as strict as encoding/json: the encoder
		// copies properties and traits without validating them again.
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		for _, raw := range [][]byte{e.Properties, e.Traits} {
			if len(raw) > 0 && !json.Valid(raw) {
				t.Fatalf("accepted invalid JSON %q inside %q", raw, b)
			}
		}
		out, err := event.Marshal(e)
		if err != nil || !json.Valid(out) {
			t.Fatalf("accepted %q but encoded it as %q (%v)", b, out, err)
		}
	})
}
