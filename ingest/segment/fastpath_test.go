package segment

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/jsonx"
)

// sampleMessages are calls shaped like analytics.js and server SDK traffic.
func sampleMessages(n int) []string {
	var msgs []string
	for i := range n {
		if i%2 == 0 {
			msgs = append(msgs, fmt.Sprintf(`{"type":"page","messageId":"ajs-next-%d-1a2b3c4d5e","anonymousId":"0b7c9d3e-5f61-4a2b-9c8d-%012d","timestamp":"2026-11-22T16:39:58.120Z","properties":{"url":"https://acme.example/pricing?utm_source=google&utm_medium=cpc&utm_campaign=spring","path":"/pricing","title":"Pricing — Acme","referrer":"https://www.google.com/"},"context":{"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36","page":{"url":"https://acme.example/pricing?utm_source=google&utm_medium=cpc&utm_campaign=spring","path":"/pricing","title":"Pricing — Acme","referrer":"https://www.google.com/"},"library":{"name":"analytics.js","version":"1.0"}},"integrations":{},"sentAt":"2026-11-22T16:39:58.300Z"}`, i, i))
		} else {
			msgs = append(msgs, fmt.Sprintf(`{"type":"track","messageId":"ajs-next-%d-1a2b3c4d5e","userId":"lead-%d@example.com","event":"Email Link Clicked","timestamp":"2026-11-22T16:39:58.120Z","properties":{"campaign":"nurture-1","url":"https://acme.example/webinar"},"context":{"ip":"198.51.100.7","campaign":{"name":"nurture-1","source":"esp"}},"integrations":{"All":false,"Salesforce":true}}`, i, i))
		}
	}
	return msgs
}

// batchContexts are the batch contexts the fuzz tests try every message
// with: none, one the decoded fields ignore, one that sets them; and batch
// integrations.
var batchContexts = []*refBatch{nil,
	{ctx: json.RawMessage(`{"library":{"name":"analytics-go","version":"3.3.0"}}`), sentAt: "2026-11-22T16:39:58.300Z"},
	{ctx: json.RawMessage(`{ "ip" : "203.0.113.9", "IP":"x", "page":{"url":"https://b.example/?utm_campaign=batch"},"campaign":{"name":"bc"},"traits":{"t":1},"x\u0079":[1]}`), sentAt: "nonsense"},
	{integ: json.RawMessage(`{"All":false, "Salesforce" : true,"\u0041ll":{"x":[1]}}`)},
	{ctx: json.RawMessage(`{"library":{"name":"http"}}`), integ: json.RawMessage(`{"All":false,"Salesforce":true}`), sentAt: "2026-11-22T16:39:58.300Z"},
}

// The batch fast path cuts the same messages out of a body as the decoder.
func FuzzSplitBatch(f *testing.F) {
	f.Add([]byte(`{"batch":[` + strings.Join(sampleMessages(3), ",") + `],"sentAt":"2026-11-22T16:39:58.300Z"}`))
	f.Add([]byte(`{"batch":[],"writeKey":"k"}`))
	f.Add([]byte(` { "batch" : [ {"type":"track"} , null ,1,"x",[ ]] , "sentAt":null, "context":{"library":{"name":"ls.js"}} } `))
	f.Add([]byte(`{"batch":null,"context":null,"other":{"a":[1,2]}}`))
	f.Add([]byte(`{"batch":[{}],"integrations":{"All":false},"context":{}}`))
	f.Add([]byte(`{"batch":[{}],"integrations":null,"Integrations":{"a":1}}`))
	f.Add([]byte(`{"batch":[{}],"integrations":{},"integrations":[]}`))
	f.Add([]byte(`{"Batch":[{}],"batch":[]}`))
	f.Add([]byte(`{"batch":[{}],"batch":[]}`))
	f.Add([]byte(`{"writeKey":"a\u0062"}`))
	f.Add([]byte(`{"writekey":"x","batch":[{}]}`))
	f.Add([]byte(`{"batch":{}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if !jsonx.Valid(body) {
			return
		}
		fast, ok := splitBatch(body)
		if !ok {
			return
		}
		var want batch
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("fast path took %q, the decoder fails: %v", body, err)
		}
		if (fast.Batch == nil) != (want.Batch == nil) || len(fast.Batch) != len(want.Batch) {
			t.Fatalf("%q: batch %q, decoder %q", body, fast.Batch, want.Batch)
		}
		for i := range fast.Batch {
			if !bytes.Equal(fast.Batch[i], want.Batch[i]) {
				t.Fatalf("%q: batch[%d] %q, decoder %q", body, i, fast.Batch[i], want.Batch[i])
			}
		}
		if fast.WriteKey != want.WriteKey || fast.SentAt != want.SentAt || (fast.Context == nil) != (want.Context == nil) || !bytes.Equal(fast.Context, want.Context) ||
			(fast.Integrations == nil) != (want.Integrations == nil) || !bytes.Equal(fast.Integrations, want.Integrations) {
			t.Fatalf("%q: fast %+v, decoder %+v", body, fast, want)
		}
	})
}

// The decoding with its fast paths gives the event (or error) the reference
// gives: for a single call of every endpoint and for a batch message with
// each of batchContexts.
func FuzzDecodeMessageMatchesReference(f *testing.F) {
	for _, m := range sampleMessages(2) {
		f.Add([]byte(m))
	}
	f.Add([]byte(`{"type":"page","anonymousId":" a\u00e9 ","properties":{"url":"https://x.example/p?utm_source=g&a=%75tm_x"}}`))
	f.Add([]byte(`{"type":"page","anonymousId":"a\tb","properties":{"URL":"https://x.example/p?x=1","Path":5}}`))
	f.Add([]byte(`{"type":"track","userId":"u","event":"e","context":{"page":{"url":"https://x.example/?utm%5Fsource=s&utm_medium=m;x"}}}`))
	f.Add([]byte(`{"type":"page","userId":"é","properties":{"url":"::"}}`))
	f.Add([]byte(`{"type":"page","userId":"\u00e9","properties":{"url":"http://x/a%2Fb?utm_term=a+b"}}`))
	f.Add([]byte(`{"type":"identify","userId":"u","context":{"traits":{"title":"CTO"},"ip":"1.2.3.4","Ip":"5"},"timestamp":"2026-11-22T17:39:58Z","sentAt":"2026-11-22T17:40:00Z"}`))
	f.Add([]byte(`{"type":"track","userId":"u","event":"e","context":5,"integrations":[1]}`))
	f.Add([]byte(`{"type":"track","userId":"u","event":"e","context":{"ip":5}}`))
	f.Add([]byte(`{"type":"track","userId":"u","event":"e","timestamp":"1970-01-01T00:00:01Z","sentAt":"1970-01-01T00:00:02Z"}`))
	f.Add([]byte(`{"type":"track","userId":"u","event":"e","timestamp":"2026-11-22T16:39:58Z","sentAt":"9999-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"type":"identify","userId":"x","traits":{"n":1e400,"m":[1,{"a b":-2e308}]}}`))
	f.Add([]byte(`{"type":"track","userId":"x","event":"e","properties":{"\u00e9\"":[1e999]}}`))
	f.Add([]byte(`{"type":"alias","userId":"u","previousId":"a"}`))
	f.Add([]byte(`{"type":"track","userId":"u","event":"Email Opened","context":{"ip":"2001:db8:1:2::7","IP":"198.51.100.7:443"}}`))
	f.Add([]byte(`{"type":"track","userId":"u","event":"e","timestamp":"2026-11-20T16:39:58Z"}`))
	f.Add([]byte(`{"type":"page","anonymousId":"a","context":{"ip":"fe80::1%eth0","x":1}}`))
	f.Add([]byte(`{"type":"screen","anonymousId":"a","name":"n","category":"c","properties":{ "a" : 1 }}`))
	f.Add([]byte(`{"type":"page","anonymousId":"a","category":"c\u00e9","properties":{"category":null},"integrations":{"All":true,"X":false}}`))
	f.Add([]byte(`{"type":"screen","anonymousId":"a","Category":"c","category":5,"properties":{ }}`))
	// A server SDK (relaying its visitor's context.ip, any event, any age)
	// and a browser (anonymized addresses, at most a day back).
	r := &Request{WriteKeyID: "wk", ReceivedAt: time.Date(2026, 11, 22, 16, 40, 0, 0, time.UTC), IP: "192.0.2.1", UserAgent: "ua", Server: true}
	browser := *r
	browser.Browser, browser.Server, browser.MaxEventAge, browser.AnonymizeIP = true, false, 24*time.Hour, true
	f.Fuzz(func(t *testing.T, b []byte) {
		valid, large := jsonx.Check(b)
		if !valid {
			return
		}
		check := func(what string, e *event.Event, err error, we *event.Event, werr error) {
			t.Helper()
			if fmt.Sprint(err) != fmt.Sprint(werr) {
				t.Fatalf("%q (%s): error %v, reference %v", b, what, err, werr)
			}
			if err == nil && !reflect.DeepEqual(e, we) {
				t.Fatalf("%q (%s):\n got %+v\nwant %+v", b, what, e, we)
			}
		}
		for _, force := range []string{"track", "page", "screen", "identify", "alias", "group"} {
			e, err := decodeAndMap(b, large, single(force), force, r, nil)
			we, werr := refDecodeMessage(b, force, force, r, nil)
			check(force, e, err, we, werr)
		}
		for i, rb := range batchContexts {
			var bc *batchContext
			if rb != nil {
				bc = new(batchContext)
				if err := bc.init(rb.ctx, rb.sentAt); err != nil {
					t.Fatal(err)
				}
				if err := bc.initIntegrations(rb.integ); err != nil {
					t.Fatal(err)
				}
			}
			for _, req := range []*Request{r, &browser} {
				e, err := decodeAndMap(b, large, loc{index: 0}, "", req, bc)
				we, werr := refDecodeMessage(b, "batch[0]", "", req, rb)
				check(fmt.Sprintf("batch context %d, browser %v", i, req.Browser), e, err, we, werr)
			}
		}
	})
}

// The one-pass message decoder gives what encoding/json gives whenever it
// takes a message (the decoded context too), and so does the context and
// page decoding.
func FuzzMessageFastPath(f *testing.F) {
	for _, m := range sampleMessages(2) {
		f.Add([]byte(m))
	}
	f.Add([]byte(`{"type":"page","properties":null,"userId":null,"context":{"traits":null,"page":null,"campaign":{"name":"n","x":[1,"]"]}},"name":null}`))
	f.Add([]byte(` {"Type":"x","type":"y"} `))
	f.Add([]byte(`{"type":"a\"b","event":"é","messageId":"\u00e9","anonymousId":-1.5e3,"context":{"page":{"url":"u","URL":"v"}}}`))
	f.Add([]byte(`{"type":"track","type":"page"}`))
	f.Add([]byte(`{"context":{"ip":5}}`))
	f.Add([]byte(`{"context":null,"integrations":{"All":true}}`))
	f.Add([]byte(`{"context":[1],"Integrations":{}}`))
	f.Add([]byte(`{"traits":{"a":"\\\"}"},"x\\y":1}`))
	f.Add([]byte(`{"type":"screen","name":"n","category":"c","CATEGORY":"d"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !jsonx.Valid(b) {
			return
		}
		var fast message
		if fastMessage(b, &fast) {
			var want message
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatalf("fast path took %q, the decoder fails: %v", b, err)
			}
			if len(want.Context) > 0 && want.Context[0] == '{' {
				if err := json.Unmarshal(want.Context, &want.ctx); err != nil {
					t.Fatalf("fast path took %q, the decoder fails on its context: %v", b, err)
				}
				want.parsed = true
			}
			if !reflect.DeepEqual(fast, want) {
				t.Fatalf("%q:\nfast    %+v\ndecoder %+v", b, fast, want)
			}
		}
		var fc segContext
		s := scan{b: b}
		if end := s.context(jsonx.SkipSpace(b, 0), &fc); end >= 0 && jsonx.SkipSpace(b, end) == len(b) {
			var want segContext
			if err := json.Unmarshal(b, &want); err != nil || !reflect.DeepEqual(fc, want) {
				t.Fatalf("%q: context %+v, decoder %+v (%v)", b, fc, want, err)
			}
		}
		var fp segPage
		s = scan{b: b}
		if end := s.page(jsonx.SkipSpace(b, 0), &fp); end >= 0 && jsonx.SkipSpace(b, end) == len(b) {
			var want segPage
			if err := json.Unmarshal(b, &want); err != nil || fp != want {
				t.Fatalf("%q: page %+v, decoder %+v (%v)", b, fp, want, err)
			}
		}
	})
}

// The merge of a batch's context gives what the reference's merge, written
// over encoding/json's tokenizer, gives.
func FuzzMergeContext(f *testing.F) {
	f.Add([]byte(`{"library":{"name":"analytics-go"},"ip":"1.2.3.4"}`), []byte(`{"ip":"5.6.7.8","page":{"url":"u"}}`))
	f.Add([]byte(`{ "a" : 1 , "\u0062":2 }`), []byte(`{"b":3,"A":4}`))
	f.Add([]byte(`{"a":1}`), []byte(`null`))
	f.Add([]byte(`{"a":1}`), []byte(`{}`))
	f.Fuzz(func(t *testing.T, batchCtx, own []byte) {
		if !jsonx.Valid(batchCtx) || !jsonx.Valid(own) || jsonx.SkipSpace(batchCtx, 0) != 0 || jsonx.SkipSpace(own, 0) != 0 {
			return
		}
		if batchCtx[0] != '{' || (own[0] != '{' && string(own) != "null") {
			return
		}
		bc := &batchContext{raw: compactObject(batchCtx)}
		got := bc.merge(own)
		want := json.RawMessage(own)
		if len(bc.raw) > 0 {
			want = refMerge(batchCtx, own)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("merge(%q, %q) = %q, reference %q", batchCtx, own, got, want)
		}
		if len(got) > 0 && !json.Valid(got) {
			t.Fatalf("merge(%q, %q) = %q: not JSON", batchCtx, own, got)
		}
	})
}

// FillFromURL with its fast path fills what url.Parse and url.Values filled.
func FuzzFillFromURL(f *testing.F) {
	for _, u := range []string{"https://www.acme.example/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=spring-launch",
		"http://a.example:8080", "https://a.example?utm_term=x&utm_term=y#f", "https://a.example/p?utm_source&utm_medium==a=", "https://a.example/a b",
		"https://a.example/%zz", "https://u@a.example/", "HTTPS://A.example/X", "https://a.example:/x", "https://a.example/x?utm_source=a+b;c", "https://a.example#?utm_source=x",
		"https://a.example/?&&utm_content=1&", "https://a.example/\"<>\\^`{|}?utm_source=<x>&x=\"", "http://a-b.c.example:1/x/../y?utm_medium=a=b", "https://a.example?utm_source=%41"} {
		f.Add(u, "", "")
		f.Add(u, "/given", "camp")
	}
	f.Fuzz(func(t *testing.T, u, path, campaign string) {
		e := event.Event{URL: u, Path: path, UTMCampaign: campaign}
		want := e
		FillFromURL(&e)
		refFillFromURL(&want)
		if !reflect.DeepEqual(e, want) {
			t.Fatalf("%q:\n got %+v\nwant %+v", u, e, want)
		}
	})
}
