package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/httpapi"
	"github.com/leadstream/leadstream/internal/jsonx"
	"github.com/leadstream/leadstream/stream"
	"github.com/valyala/fasthttp"
)

// ingest handles the Segment-compatible endpoints. Browsers (analytics.js,
// ls.js) reach them too: the body may be text/plain JSON (ls.js, so that no
// CORS preflight is needed) with the write key in it, and the Origin must be
// allowed for the key.
func (c *Collector) ingest(ctx *fasthttp.RequestCtx, call string) {
	if !knownIngest("/v1/" + call) {
		httpapi.Error(ctx, fasthttp.StatusNotFound, "no such endpoint: /v1/"+call)
		return
	}
	if ctx.IsOptions() {
		c.preflight(ctx)
		return
	}
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		httpapi.Error(ctx, fasthttp.StatusMethodNotAllowed, "use POST")
		return
	}
	// Browsers get every answer readable, refusals included: ls.js drops a
	// batch on a 4xx, while an unreadable answer looks like a network error
	// and would be retried forever. The allow-list is enforced below by
	// refusing the events, not by hiding the answer.
	origin := string(ctx.Request.Header.Peek("Origin"))
	if origin != "" {
		allowCORS(ctx, origin)
	}
	body, err := requestBody(ctx)
	if err != nil {
		c.badRequest(ctx, err)
		return
	}
	if err := validJSON(body); err != nil {
		c.m.rejected.WithLabelValues("malformed").Inc()
		httpapi.Error(ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	r := &request{receivedAt: time.Now().UTC().Truncate(time.Millisecond), userAgent: string(ctx.UserAgent()), ip: c.clientIP(ctx)}

	var events []*event.Event
	var bodyKey string
	beaconBatch := false
	if call == "batch" || call == "import" {
		b, err := decodeBatch(body)
		if err != nil {
			c.m.rejected.WithLabelValues("malformed").Inc()
			httpapi.Error(ctx, fasthttp.StatusBadRequest, "malformed JSON: "+err.Error())
			return
		}
		if b.Batch == nil {
			c.m.rejected.WithLabelValues("malformed").Inc()
			httpapi.Error(ctx, fasthttp.StatusBadRequest, `batch: a "batch" array is required`)
			return
		}
		bodyKey, r.sentAt = b.WriteKey, b.SentAt
		beaconBatch = isBeaconBatch(b.Context)
		if r.writeKeyID = c.writeKey(ctx, bodyKey); r.writeKeyID == "" {
			c.unauthorized(ctx)
			return
		}
		events = make([]*event.Event, 0, len(b.Batch))
		for i, raw := range b.Batch {
			e, err := decodeMessage(raw, "batch["+strconv.Itoa(i)+"]", "", r)
			if err != nil {
				c.badRequest(ctx, err)
				return
			}
			events = append(events, e)
		}
	} else {
		if len(body) > MaxEventBytes {
			c.badRequest(ctx, errEventSize("body", len(body)))
			return
		}
		// One decode serves both the write key and the event. A body the
		// message does not decode from takes the two-step path, which
		// answers 401 for a bad key before 400 for the body.
		m := getSegMessage()
		defer putSegMessage(m)
		var e *event.Event
		if decodeSegMessage(body, m) == nil {
			if r.writeKeyID = c.writeKey(ctx, m.WriteKey); r.writeKeyID == "" {
				c.unauthorized(ctx)
				return
			}
			e, err = mapMessage(m, body, call, call, r)
		} else {
			var k struct {
				WriteKey string `json:"writeKey"`
			}
			if err := json.Unmarshal(body, &k); err != nil {
				c.m.rejected.WithLabelValues("malformed").Inc()
				httpapi.Error(ctx, fasthttp.StatusBadRequest, "malformed JSON: "+err.Error())
				return
			}
			if r.writeKeyID = c.writeKey(ctx, k.WriteKey); r.writeKeyID == "" {
				c.unauthorized(ctx)
				return
			}
			e, err = decodeMessage(body, call, call, r)
		}
		if err != nil {
			c.badRequest(ctx, err)
			return
		}
		events = append(events, e)
	}
	// The events are garbage once the answer is written: every path below
	// ends the request, and the records hold their own copy of the bytes.
	defer putEvents(events)
	if origin != "" && !c.originAllowed(r.writeKeyID, origin) {
		c.m.rejected.WithLabelValues("origin").Inc()
		httpapi.Error(ctx, fasthttp.StatusForbidden, "origin not allowed for this write key (see collector.cors-origins)")
		return
	}
	// User agents are checked for browser traffic only: server-side SDKs
	// (analytics-node, analytics-go) legitimately send a library's agent.
	// A context.userAgent is a browser's, relayed, so it is checked too.
	for _, e := range events {
		if origin != "" || e.UserAgent != r.userAgent {
			c.bots.userAgent(e, origin != "")
		}
	}
	if err := c.write(ctx, events); err != nil {
		c.m.rejected.WithLabelValues("unavailable").Inc()
		c.log.Warn("events not written to kafka", "events", len(events), "err", err)
		ctx.Response.Header.Set("Retry-After", "1")
		httpapi.Error(ctx, fasthttp.StatusServiceUnavailable, "events not stored, retry: kafka did not acknowledge them in time")
		return
	}
	c.countEvents(events)
	if beaconBatch {
		for _, e := range events {
			if e.AnonymousID != "" {
				c.setAnonCookie(ctx, origin, validAnonID(e.AnonymousID))
				break
			}
		}
	}
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"success":true,"accepted":` + strconv.Itoa(len(events)) + "}")
}

// write encodes events and waits until Kafka acknowledged every one.
func (c *Collector) write(_ *fasthttp.RequestCtx, events []*event.Event) error {
	if len(events) == 0 {
		return nil
	}
	bp, _ := recordBufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	recs, buf, err := appendRecords((*bp)[:0], events)
	if err != nil {
		return err
	}
	pctx := newDeadlineCtx(c.cfg.ProduceTimeout)
	err = c.producer.Produce(pctx, recs)
	pctx.release()
	// Acknowledged records are no longer referenced by the producer, so
	// their buffer can serve another request; after a failure the producer
	// may still hold them (they stay queued), so the buffer is left to it.
	if err == nil && cap(buf) <= maxPooledRecordBuf {
		*bp = buf
		recordBufs.Put(bp)
	}
	return err
}

// recordBufs holds the encoding buffers of acknowledged requests.
var recordBufs sync.Pool

const maxPooledRecordBuf = 1 << 20

// deadlineCtx is a context that is done after a timeout, like
// context.WithTimeout, but pooled with its timer: waiting for Kafka is on the
// path of every request.
type deadlineCtx struct {
	done     chan struct{}
	timer    *time.Timer
	deadline time.Time
}

var deadlineCtxs sync.Pool

func newDeadlineCtx(d time.Duration) *deadlineCtx {
	c, _ := deadlineCtxs.Get().(*deadlineCtx)
	if c == nil {
		c = &deadlineCtx{done: make(chan struct{})}
		c.deadline = time.Now().Add(d)
		c.timer = time.AfterFunc(d, func() { close(c.done) })
		return c
	}
	c.deadline = time.Now().Add(d)
	c.timer.Reset(d)
	return c
}

// release stops the timer; a context whose timer never fired is reused.
func (c *deadlineCtx) release() {
	if c.timer.Stop() {
		deadlineCtxs.Put(c)
	}
}

func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *deadlineCtx) Done() <-chan struct{}       { return c.done }
func (c *deadlineCtx) Value(any) any               { return nil }
func (c *deadlineCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// validJSON checks a whole body in one strict pass. The one-pass decoder
// that follows skips unknown fields without validating them, and the encoder
// copies properties and traits as they are; so nothing malformed may get
// past this point.
func validJSON(body []byte) error {
	if jsonx.Valid(body) {
		return nil
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("malformed JSON: %v", err)
	}
	return errors.New("malformed JSON")
}

// appendRecords encodes events as Kafka records into buf (grown as needed)
// and returns them with the buffer: keys and values are sub-slices of it, cut
// after the last append so a reallocation cannot strand them.
func appendRecords(buf []byte, events []*event.Event) ([]stream.Record, []byte, error) {
	recs := make([]stream.Record, len(events))
	var small [16][2]int
	ends := small[:0]
	if need := 512 * len(events); cap(buf) < need {
		buf = make([]byte, 0, need)
	}
	for _, e := range events {
		if err := e.Validate(); err != nil {
			panic("BUG: collector built an invalid event: " + err.Error())
		}
		buf = append(buf, e.Key()...)
		k := len(buf)
		var err error
		if buf, err = event.AppendJSON(buf, e); err != nil {
			return nil, nil, fmt.Errorf("encoding event: %w", err)
		}
		ends = append(ends, [2]int{k, len(buf)})
	}
	start := 0
	for i := range recs {
		k, v := ends[i][0], ends[i][1]
		recs[i] = stream.Record{Key: buf[start:k:k], Value: buf[k:v:v]}
		start = v
	}
	return recs, buf, nil
}

// requestBody returns the (gunzipped) body within the batch limit. It is
// fasthttp's buffer unless gzipped, valid until the handler returns: nothing
// that outlives the request may keep a slice of it (events are encoded into
// their own buffer, and the decoder copies its input).
func requestBody(ctx *fasthttp.RequestCtx) ([]byte, error) {
	body := ctx.PostBody()
	if bytes.EqualFold(ctx.Request.Header.ContentEncoding(), []byte("gzip")) {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, errField("body", "bad gzip: %v", err)
		}
		// Read one byte past the limit to tell "at the limit" from "over".
		out, err := io.ReadAll(io.LimitReader(zr, MaxBatchBytes+1))
		if err != nil {
			return nil, errField("body", "bad gzip: %v", err)
		}
		body = out
	}
	if len(body) > MaxBatchBytes {
		return nil, &fieldError{field: "body", limit: LimitBatchSize,
			msg: fmt.Sprintf("request is over the limit of 500 KB (%d bytes) per batch", MaxBatchBytes)}
	}
	return body, nil
}

func (c *Collector) unauthorized(ctx *fasthttp.RequestCtx) {
	c.m.rejected.WithLabelValues("auth").Inc()
	ctx.Response.Header.Set("WWW-Authenticate", `Basic realm="leadstream"`)
	httpapi.Error(ctx, fasthttp.StatusUnauthorized, "unknown or missing write key (HTTP Basic user name or writeKey in the body)")
}

// badRequest answers 400 with err; a limit hit (a *fieldError with its
// limit set) is counted as such and named in the body's "limit".
func (c *Collector) badRequest(ctx *fasthttp.RequestCtx, err error) {
	var fe *fieldError
	if errors.As(err, &fe) && fe.limit != "" {
		c.m.rejected.WithLabelValues("limit").Inc()
		httpapi.WriteError(ctx, fasthttp.StatusBadRequest, httpapi.ErrorBody{Error: err.Error(), Limit: string(fe.limit)})
		return
	}
	c.m.rejected.WithLabelValues("malformed").Inc()
	httpapi.Error(ctx, fasthttp.StatusBadRequest, err.Error())
}
