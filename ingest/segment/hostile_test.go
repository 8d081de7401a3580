package segment

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/jsonx"

	"github.com/leadstream/leadstream/event"
)

// A number no float64 holds is refused wherever it is, naming the field: a
// single call with a 400, a batch message alone, a batch context with its
// batch.
func TestNonFiniteNumbers(t *testing.T) {
	r := &Request{WriteKeyID: "wk", ReceivedAt: time.Date(2026, 11, 22, 16, 40, 0, 0, time.UTC), Server: true}
	f := func(call, body, want string) {
		t.Helper()
		_, _, err := events(t, body, call, r)
		if err == nil || err.Error() != want {
			t.Errorf("%s %s: %v, want %q", call, body, err, want)
		}
	}
	const nf = ": the number %s is not finite as a 64-bit float (beyond ±1.8e308)"
	msg := func(field, num string) string { return field + strings.Replace(nf, "%s", num, 1) }
	f("identify", `{"userId":"x","traits":{"n":1e400}}`, msg("identify.traits.n", "1e400"))
	f("track", `{"userId":"x","event":"e","properties":{"a":[1,{"b c":-2E+999}]}}`, msg(`track.properties.a[1]["b c"]`, "-2E+999"))
	f("page", `{"anonymousId":"a","context":{"screen":{"width":`+strings.Repeat("9", 400)+`}}}`, msg("page.context.screen.width", strings.Repeat("9", 37)+"..."))
	f("track", `{"userId":"x","event":"e","integrations":{"x":1e309}}`, msg("track.integrations.x", "1e309"))
	f("track", `{"userId":"x","event":"e","unknown":{"x":1e309}}`, msg("track.unknown.x", "1e309"))
	f("track", `{"userId":"x","event":"Deal Won","properties":{"revenue":1e400}}`, msg("track.properties.revenue", "1e400"))
	f("batch", `{"batch":[{"type":"track","userId":"x","event":"e"}],"context":{"n":1e400}}`, msg("context.n", "1e400"))
	// What fits is kept as it was sent.
	evs, _, err := events(t, `{"userId":"x","traits":{"max":1.7976931348623157e308,"tiny":1e-400,"big":1e308}}`, "identify", r)
	if err != nil || string(evs[0].Traits) != `{"max":1.7976931348623157e308,"tiny":1e-400,"big":1e308}` {
		t.Errorf("finite numbers: %v %v", evs, err)
	}
	// In a batch the message alone is refused.
	evs, rejected, err := events(t, `{"batch":[{"type":"identify","userId":"x","messageId":"m1","traits":{"n":1e400}},{"type":"track","userId":"x","event":"e","messageId":"m2"}]}`, "batch", r)
	if err != nil || len(evs) != 1 || evs[0].ID != "m2" ||
		!reflect.DeepEqual(rejected, []Rejected{{Index: 0, MessageID: "m1", Error: msg("batch[0].traits.n", "1e400")}}) {
		t.Errorf("batch: %v %+v %v", evs, rejected, err)
	}
}

// nonFinite finds what encoding/json refuses, and the path the reference
// (encoding/json's tokenizer) finds.
func FuzzNonFinite(f *testing.F) {
	f.Add([]byte(`{"a":[1,{"b":2e999}],"c":"1e400"}`))
	f.Add([]byte(`[[],[1e400]]`))
	f.Add([]byte(`{"\u00e9 x":{"y\"z":[0,-1e999]}}`))
	f.Add([]byte(`{"` + strings.Repeat("k", 70) + `":1e400}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		valid, large := jsonx.Check(b)
		if !valid {
			return
		}
		path, num, found := nonFinite(b)
		var v any
		err := json.Unmarshal(b, &v)
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) != found || found && te.Value != "number "+num {
			t.Fatalf("nonFinite(%q) = %q %q %v; encoding/json: %v", b, path, num, found, err)
		}
		if found && !large {
			t.Fatalf("nonFinite(%q) found %q that jsonx.Check did not flag", b, num)
		}
		rp, rn, rf := refNonFinite(b)
		if rp != path || rn != num || rf != found {
			t.Fatalf("nonFinite(%q) = %q %q %v, reference %q %q %v", b, path, num, found, rp, rn, rf)
		}
	})
}

// A browser key may not send revenue, email engagement, aliases nor old
// events; a server key may. Each is refused alone, with the reason.
func TestBrowserScope(t *testing.T) {
	received := time.Date(2026, 11, 22, 16, 40, 0, 0, time.UTC)
	browser := &Request{WriteKeyID: "wk", ReceivedAt: received, MaxEventAge: 24 * time.Hour}
	server := *browser
	server.Server = true
	body := `{"batch":[
		{"type":"track","userId":"u","event":"Deal Won","messageId":"m0","properties":{"revenue":100}},
		{"type":"track","userId":"u","event":"Email Opened","messageId":"m1"},
		{"type":"track","userId":"u","event":"Email Link Clicked","messageId":"m2"},
		{"type":"alias","userId":"u","previousId":"a","messageId":"m3"},
		{"type":"track","userId":"u","event":"e","messageId":"m4","timestamp":"2026-11-21T16:39:58Z"},
		{"type":"track","userId":"u","event":"e","messageId":"m5","originalTimestamp":"2026-11-19T16:39:59Z","sentAt":"2026-11-22T16:39:59Z"},
		{"type":"track","userId":"u","event":"e","messageId":"m6","timestamp":"2026-11-21T16:40:00Z"},
		{"type":"track","userId":"u","event":"e","messageId":"m7","timestamp":"2020-11-21T16:40:00Z","sentAt":"2020-11-21T16:40:01Z"},
		{"type":"identify","userId":"u","anonymousId":"a","messageId":"m8"}]}`
	evs, rejected, err := events(t, body, "batch", browser)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.ID)
	}
	// m6 is exactly a day old; m7's clock is 6 years behind, but it was
	// sent a second after it happened.
	if !reflect.DeepEqual(ids, []string{"m6", "m7", "m8"}) {
		t.Errorf("browser key: accepted %v", ids)
	}
	want := []string{
		`batch[0].event: "Deal Won" needs a server write key (revenue cannot come from a public key)`,
		`batch[1].event: "Email Opened" needs a server write key: email opens and clicks from browsers come only through the signed pixel and links`,
		`batch[2].event: "Email Link Clicked" needs a server write key: email opens and clicks from browsers come only through the signed pixel and links`,
		`batch[3].type: alias needs a server write key`,
		`batch[4].timestamp: puts the event 24h0m2s before its receipt (after the clock-skew correction), over collector.max-event-age (24h0m0s) for a browser write key; older events need a server write key`,
		`batch[5].originalTimestamp: puts the event 72h0m0s before its receipt (after the clock-skew correction), over collector.max-event-age (24h0m0s) for a browser write key; older events need a server write key`,
	}
	if len(rejected) != len(want) {
		t.Fatalf("rejected %+v", rejected)
	}
	for i, rj := range rejected {
		if rj.Error != want[i] || rj.Index != i {
			t.Errorf("rejected[%d] = %+v, want %q", i, rj, want[i])
		}
	}
	// A single call: the error says it is a matter of scope.
	_, _, err = events(t, `{"userId":"u","previousId":"a"}`, "alias", browser)
	var se *Error
	if !errors.As(err, &se) || !se.Scope || se.Error() != "alias.type: alias needs a server write key" {
		t.Errorf("alias from a browser key: %v", err)
	}
	// A server key sends all of it.
	if evs, rejected, err := events(t, body, "batch", &server); err != nil || len(rejected) != 0 || len(evs) != 9 {
		t.Errorf("server key: %d events, rejected %+v, %v", len(evs), rejected, err)
	}
	// MaxEventAge 0: no bound.
	open := *browser
	open.MaxEventAge = 0
	if _, rejected, _ := events(t, body, "batch", &open); len(rejected) != 4 {
		t.Errorf("no max age: rejected %+v", rejected)
	}
}

// The address kept is cut to its network; a context.ip too, in the stored context.
func TestAnonymizeIP(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.7": "198.51.100.0", "198.51.100.7:4431": "198.51.100.0", "::ffff:198.51.100.7": "198.51.100.0",
		"2001:db8:1:2::7": "2001:db8:1::", "[2001:db8:1:2::7]:443": "2001:db8:1::", "2001:db8:abcd:ffff:ffff::1": "2001:db8:abcd::",
		"::1": "::", "fe80::1%eth0": "", "not an ip": "", "": "", "1.2.3": "",
	} {
		if got := AnonymizeIP(in); got != want {
			t.Errorf("AnonymizeIP(%q) = %q, want %q", in, got, want)
		}
		if got := refAnonymize(in); got != want {
			t.Errorf("reference(%q) = %q, want %q", in, got, want)
		}
	}
	r := &Request{WriteKeyID: "wk", ReceivedAt: time.Now().UTC(), IP: "203.0.113.77", AnonymizeIP: true, Server: true}
	f := func(body, ip, ctx string) {
		t.Helper()
		evs, _, err := events(t, body, "track", r)
		if err != nil {
			t.Fatal(err)
		}
		if evs[0].IP != ip || string(evs[0].Context) != ctx {
			t.Errorf("%s: ip %q context %s, want %q %s", body, evs[0].IP, evs[0].Context, ip, ctx)
		}
	}
	f(`{"userId":"u","event":"e"}`, "203.0.113.0", "")
	f(`{"userId":"u","event":"e","context":{"ip":"198.51.100.7","locale":"de"}}`, "198.51.100.0", `{"locale":"de","ip":"198.51.100.0"}`)
	f(`{"userId":"u","event":"e","context":{"ip":"2001:db8:1:2::7"}}`, "2001:db8:1::", `{"ip":"2001:db8:1::"}`)
	f(`{"userId":"u","event":"e","context":{"IP":"x","ip":"198.51.100.7","library":{}}}`, "198.51.100.0", `{"library":{},"ip":"198.51.100.0"}`)
	f(`{"userId":"u","event":"e","context":{"ip":"garbage"}}`, "", "")
	// The decoder reads the last key of any case: an empty one after the
	// address must not leave the address in the stored context.
	f(`{"userId":"u","event":"e","context":{"ip":"198.51.100.7","IP":"","locale":"de"}}`, "203.0.113.0", `{"locale":"de"}`)
	f(`{"userId":"u","event":"e","context":{"\u0069p":"198.51.100.7","Ip":"","locale":"de"}}`, "203.0.113.0", `{"locale":"de"}`)
	f(`{"userId":"u","event":"e","context":{"locale":"de","zip":"10115"}}`, "203.0.113.0", `{"locale":"de","zip":"10115"}`)
	browser := *r
	browser.Browser = true
	evs, _, err := events(t, `{"userId":"u","event":"e","context":{"ip":"198.51.100.7"}}`, "track", &browser)
	if err != nil || evs[0].IP != "203.0.113.0" || string(evs[0].Context) != `{"ip":"198.51.100.0"}` {
		t.Errorf("browser: %+v %v", evs, err)
	}
}

// An event whose stored record would grow far past what was sent (a URL of
// '<', escaped six bytes each and repeated in url, utm_campaign, campaign and
// the context) is refused naming the limit; a large event of ordinary text
// is not.
func TestStoredSizeBounded(t *testing.T) {
	r := &Request{WriteKeyID: "wk", ReceivedAt: time.Now().UTC(), IP: "203.0.113.77", Server: true}
	url := "https://a.example/?utm_campaign=" + strings.Repeat("<", 30000)
	_, _, err := events(t, `{"userId":"u","name":"p","context":{"page":{"url":"`+url+`"}}}`, "page", r)
	var se *Error
	if !errors.As(err, &se) || se.Limit != LimitEventSize || !strings.Contains(err.Error(), "bytes once stored") {
		t.Fatalf("escaped URL: %v, want a refusal naming the stored size", err)
	}
	plain := "https://a.example/?utm_campaign=" + strings.Repeat("x", 30000)
	evs, _, err := events(t, `{"userId":"u","name":"p","context":{"page":{"url":"`+plain+`"}}}`, "page", r)
	if err != nil || len(evs) != 1 {
		t.Fatalf("plain URL: %v", err)
	}
	if n := event.EncodedSize(evs[0]); n <= 30000 || n > MaxRecordBytes {
		t.Fatalf("plain URL stored in %d bytes", n)
	}
	// Numeric ids are held to 256 characters like string ones.
	if _, _, err := events(t, `{"userId":`+strings.Repeat("1", 300)+`,"event":"e"}`, "track", r); err == nil || !strings.Contains(err.Error(), "userId: is longer than 256 characters") {
		t.Fatalf("300-digit userId: %v", err)
	}
}
