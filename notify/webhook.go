package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Headers of a webhook delivery.
const (
	// HeaderIdempotencyKey carries the record's mql_id (mqa_id): the same
	// on every attempt and every redelivery, so a receiver drops repeats.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderSignature is "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">"
	// with the destination's secret (see Verify).
	HeaderSignature = "X-Leadstream-Signature"
	HeaderKind      = "X-Leadstream-Kind"    // mql or mqa
	HeaderAttempt   = "X-Leadstream-Attempt" // 1 for the first attempt
)

// Sign returns the X-Leadstream-Signature value of body sent at ts.
func Sign(secret []byte, ts time.Time, body []byte) string {
	t := strconv.FormatInt(ts.Unix(), 10)
	return "t=" + t + ",v1=" + hex.EncodeToString(mac(secret, t, body))
}

func mac(secret []byte, t string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(t))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Signature errors of Verify.
var (
	ErrBadSignature = errors.New("signature does not match")
	ErrStale        = errors.New("signature timestamp outside the tolerance")
)

// Verify checks a X-Leadstream-Signature header against body, as a receiver
// should: the HMAC in constant time, then that its timestamp is within
// tolerance of now (which stops a captured request from being replayed
// later). Several v1= values (a secret being rotated) pass if one matches.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var t string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			t = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	ts, err := strconv.ParseInt(t, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("%w: malformed header", ErrBadSignature)
	}
	want := mac(secret, t, body)
	ok := false
	for _, s := range sigs {
		got, err := hex.DecodeString(s)
		if err == nil && hmac.Equal(got, want) {
			ok = true
		}
	}
	if !ok {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	return nil
}

// maxErrorText bounds an attempt's error: it quotes the receiver (a status
// line, an SMTP reply), which may send megabytes, and every attempt's error
// is kept (the retrying record's last outcome, the recorder's queue,
// ClickHouse).
const maxErrorText = 512

// errorText is s cut to maxErrorText bytes (not inside a UTF-8 sequence).
func errorText(s string) string {
	if len(s) <= maxErrorText {
		return s
	}
	i := maxErrorText - len("…")
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// outcome is what one attempt came to.
type outcome struct {
	ok         bool
	permanent  bool // retrying cannot help: dead-letter now
	status     int  // HTTP status, or SMTP reply code; 0 when none came
	err        string
	retryAfter time.Duration // the receiver asked to wait at least this long
}

// sender makes one attempt at delivering a record.
type sender interface {
	send(ctx context.Context, r *record, attempt int) outcome
}

// webSender posts records to a webhook, or to a Slack-compatible incoming
// webhook (slack: true).
type webSender struct {
	d      *Destination
	slack  bool
	client *http.Client
	agent  string
}

func newWebSender(d *Destination, concurrency int, version string) *webSender {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = concurrency // keep one connection per concurrent attempt
	return &webSender{d: d, slack: d.Type == TypeSlack, agent: "leadstream-notifier/" + version,
		client: &http.Client{Transport: tr,
			// A redirect is answered as a failure, not followed: the body and
			// its signature were meant for the URL configured.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// maxAnswer is how much of an answer is read (then the connection is reused).
const maxAnswer = 64 << 10

func (w *webSender) send(ctx context.Context, r *record, attempt int) outcome {
	body := r.webhookBody()
	if w.slack {
		body = r.slackBody()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.d.URL, bytes.NewReader(body))
	if err != nil {
		return outcome{permanent: true, err: "bad URL"}
	}
	// Without GetBody net/http does not resend the request by itself after
	// a broken connection (it would, for a request with an Idempotency-Key):
	// every attempt is ours, counted and recorded.
	req.GetBody = nil
	h := req.Header
	for k, v := range w.d.Headers {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", w.agent)
	h.Set(HeaderIdempotencyKey, r.ID)
	h.Set(HeaderKind, r.Kind)
	h.Set(HeaderAttempt, strconv.Itoa(attempt))
	if len(w.d.Secret) > 0 {
		h.Set(HeaderSignature, Sign(w.d.Secret, time.Now(), body))
	}
	res, err := w.client.Do(req)
	if err != nil {
		return outcome{err: netError(ctx, err)}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxAnswer))
	res.Body.Close()
	return httpOutcome(res)
}

// httpOutcome classifies an answer: 2xx delivered; 408, 429 and 5xx retried
// (honouring Retry-After); any other status (4xx, an unfollowed 3xx) is
// permanent.
func httpOutcome(res *http.Response) outcome {
	o := outcome{status: res.StatusCode}
	switch c := res.StatusCode; {
	case c >= 200 && c < 300:
		o.ok = true
		return o
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		o.err = errorText("HTTP " + res.Status)
		o.retryAfter = retryAfter(res.Header.Get("Retry-After"), time.Now())
	default:
		o.err = errorText("HTTP "+res.Status) + " (not retried)"
		o.permanent = true
	}
	return o
}

// retryAfter reads a Retry-After header, delay-seconds or an HTTP date, as
// the wait it asks for (at most an hour; 0 when absent, past or unreadable).
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil {
		return time.Duration(min(max(s, 0), 3600)) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(t.Sub(now), 0), time.Hour)
	}
	return 0
}

// netError describes a failed exchange without the URL (it may hold a token).
func netError(ctx context.Context, err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	}
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		err = ue.Unwrap() // *url.Error: drop "Post <url>:"
	}
	return errorText("connection: " + err.Error())
}
