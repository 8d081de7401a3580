package ingest

import (
	"bytes"
	"compress/gzip"
	"testing"

	"github.com/leadstream/leadstream/event"
)

// analytics-android 4.x posts every batch, gzipped, to https://{apiHost}/import
// (ConnectionFactory.upload; apiHost "t.acme.example/v1" from the settings
// the collector serves), with the write key in the body only, and deletes a
// batch answered with any 4xx but 429. A mobile app holds a browser key:
// its import is a batch like any other, each message judged by the key's scope.
func TestAndroidImportWithBrowserKey(t *testing.T) {
	s := startServer(t, nil)
	body := `{"batch":[` +
		`{"messageId":"and-1","type":"screen","name":"Pricing","anonymousId":"a-and","channel":"mobile","timestamp":"2026-01-01T00:00:00.000Z","context":{"library":{"name":"analytics-android","version":"4.11.3"}},"integrations":{},"properties":{"name":"Pricing"}},` +
		`{"messageId":"and-2","type":"track","event":"Signed Up","anonymousId":"a-and","channel":"mobile","timestamp":"2026-01-01T00:00:01.000Z","context":{},"integrations":{},"properties":{}}` +
		`],"sentAt":"2026-01-01T00:00:02.000Z","writeKey":"` + testKey + `"}`
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte(body))
	w.Close()
	res, got := s.do(t, "POST", "/v1/import", gz.String(), "Content-Type: application/json", "Content-Encoding: gzip", "User-Agent: analytics-android/4.11.3")
	if res.StatusCode != 200 || got != `{"success":true,"accepted":2}` {
		t.Fatalf("analytics-android's /v1/import with a browser key: %d %s, want both messages accepted", res.StatusCode, got)
	}
	evs := s.events(t)
	if len(evs) != 2 || evs[0].Type != event.PageView || evs[1].Type != event.Custom || evs[0].AnonymousID != "a-and" {
		t.Fatalf("stored %+v", evs)
	}
}
