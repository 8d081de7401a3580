package segment

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
)

// The request's User-Agent is stored with every message of a batch that has
// no context.userAgent, as a batch context is merged into each: what it adds
// is bounded like the merges, so a 16 KB header on a small batch of tiny
// messages cannot become megabytes of records.
func TestBatchUserAgentBounded(t *testing.T) {
	ua := "Mozilla/5.0 " + strings.Repeat("<", 14_000) // 84 KB stored: each < escaped in six bytes
	r := &Request{WriteKeyID: "wk", ReceivedAt: time.Date(2026, 11, 22, 16, 40, 0, 0, time.UTC), UserAgent: ua}
	tiny := func(n int, msg string) string {
		return `{"batch":[` + strings.TrimSuffix(strings.Repeat(msg+",", n), ",") + `]}`
	}
	page := `{"type":"page","anonymousId":"a"}`
	evs, _, err := events(t, tiny(60, page), "batch", r)
	var se *Error
	if !errors.As(err, &se) || se.Limit != LimitBatchSize || !strings.Contains(err.Error(), "User-Agent header (84014 bytes as stored)") {
		n := 0
		for _, e := range evs {
			n += event.EncodedSize(e)
		}
		t.Fatalf("60 messages × an 84 KB User-Agent: %d events, %d bytes of records, err %v; want the batch refused (batch_size_500KB)", len(evs), n, err)
	}
	// Messages with their own context.userAgent do not take the header's.
	own := `{"type":"page","anonymousId":"a","context":{"userAgent":"Mozilla/5.0 (X11)"}}`
	if evs, _, err := events(t, tiny(60, own), "batch", r); err != nil || len(evs) != 60 || evs[0].UserAgent != "Mozilla/5.0 (X11)" {
		t.Errorf("60 messages with their own agent: %d events, %v", len(evs), err)
	}
	// A few messages with the long agent, and a single call, are stored as usual.
	if evs, _, err := events(t, tiny(5, page), "batch", r); err != nil || len(evs) != 5 || evs[4].UserAgent != ua {
		t.Errorf("5 messages × an 84 KB User-Agent: %d events, %v", len(evs), err)
	}
	if evs, _, err := events(t, page, "page", r); err != nil || len(evs) != 1 || evs[0].UserAgent != ua {
		t.Errorf("one call with an 84 KB User-Agent: %d events, %v", len(evs), err)
	}
	// A usual agent on a batch of a thousand messages (the burst of an address) is far from the bound.
	r.UserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36 Edg/150.0.0.0"
	if evs, _, err := events(t, tiny(1000, page), "batch", r); err != nil || len(evs) != 1000 {
		t.Errorf("1000 messages with a browser's agent: %d events, %v", len(evs), err)
	}
}

// storedStringSize is what a string takes in a record (as the encoder writes it).
func TestStoredStringSize(t *testing.T) {
	size := func(ua string) int {
		e := &event.Event{ID: "i", Type: event.PageView, AnonymousID: "a", EventTime: time.Unix(1, 0), ReceivedAt: time.Unix(1, 0), UserAgent: ua}
		return event.EncodedSize(e)
	}
	key := size("x") - size("") - len(`"x"`) // the member's key
	for _, s := range []string{"Mozilla/5.0 (X11)", `a"b\c`, "<>&", "\x01\x1f", "é\u2028\u2029😀", "\xff\xfe", "a\xc3"} {
		if got, want := storedStringSize(s), size(s)-size("")-key; got != want {
			t.Errorf("storedStringSize(%q) = %d, the encoder writes %d bytes", s, got, want)
		}
	}
}

// An event is held to MaxRecordBytes as stored with the request's
// User-Agent: a 3 KB page call whose URL is made of < stores 55 KB, and with
// a 16 KB agent of < (a request's head may hold it) 151 KB.
func TestStoredSizeWithUserAgent(t *testing.T) {
	lt := strings.Repeat("<", 700)
	url := "https://x.example/" + lt + "?utm_source=" + lt + "&utm_medium=" + lt + "&utm_campaign=" + lt
	msg := `{"anonymousId":"a","properties":{"url":"` + url + `"}}`
	r := &Request{WriteKeyID: "wk", ReceivedAt: time.Date(2026, 11, 22, 16, 40, 0, 0, time.UTC)}
	if evs, _, err := events(t, msg, "page", r); err != nil || event.EncodedSize(evs[0]) > MaxRecordBytes {
		t.Fatalf("without an agent: %v", err)
	}
	r.UserAgent = "Mozilla/5.0 " + strings.Repeat("<", 16_000)
	evs, _, err := events(t, msg, "page", r)
	var se *Error
	if !errors.As(err, &se) || se.Limit != LimitEventSize || !strings.Contains(err.Error(), "once stored") {
		n := 0
		if len(evs) == 1 {
			n = event.EncodedSize(evs[0])
		}
		t.Fatalf("with a 16 KB agent: stored in %d bytes (limit %d), err %v", n, MaxRecordBytes, err)
	}
}
