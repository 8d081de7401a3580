package ingest

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
)

// A body in a content coding the collector does not decode is refused with a
// 400 naming the coding, whatever the body holds; gzip (also by its old name
// x-gzip) is read, identity is the body as it is.
func TestUnknownContentEncodingRefused(t *testing.T) {
	s := startServer(t, nil)
	auth := "Authorization: " + mustBasic(testKey)
	call := `{"userId":"u","event":"coded","messageId":"`
	for _, enc := range []string{"br", "deflate", "zstd", "compress", "gzip, br", "gzip, gzip"} {
		res, body := s.do(t, "POST", "/v1/track", call+enc+`"}`, auth, "Content-Encoding: "+enc)
		if res.StatusCode != 400 || !strings.Contains(body, `"error":"Content-Encoding: `) || !strings.Contains(body, `the collector`) {
			t.Errorf("Content-Encoding %s: %d %s", enc, res.StatusCode, body)
		}
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(call + `x-gzip"}`))
	zw.Close()
	for enc, body := range map[string]string{"identity": call + `identity"}`, "X-Gzip": gz.String()} {
		if res, out := s.do(t, "POST", "/v1/track", body, auth, "Content-Encoding: "+enc); res.StatusCode != 200 {
			t.Errorf("Content-Encoding %s: %d %s", enc, res.StatusCode, out)
		}
	}
	evs := s.events(t)
	if len(evs) != 2 {
		t.Fatalf("stored %d events, want the identity and x-gzip ones: %+v", len(evs), evs)
	}
}

// A User-Agent header is stored with every message of a batch that has no
// context.userAgent: a 15 KB one on a 34 KB batch of a thousand tiny
// messages would be 90 MB of records. It counts in what a batch may add
// (500 KB): refused whole, 400 naming the limit, nothing stored.
func TestLongUserAgentBatchRefused(t *testing.T) {
	s := startServer(t, nil)
	auth := "Authorization: " + mustBasic(testKey)
	ua := "Mozilla/5.0 " + strings.Repeat("<", 15_000)
	batch := `{"batch":[` + strings.TrimSuffix(strings.Repeat(`{"type":"page","anonymousId":"a"},`, 1000), ",") + `]}`
	res, body := s.do(t, "POST", "/v1/batch", batch, auth, "User-Agent: "+ua, "Origin: https://www.acme.example")
	if res.StatusCode != 400 || !strings.Contains(body, `"limit":"batch_size_500KB"`) || !strings.Contains(body, "User-Agent header") {
		t.Errorf("1000 messages with a 15 KB agent: %d %.300s", res.StatusCode, body)
	}
	// The same agent on one call is stored.
	if res, body := s.do(t, "POST", "/v1/page", `{"anonymousId":"a","messageId":"one"}`, auth, "User-Agent: "+ua); res.StatusCode != 200 {
		t.Errorf("one call with a 15 KB agent: %d %s", res.StatusCode, body)
	}
	if evs := s.events(t); len(evs) != 1 || evs[0].ID != "one" || evs[0].UserAgent != ua {
		t.Errorf("stored %d events, want the single call", len(evs))
	}
}

// A form post's page address (Referer) is stored in url, path, its utm_*
// fields and campaign, with < > & escaped in six bytes each: a 15 KB one
// would make two records of 160 KB. Held to the 128 KB of every stored
// event (as a Segment call is): refused, nothing stored; a usual page is not.
func TestFormLongRefererBounded(t *testing.T) {
	s := startServer(t, nil)
	form := "Content-Type: application/x-www-form-urlencoded"
	lt := strings.Repeat("<", 3000)
	ref := "https://www.acme.example/p?utm_source=" + lt + "&utm_medium=" + lt + "&utm_campaign=" + lt + "&utm_term=" + lt
	res, body := s.do(t, "POST", "/f/webinar", "writeKey="+testKey+"&email=a%40b.example", form, "Referer: "+ref)
	if res.StatusCode != 400 || !strings.Contains(body, "over 128 KB once stored") {
		t.Errorf("form from a 12 KB page address of <: %d %.200s", res.StatusCode, body)
	}
	if res, _ := s.do(t, "POST", "/f/webinar", "writeKey="+testKey+"&email=c%40d.example", form, "Referer: https://www.acme.example/p?utm_campaign="+strings.Repeat("x", 3000)); res.StatusCode != 303 {
		t.Errorf("form from a 3 KB page address: %d", res.StatusCode)
	}
	evs := s.events(t)
	if len(evs) != 2 || evs[0].LeadID != "c@d.example" {
		t.Fatalf("stored %d events, want the second post's two", len(evs))
	}
}

// A form post in a content coding (browsers never send one) is refused, 400
// naming it: read as a form, a gzipped body was stored as one field of
// binary junk, the person's email lost.
func TestFormContentEncodingRefused(t *testing.T) {
	s := startServer(t, nil)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("email=ann%40acme.example&title=CTO"))
	zw.Close()
	form := "Content-Type: application/x-www-form-urlencoded"
	for enc, body := range map[string]string{"gzip": gz.String(), "br": "email=bob%40acme.example"} {
		res, out := s.do(t, "POST", "/f/webinar?writeKey="+testKey, body, form, "Content-Encoding: "+enc)
		if res.StatusCode != 400 || !strings.Contains(out, "Content-Encoding") {
			t.Errorf("form in %s: %d %.200s", enc, res.StatusCode, out)
		}
	}
	if evs := s.events(t); len(evs) != 0 {
		t.Errorf("stored %d events, e.g. %s %q", len(evs), evs[0].Type, evs[0].Properties)
	}
}

func TestGzipCoded(t *testing.T) {
	f := func(h string, wantGz, wantErr bool) {
		t.Helper()
		gz, err := gzipCoded([]byte(h))
		if gz != wantGz || (err != nil) != wantErr {
			t.Errorf("Content-Encoding %q: gzip %v, err %v", h, gz, err)
		}
	}
	f("", false, false)
	f("identity", false, false)
	f("gzip", true, false)
	f(" GZip ", true, false)
	f("x-gzip", true, false)
	f("identity, gzip", true, false)
	f("gzip,", true, false)
	f("gzip, gzip", false, true)
	f("deflate", false, true)
	f("br", false, true)
	f("zstd", false, true)
	f("gzip, br", false, true)
	f(strings.Repeat("x", 100), false, true)
}
