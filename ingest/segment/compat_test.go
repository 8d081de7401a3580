package segment

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Segment's own HTTP API docs date messages "2015-2-02T00:30:12.984Z":
// ISO-8601 dates whose month, day or hour lack their leading zero are
// accepted, and read as their zero-padded form.
func TestParseTimeUnpadded(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"2015-2-02T00:30:12.984Z", "2015-02-02T00:30:12.984Z"},
		{"2015-02-2T00:30:12.984Z", "2015-02-02T00:30:12.984Z"},
		{"2015-2-2T0:30:12Z", "2015-02-02T00:30:12Z"},
		{"2015-12-2T7:30:12.5+01:00", "2015-12-02T06:30:12.5Z"},
		{"2015-2-2T07:30:12+0100", "2015-02-02T06:30:12Z"},
		{"2015-2-2T07:30:12.001", "2015-02-02T07:30:12.001Z"},
		// The usual forms, unchanged.
		{"2026-11-22T16:39:58.120Z", "2026-11-22T16:39:58.12Z"},
		{"2026-11-22T16:39:58+02:00", "2026-11-22T14:39:58Z"},
		{"2026-11-22T16:39:58.1+0200", "2026-11-22T14:39:58.1Z"},
		{"2026-11-22T16:39:58", "2026-11-22T16:39:58Z"},
	} {
		got, err := parseTime(c.in)
		if err != nil {
			t.Errorf("parseTime(%q): %v", c.in, err)
			continue
		}
		if s := got.UTC().Format(time.RFC3339Nano); s != c.want {
			t.Errorf("parseTime(%q) = %s, want %s", c.in, s, c.want)
		}
	}
	for _, bad := range []string{"", "nonsense", "2015-2-02", "15-2-02T00:30:12Z", "2015-13-02T00:30:12Z", "2015-2-32T00:30:12Z",
		"2015-2-02T24:30:12Z", "2015-2-02T00:3:12Z", "2015-002-02T00:30:12Z", "2015-2-02T00:30:12Zjunk"} {
		if got, err := parseTime(bad); err == nil {
			t.Errorf("parseTime(%q) = %v, want an error", bad, got)
		}
	}
}

// BenchmarkParseTime is the common path (an RFC 3339 time, as every SDK
// sends) and Segment's unpadded form.
func BenchmarkParseTime(b *testing.B) {
	for _, s := range []string{"2026-11-22T16:39:58.120Z", "2026-11-22T16:39:58+0200", "2015-2-02T00:30:12.984Z"} {
		b.Run(s, func(b *testing.B) {
			for b.Loop() {
				_, _ = parseTime(s)
			}
		})
	}
}

func batchEvents(t *testing.T, body string) ([]string, map[string]string, map[string]string) {
	t.Helper()
	b, err := Parse([]byte(body), "batch")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	evs, rej, err := b.Events(&Request{WriteKeyID: "k", ReceivedAt: time.Now().UTC().Truncate(time.Millisecond), Server: true})
	if err != nil || len(rej) > 0 {
		t.Fatalf("events: %v %v", rej, err)
	}
	var ids []string
	integ, props := map[string]string{}, map[string]string{}
	for _, e := range evs {
		ids = append(ids, e.ID)
		integ[e.ID], props[e.ID] = string(e.Integrations), string(e.Properties)
	}
	return ids, integ, props
}

// A batch's integrations are merged into each message's like its context:
// the batch's members the message lacks are added, the message's own win.
func TestBatchIntegrationsMerged(t *testing.T) {
	for _, body := range []string{
		// The fast batch split and encoding/json's (a key in another case).
		`{"batch":[%s],"integrations":{"All":false,"Salesforce":true,"Mixpanel":{"x":1}},"context":{"library":{"name":"http"}}}`,
		`{"Batch":[%s],"integrations":{"All":false,"Salesforce":true,"Mixpanel":{"x":1}}}`,
	} {
		body = strings.Replace(body, "%s", `{"type":"track","userId":"u","event":"E","messageId":"m1"},`+
			`{"type":"track","userId":"u","event":"E","messageId":"m2","integrations":{"Salesforce":false,"Amplitude":true}},`+
			`{"type":"track","userId":"u","event":"E","messageId":"m3","integrations":null}`, 1)
		_, integ, _ := batchEvents(t, body)
		want := map[string]string{
			"m1": `{"All":false,"Salesforce":true,"Mixpanel":{"x":1}}`,
			"m2": `{"All":false,"Mixpanel":{"x":1},"Salesforce":false,"Amplitude":true}`,
			"m3": `{"All":false,"Salesforce":true,"Mixpanel":{"x":1}}`,
		}
		for id, w := range want {
			if integ[id] != w {
				t.Errorf("%s: integrations %s, want %s", id, integ[id], w)
			}
		}
	}
	// Absent, null or empty: the messages keep their own.
	for _, bi := range []string{``, `,"integrations":null`, `,"integrations":{}`} {
		_, integ, _ := batchEvents(t, `{"batch":[{"type":"track","userId":"u","event":"E","messageId":"m1","integrations":{"A":true}},{"type":"track","userId":"u","event":"E","messageId":"m2"}]`+bi+`}`)
		if integ["m1"] != `{"A":true}` || integ["m2"] != "" {
			t.Errorf("batch integrations %q: %v", bi, integ)
		}
	}
}

// A batch's integrations are held to the limits of its context: an object,
// 32 KB, and what their merge adds to the 500 KB of the batch.
func TestBatchIntegrationsLimits(t *testing.T) {
	if _, err := Parse([]byte(`{"batch":[],"integrations":[1]}`), "batch"); err == nil || !strings.Contains(err.Error(), "integrations: must be a JSON object") {
		t.Errorf("integrations not an object: %v", err)
	}
	big := `{"batch":[],"integrations":{"x":"` + strings.Repeat("a", MaxEventBytes) + `"}}`
	if _, err := Parse([]byte(big), "batch"); err == nil || err.(*Error).Limit != LimitEventSize {
		t.Errorf("integrations over 32 KB: %v", err)
	}
	// 20 KB merged into 30 small messages: 600 KB added.
	msgs := strings.Repeat(`{"type":"track","userId":"u","event":"E"},`, 30)
	body := `{"batch":[` + strings.TrimSuffix(msgs, ",") + `],"integrations":{"x":"` + strings.Repeat("a", 20<<10) + `"}}`
	b, err := Parse([]byte(body), "batch")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	_, _, err = b.Events(&Request{WriteKeyID: "k", ReceivedAt: time.Now().UTC(), Server: true})
	if se, ok := err.(*Error); !ok || se.Limit != LimitBatchSize || !strings.Contains(err.Error(), "with its integrations") {
		t.Errorf("merges adding 600 KB: %v", err)
	}
	// A message within 32 KB alone, over it with the batch's integrations
	// (and context): refused alone.
	body = `{"batch":[{"type":"track","userId":"u","event":"E","properties":{"p":"` + strings.Repeat("b", 20<<10) + `"}},` +
		`{"type":"track","userId":"u","event":"E","messageId":"ok"}],"integrations":{"x":"` + strings.Repeat("a", 14<<10) + `"}}`
	b2, err := Parse([]byte(body), "batch")
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Release()
	evs, rej, err := b2.Events(&Request{WriteKeyID: "k", ReceivedAt: time.Now().UTC(), Server: true})
	if err != nil || len(evs) != 1 || len(rej) != 1 || rej[0].Index != 0 || rej[0].Limit != LimitEventSize {
		t.Errorf("a message over 32 KB with the batch's integrations: %v %v %v", evs, rej, err)
	}
	// A number no float64 holds in the batch's integrations refuses the batch.
	b3, err := Parse([]byte(`{"batch":[{"type":"track","userId":"u","event":"E"}],"integrations":{"x":1e400}}`), "batch")
	if err != nil {
		t.Fatal(err)
	}
	defer b3.Release()
	if _, _, err := b3.Events(&Request{WriteKeyID: "k", ReceivedAt: time.Now().UTC(), Server: true}); err == nil || !strings.Contains(err.Error(), "integrations.x") {
		t.Errorf("1e400 in the batch's integrations: %v", err)
	}
}

// A page's or screen's category (beside its name, as analytics-kotlin,
// analytics-swift, analytics-android and analytics-node send it) is kept
// as properties.category, unless the properties have a category already.
func TestScreenCategoryKept(t *testing.T) {
	_, _, props := batchEvents(t, `{"batch":[`+
		`{"type":"screen","name":"Pricing","category":"Onboarding","properties":{},"messageId":"s1","anonymousId":"a"},`+
		`{"type":"page","name":"Pricing","category":"Docs","messageId":"p1","anonymousId":"a","properties":{"url":"https://acme.example/p"}},`+
		`{"type":"screen","name":"Pricing","category":"Top","messageId":"s2","anonymousId":"a","properties":{"category":"Own"}},`+
		`{"type":"screen","name":"Pricing","category":"Q\"uote\u00e9","messageId":"s3","anonymousId":"a","properties":null},`+
		`{"type":"screen","name":"Pricing","category":5,"messageId":"s4","anonymousId":"a"},`+
		`{"type":"screen","name":"Pricing","category":"","messageId":"s5","anonymousId":"a"},`+
		`{"type":"track","event":"E","category":"Not a page","messageId":"t1","anonymousId":"a"}]}`)
	want := map[string]string{
		"s1": `{"category":"Onboarding"}`,
		"p1": `{"url":"https://acme.example/p","category":"Docs"}`,
		"s2": `{"category":"Own"}`,
		"s3": `{"category":"Q\"uote\u00e9"}`, // as sent
		"s4": ``,
		"s5": ``,
		"t1": ``,
	}
	for id, w := range want {
		if props[id] != w {
			t.Errorf("%s: properties %s, want %s", id, props[id], w)
		}
		if props[id] != "" && !json.Valid([]byte(props[id])) {
			t.Errorf("%s: properties %s: not JSON", id, props[id])
		}
	}
}
