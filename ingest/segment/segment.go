// Package segment is the Segment wire format the collector speaks. Parse
// checks a request body and decodes it — one call (/v1/track, /v1/t …) or a
// batch (/v1/batch, /v1/b) with its writeKey, sentAt, context and
// integrations — and Body.Events maps every call onto a canonical event
// (event.Event): the type mapping, ids, page and campaign fields, the batch
// context and integrations merged into each message's, the clock-skew
// correction and the client's IP. A batch's messages are judged one by one:
// the valid ones become events, each invalid one is
// reported alone (Rejected).
//
// It does no I/O: package ingest's HTTP handlers are a thin adapter over
// Parse and Body.Events (authentication, CORS, bots, Kafka).
//
// Everything reads the body in one pass over one JSON scanner
// (internal/jsonx): the body is validated once, a batch is cut into its
// messages and each message decoded without copying its objects, and
// anything unusual falls back to encoding/json, which gives the same result.
// The fuzz tests hold the fast paths to encoding/json and the whole decoding
// to the reference decoding in reference_test.go, written over encoding/json.
package segment

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/jsonx"
)

// Segment's documented limits.
const (
	MaxEventBytes = 32 << 10  // 32 KB per event
	MaxBatchBytes = 500 << 10 // 500 KB per batch request
)

// Limit is a Segment limit a request or a message can hit; a refusal for it
// names it in the answer's "limit".
type Limit string

// The limits, as answers name them.
const (
	LimitEventSize Limit = "event_size_32KB"  // MaxEventBytes per event (a message with its batch's context)
	LimitBatchSize Limit = "batch_size_500KB" // MaxBatchBytes per request, after gunzip
)

// Error is a request or a message refused: the field that is wrong (e.g.
// "batch[3].event"; empty for the body as a whole) and, when a limit is what
// was hit, which one.
type Error struct {
	Field string
	Msg   string
	Limit Limit // "" = not a limit
	// Scope: the message is well formed, but only a server write key may
	// send it (Request.Server); a browser key sent it.
	Scope bool
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func errField(field, format string, args ...any) error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ErrEventSize is the error of an event of n bytes, over MaxEventBytes.
func ErrEventSize(field string, n int) error {
	return &Error{Field: field, Limit: LimitEventSize,
		Msg: fmt.Sprintf("event is %d bytes, over the limit of 32 KB (%d bytes) per event", n, MaxEventBytes)}
}

// ErrBatchSize is the error of a request body over MaxBatchBytes.
func ErrBatchSize() error {
	return &Error{Field: "body", Limit: LimitBatchSize,
		Msg: fmt.Sprintf("request is over the limit of 500 KB (%d bytes) per batch", MaxBatchBytes)}
}

// Call returns the call an endpoint name under /v1/ stands for — "batch"
// for a batch, else the type of its one call — with Segment's short names
// (t, p, i, g, a, s, b) as analytics.js and the mobile SDKs use them.
func Call(name string) (call string, ok bool) {
	switch name {
	case "batch", "import", "b":
		return "batch", true
	case "track", "t":
		return "track", true
	case "page", "p":
		return "page", true
	case "screen", "s":
		return "screen", true
	case "identify", "i":
		return "identify", true
	case "group", "g":
		return "group", true
	case "alias", "a":
		return "alias", true
	}
	return "", false
}

// Request is what every event of one HTTP request shares.
type Request struct {
	WriteKeyID string    // the authenticated write key's id
	ReceivedAt time.Time // the collector's clock when the body was read, UTC, whole milliseconds
	IP         string    // the client's address: the connection's, or what trusted proxies forwarded
	UserAgent  string    // the request's User-Agent header
	// Browser says the request came from a browser (it has an Origin):
	// then IP wins over a context.ip, which a page can set to anything.
	// Server SDKs may relay their visitor's address in context.ip.
	Browser bool
	// Server says the write key is a server key. A browser key (write keys
	// are public: every page that runs the beacon holds one) may not send
	// what would forge revenue, email engagement or identities: "Deal Won",
	// "Email Opened" and "Email Link Clicked" tracks, alias calls, and
	// events whose event time is more than MaxEventAge before ReceivedAt;
	// each such message is refused alone (an *Error with Scope set).
	Server bool
	// MaxEventAge bounds how far back a browser key may date an event
	// (its event time, after the clock-skew correction); 0 = no bound.
	MaxEventAge time.Duration
	// AnonymizeIP cuts the client address kept on each event, and the
	// context.ip kept in its context, to its network (AnonymizeIP).
	AnonymizeIP bool
}

// Rejected is a message of a batch refused alone: its place in the batch,
// its messageId (when it has a string one) and what was wrong.
type Rejected struct {
	Index     int    `json:"index"`
	MessageID string `json:"messageId,omitempty"` // when the message has a string one (README)
	Error     string `json:"error"`
	Limit     Limit  `json:"limit,omitempty"`
	Scope     bool   `json:"-"` // refused only for the key's scope (Error.Scope)
}

// Body is a request body that passed Parse.
type Body struct {
	// WriteKey is the writeKey written in the body ("" when none); HTTP
	// Basic's user name wins over it.
	WriteKey string

	call  string // "batch" or the type of the one call
	raw   []byte // the whole body
	large bool   // the body may hold a number too large for a float64 (jsonx.Check)
	msg   *message
	batch batch
	bctx  batchContext

	events []*event.Event // made by Events, recycled by Release
}

// Parse checks and decodes body, posted to the endpoint of call (see Call).
// A body it refuses is malformed or over a limit (a *Error). Parse keeps
// sub-slices of body: body must not change until Release.
func Parse(body []byte, call string) (*Body, error) {
	valid, large := jsonx.Check(body)
	if !valid {
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, &Error{Msg: fmt.Sprintf("malformed JSON: %v", err)}
		}
		return nil, &Error{Msg: "malformed JSON"}
	}
	b := &Body{call: call, raw: body, large: large}
	if call == "batch" {
		var err error
		if b.batch, err = decodeBatch(body); err != nil {
			return nil, &Error{Msg: "malformed JSON: " + err.Error()}
		}
		if b.batch.Batch == nil {
			return nil, errField("batch", `a "batch" array is required`)
		}
		if err := b.bctx.init(b.batch.Context, b.batch.SentAt); err != nil {
			return nil, err
		}
		if err := b.bctx.initIntegrations(b.batch.Integrations); err != nil {
			return nil, err
		}
		b.WriteKey = b.batch.WriteKey
		return b, nil
	}
	if len(body) > MaxEventBytes {
		return nil, ErrEventSize("body", len(body))
	}
	// One decode serves both the write key and the event. A body the
	// message does not decode from is left to Events, which says what is
	// wrong with it once the key was checked (401 comes before 400).
	m := getMessage()
	if decodeMessage(body, m) == nil {
		b.msg, b.WriteKey = m, m.WriteKey
		return b, nil
	}
	putMessage(m)
	var k struct {
		WriteKey string `json:"writeKey"`
	}
	if err := json.Unmarshal(body, &k); err != nil {
		return nil, &Error{Msg: "malformed JSON: " + err.Error()}
	}
	b.WriteKey = k.WriteKey
	return b, nil
}

// Messages is how many calls the body holds: a batch's messages, or 1.
func (b *Body) Messages() int {
	if b.call != "batch" {
		return 1
	}
	return len(b.batch.Batch)
}

// Context is the batch's context object as sent (nil for a single call).
func (b *Body) Context() json.RawMessage { return b.batch.Context }

// Events maps the body's calls onto events for request r. For a batch,
// every message is judged alone: the valid ones are returned, each invalid
// one is listed in rejected; err is set when none is valid (and the batch
// holds any). A single call that is invalid is err. The events stay valid
// until Release.
func (b *Body) Events(r *Request) (events []*event.Event, rejected []Rejected, err error) {
	if b.call != "batch" {
		var e *event.Event
		if b.msg != nil {
			if err := checkFinite(b.raw, b.large, single(b.call)); err != nil {
				return nil, nil, err
			}
			e, err = mapMessage(b.msg, b.raw, single(b.call), b.call, r, nil)
		} else {
			e, err = decodeAndMap(b.raw, b.large, single(b.call), b.call, r, nil)
		}
		if err != nil {
			return nil, nil, err
		}
		b.events = append(b.events[:0], e)
		return b.events, nil, nil
	}
	if b.large {
		// The batch's context is merged into every message: a number in
		// it that no float64 holds refuses them all.
		if path, num, ok := nonFinite(b.batch.Context); ok {
			return nil, nil, errNonFinite("context"+path, num)
		}
		if path, num, ok := nonFinite(b.batch.Integrations); ok {
			return nil, nil, errNonFinite("integrations"+path, num)
		}
	}
	msgs := b.batch.Batch
	b.events = make([]*event.Event, 0, len(msgs))
	for i, raw := range msgs {
		e, err := decodeAndMap(raw, b.large, loc{index: i}, "", r, &b.bctx)
		if b.bctx.added > MaxBatchBytes {
			// The events made so far stay in b.events for Release.
			return nil, nil, b.bctx.errAdded()
		}
		if err != nil {
			rj := Rejected{Index: i, MessageID: messageID(raw), Error: err.Error()}
			if fe, ok := err.(*Error); ok {
				rj.Limit, rj.Scope = fe.Limit, fe.Scope
			}
			rejected = append(rejected, rj)
			continue
		}
		b.events = append(b.events, e)
	}
	if len(b.events) == 0 && len(rejected) > 0 {
		err = &Error{Field: "batch", Msg: fmt.Sprintf("none of its %d messages is valid (see rejected)", len(rejected)), Limit: commonLimit(rejected),
			Scope: !slices.ContainsFunc(rejected, func(r Rejected) bool { return !r.Scope })}
	}
	return b.events, rejected, err
}

// commonLimit is the limit every rejected message hit, or "".
func commonLimit(rs []Rejected) Limit {
	l := rs[0].Limit
	for _, r := range rs[1:] {
		if r.Limit != l {
			return ""
		}
	}
	return l
}

// messageID is the messageId of a message that could not be mapped, when it
// is an object with a string messageId.
func messageID(raw []byte) string {
	var m struct {
		MessageID json.RawMessage `json:"messageId"`
	}
	if json.Unmarshal(raw, &m) != nil || len(m.MessageID) == 0 || m.MessageID[0] != '"' {
		return ""
	}
	var s string
	if json.Unmarshal(m.MessageID, &s) != nil || len(s) > 256 {
		return ""
	}
	return s
}

// Release recycles the body's decoded message and events; nothing may use
// them afterwards.
func (b *Body) Release() {
	if b.msg != nil {
		putMessage(b.msg)
		b.msg = nil
	}
	putEvents(b.events)
	b.events = nil
}

// decodeAndMap decodes one call that passed jsonx.Valid (alone or as part
// of its request body) and maps it onto an event. large is what jsonx.Check
// said of the body it is part of. forceType is set by the single-call
// endpoints (/v1/track …), which imply the type; bc is the batch's context
// and sentAt (nil for a single call).
func decodeAndMap(raw []byte, large bool, at loc, forceType string, r *Request, bc *batchContext) (*event.Event, error) {
	if len(raw) > MaxEventBytes {
		return nil, ErrEventSize(at.String(), len(raw))
	}
	if err := checkFinite(raw, large, at); err != nil {
		return nil, err
	}
	m := getMessage()
	defer putMessage(m)
	if err := decodeMessage(raw, m); err != nil {
		return nil, errField(at.String(), "malformed JSON: %v", err)
	}
	return mapMessage(m, raw, at, forceType, r, bc)
}

// eventPool recycles the events of finished requests (putEvents): an event
// is large, and a batch makes one per message.
var eventPool sync.Pool

func getEvent() *event.Event {
	if e, _ := eventPool.Get().(*event.Event); e != nil {
		return e
	}
	return new(event.Event)
}

func putEvents(es []*event.Event) {
	for _, e := range es {
		*e = event.Event{}
		eventPool.Put(e)
	}
}

// messages recycles decoded messages: an event keeps the strings and raw
// objects decoded into one, never the message itself.
var messages sync.Pool

func getMessage() *message {
	if m, _ := messages.Get().(*message); m != nil {
		return m
	}
	return new(message)
}

func putMessage(m *message) {
	*m = message{}
	messages.Put(m)
}
