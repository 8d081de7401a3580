package leadapi

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
)

// A lead or account whose stored state does not decode is answered 500,
// naming that, and logged without its id: a 503 with Retry-After had every
// client retry for ever a read that returns the same bytes each time.
func TestGetCorruptState(t *testing.T) {
	s := leadstatetest.Open(t, testsvc.Redis(t))
	ctx := context.Background()
	var logs bytes.Buffer
	api := New(s, scoring.Default().Models, "s")
	api.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	id := "corrupt-" + time.Now().Format("150405.000000000") + "@example.com"
	for _, c := range []struct {
		subject scoring.Subject
		prefix  string
		serve   func(*fasthttp.RequestCtx)
	}{{scoring.Lead(id), Prefix, api.Serve}, {scoring.Account(id), AccountPrefix, api.ServeAccount}} {
		if err := leadstatetest.Client(t, s).Set(ctx, leadstatetest.Key(c.subject, "s"), "not a leadstream state", 0).Err(); err != nil {
			t.Fatal(err)
		}
		var rc fasthttp.RequestCtx
		rc.Request.Header.SetMethod("GET")
		rc.Request.SetRequestURI(c.prefix + id)
		rc.Request.Header.Set("Authorization", "Bearer s")
		c.serve(&rc)
		if code, body := rc.Response.StatusCode(), string(rc.Response.Body()); code != 500 || !strings.Contains(body, "does not decode") {
			t.Errorf("GET %s%s = %d %s, want 500 naming a state that does not decode", c.prefix, id, code, body)
		}
		if ra := rc.Response.Header.Peek("Retry-After"); ra != nil {
			t.Errorf("GET %s%s: Retry-After %q on an answer retrying cannot change", c.prefix, id, ra)
		}
	}
	if !strings.Contains(logs.String(), "does not decode") {
		t.Errorf("nothing logged: %q", logs.String())
	}
	if strings.Contains(logs.String(), "example.com") {
		t.Errorf("the id is in the log at info level or above: %q", logs.String())
	}
}
