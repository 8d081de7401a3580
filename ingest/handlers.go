package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/ingest/segment"
	"github.com/leadstream/leadstream/internal/httpapi"
	"github.com/leadstream/leadstream/stream"
	"github.com/valyala/fasthttp"
)

// ingest handles the Segment-compatible endpoints, /v1/{name} (package
// segment decodes and maps the calls; this is the HTTP side: method, CORS,
// credentials, bots, Kafka). Browsers (analytics.js, ls.js) reach them too:
// the body may be text/plain JSON with the write key in it, and the Origin
// must be allowed for the key.
func (c *Collector) ingest(ctx *fasthttp.RequestCtx, name string) {
	call, ok := segment.Call(name)
	if ok && ctx.IsOptions() {
		c.preflight(ctx)
		return
	}
	// Browsers get every answer readable, refusals included (the earliest
	// too: an unknown endpoint, a method other than POST; and a body over
	// 1 MB, which httpError answers before this runs, see earlyCORS):
	// ls.js and analytics.js drop a batch on a 4xx, while an unreadable
	// answer looks like a network error and would be retried. The
	// allow-list is enforced below by refusing the events, not by hiding
	// the answer.
	origin := string(ctx.Request.Header.Peek("Origin"))
	if origin != "" {
		allowCORS(ctx, origin)
	}
	if !ok {
		httpapi.Error(ctx, fasthttp.StatusNotFound, "no such endpoint: /v1/"+name)
		return
	}
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		httpapi.Error(ctx, fasthttp.StatusMethodNotAllowed, "use POST")
		return
	}
	single := call != "batch"
	now := time.Now()
	addr := c.clientAddr(ctx)
	// A key in the Authorization header is known before the body is read:
	// an address already over its limit is refused without decoding
	// anything, unless it sends with a server key.
	keyID := c.writeKey(ctx, "")
	if !c.server[keyID] {
		if wait, over := c.overIP(addr, now); over {
			c.tooMany(ctx, wait, limitRateIP, 1)
			return
		}
	}
	body, err := requestBody(ctx)
	if err != nil {
		c.badRequest(ctx, err, single)
		return
	}
	b, err := segment.Parse(body, call)
	if err != nil {
		c.badRequest(ctx, err, single)
		return
	}
	// The events are garbage once the answer is written: every path below
	// ends the request, and the records hold their own copy of the bytes.
	defer b.Release()
	if keyID == "" {
		keyID = c.writeKey(ctx, b.WriteKey)
	}
	if keyID == "" {
		c.unauthorized(ctx)
		return
	}
	server := c.server[keyID]
	r := &segment.Request{WriteKeyID: keyID, ReceivedAt: now.UTC().Truncate(time.Millisecond), UserAgent: string(ctx.UserAgent()),
		IP: addrString(addr), Browser: origin != "", Server: server, MaxEventAge: c.cfg.MaxEventAge, AnonymizeIP: c.cfg.AnonymizeIP}
	if origin != "" && !c.originAllowed(r.WriteKeyID, origin) {
		c.m.rejected.WithLabelValues("origin").Inc()
		httpapi.Error(ctx, fasthttp.StatusForbidden, "origin not allowed for this write key (see collector.cors-origins)")
		return
	}
	if gpc(ctx) {
		// Global Privacy Control: the person asked not to be tracked.
		// The SDK is told all is well (it must not retry), nothing is kept.
		c.m.gpc.WithLabelValues("/v1").Inc()
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"success":true,"accepted":0,"gpc":true}`)
		return
	}
	if !server {
		// Every message takes one event, refused ones too (and every
		// request one at least), before any is decoded: a flood of
		// invalid messages is limited like valid ones.
		n := b.Messages()
		if wait, limit, ok := c.limit(addr, keyID, n, now); !ok {
			c.tooMany(ctx, wait, limit, n)
			return
		}
	}
	events, rejected, err := b.Events(r)
	for _, rj := range rejected {
		c.m.rejectedEvents.WithLabelValues(rejectReason(rj.Limit, rj.Scope)).Inc()
	}
	if err != nil {
		if rejected == nil {
			c.badRequest(ctx, err, single)
			return
		}
		c.refuseBatch(ctx, err, rejected)
		return
	}
	// User agents are checked for browser traffic only: server-side SDKs
	// (analytics-node, analytics-go) legitimately send a library's agent.
	// A context.userAgent is a browser's, relayed, so it is checked too.
	for _, e := range events {
		if origin != "" || e.UserAgent != r.UserAgent {
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
	if !single && isBeaconBatch(b.Context()) {
		for _, e := range events {
			if e.AnonymousID != "" {
				c.setAnonCookie(ctx, origin, validAnonID(e.AnonymousID))
				break
			}
		}
	}
	ctx.SetContentType("application/json")
	if len(rejected) == 0 {
		ctx.SetBodyString(`{"success":true,"accepted":` + strconv.Itoa(len(events)) + "}")
		return
	}
	httpapi.WriteJSON(ctx, fasthttp.StatusOK, batchAnswer{Success: true, Accepted: len(events), Rejected: listed(rejected), RejectedCount: len(rejected)})
}

// batchAnswer is the answer to a batch some of whose messages were refused:
// 200 with the others accepted, or 400 (with the error fields) when none was.
type batchAnswer struct {
	Success       bool               `json:"success"`
	Accepted      int                `json:"accepted"`
	Rejected      []segment.Rejected `json:"rejected"`
	RejectedCount int                `json:"rejected_count"`
}

// maxListed is how many refused messages an answer lists (with their
// count): a batch of tiny invalid messages must not make an answer many
// times its size.
const maxListed = 100

func listed(rejected []segment.Rejected) []segment.Rejected {
	return rejected[:min(len(rejected), maxListed)]
}

// refuseBatch answers 400 to a batch none of whose messages is valid.
func (c *Collector) refuseBatch(ctx *fasthttp.RequestCtx, err error, rejected []segment.Rejected) {
	eb := httpapi.ErrorBody{Error: err.Error()}
	var se *segment.Error
	if errors.As(err, &se) {
		eb.Limit = string(se.Limit)
	}
	eb.Fill(fasthttp.StatusBadRequest)
	c.m.rejected.WithLabelValues(rejectReason(segment.Limit(eb.Limit), se != nil && se.Scope)).Inc()
	httpapi.WriteJSON(ctx, fasthttp.StatusBadRequest, struct {
		httpapi.ErrorBody
		Accepted      int                `json:"accepted"`
		Rejected      []segment.Rejected `json:"rejected"`
		RejectedCount int                `json:"rejected_count"`
	}{eb, 0, listed(rejected), len(rejected)})
}

// rejectReason is the metric label of a refusal for limit ("" = none hit),
// or for the key's scope.
func rejectReason(limit segment.Limit, scope bool) string {
	switch {
	case limit != "":
		return "limit"
	case scope:
		return "scope"
	}
	return "malformed"
}

// addrString is a's text, "" for none.
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
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

// appendRecords encodes events as Kafka records into buf (grown as needed)
// and returns them with the buffer: keys and values are sub-slices of it, cut
// after the last append so a reallocation cannot strand them.
func appendRecords(buf []byte, events []*event.Event) ([]stream.Record, []byte, error) {
	recs := make([]stream.Record, len(events))
	var small [16][2]int
	ends := small[:0]
	need := 0
	for _, e := range events {
		need += len(e.Key()) + event.SizeHint(e)
	}
	if cap(buf) < need {
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
	gz, err := gzipCoded(ctx.Request.Header.ContentEncoding())
	if err != nil {
		return nil, err
	}
	if gz {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, &segment.Error{Field: "body", Msg: "bad gzip: " + err.Error()}
		}
		// Read one byte past the limit to tell "at the limit" from "over".
		out, err := io.ReadAll(io.LimitReader(zr, segment.MaxBatchBytes+1))
		if err != nil {
			return nil, &segment.Error{Field: "body", Msg: "bad gzip: " + err.Error()}
		}
		body = out
	}
	if len(body) > segment.MaxBatchBytes {
		return nil, segment.ErrBatchSize()
	}
	return body, nil
}

// gzipCoded reads a request's Content-Encoding: whether the body is gzipped
// (gzip, or its old name x-gzip), or the error naming a coding the collector
// does not decode (deflate, br, zstd …, or gzip twice). Such a body read as
// it is would be refused as malformed JSON, or — sent by a client whose body
// is not in fact compressed — stored although it says it is something else.
func gzipCoded(h []byte) (bool, error) {
	if len(h) == 0 {
		return false, nil
	}
	gz := false
	for len(h) > 0 {
		var coding []byte
		coding, h, _ = bytes.Cut(h, []byte{','})
		coding = bytes.TrimSpace(coding)
		isGzip := bytes.EqualFold(coding, []byte("gzip")) || bytes.EqualFold(coding, []byte("x-gzip"))
		switch {
		case len(coding) == 0 || bytes.EqualFold(coding, []byte("identity")):
		case isGzip && !gz:
			gz = true
		case isGzip:
			return false, &segment.Error{Field: "Content-Encoding", Msg: "gzip twice: the collector decodes one gzip layer; send the body gzipped once or as it is"}
		default:
			if len(coding) > 32 {
				coding = append(coding[:32:32], "…"...)
			}
			return false, &segment.Error{Field: "Content-Encoding", Msg: fmt.Sprintf("%q is not a content coding the collector reads: send the body gzipped (gzip) or as it is", coding)}
		}
	}
	return gz, nil
}

func (c *Collector) unauthorized(ctx *fasthttp.RequestCtx) {
	c.m.rejected.WithLabelValues("auth").Inc()
	ctx.Response.Header.Set("WWW-Authenticate", `Basic realm="leadstream"`)
	httpapi.Error(ctx, fasthttp.StatusUnauthorized, "unknown or missing write key (HTTP Basic user name or writeKey in the body)")
}

// badRequest answers 400 with err; a limit hit (a *segment.Error with its
// limit set) is counted as such and named in the body's "limit". A message
// only a server key may send is answered 403. single says the request is
// one call: its refusal counts one refused event too.
func (c *Collector) badRequest(ctx *fasthttp.RequestCtx, err error, single bool) {
	var limit segment.Limit
	var scope bool
	var se *segment.Error
	if errors.As(err, &se) {
		limit, scope = se.Limit, se.Scope
	}
	reason := rejectReason(limit, scope)
	c.m.rejected.WithLabelValues(reason).Inc()
	if single {
		c.m.rejectedEvents.WithLabelValues(reason).Inc()
	}
	code := fasthttp.StatusBadRequest
	if scope {
		code = fasthttp.StatusForbidden
	}
	httpapi.WriteError(ctx, code, httpapi.ErrorBody{Error: err.Error(), Limit: string(limit)})
}
