package segment

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/jsonx"
)

// segContext is what the collector reads from a call's context. The whole
// object is kept too (event.Event.Context).
type segContext struct {
	IP        string          `json:"ip"`
	UserAgent string          `json:"userAgent"`
	Page      *segPage        `json:"page"`
	Campaign  *segCampaign    `json:"campaign"`
	Traits    json.RawMessage `json:"traits"`
}

type segPage struct {
	URL      string `json:"url"`
	Path     string `json:"path"`
	Referrer string `json:"referrer"`
	Title    string `json:"title"`
	Search   string `json:"search"`
}

type segCampaign struct {
	Name    string `json:"name"`
	Source  string `json:"source"`
	Medium  string `json:"medium"`
	Term    string `json:"term"`
	Content string `json:"content"`
}

// batchContext is what a batch gives each of its messages: its context and
// its integrations, each merged into theirs, and its sentAt.
type batchContext struct {
	raw    json.RawMessage // the batch's context object; nil when absent, null or {}
	parsed segContext      // raw decoded
	// integrations is the batch's integrations object; nil when absent,
	// null or {}.
	integrations json.RawMessage
	// readKeys: raw has a key segContext reads (in any case, as
	// encoding/json matches them), so a message's merged context must be
	// decoded again rather than taken from the message's own.
	readKeys bool
	sentAt   string
	// added counts the bytes the merges (context and integrations) added
	// to the batch's messages, and the request's User-Agent each message
	// without a context.userAgent is stored with (uaAdded of them),
	// bounded by MaxBatchBytes: a large context, or a 16 KB User-Agent
	// header, repeated in thousands of small messages must not turn one
	// request into hundreds of megabytes.
	added, uaAdded int
	// ua is the stored size of the request's User-Agent (JSON-escaped as
	// records hold it); uaKnown says it was measured.
	ua      int
	uaKnown bool
}

// addUserAgent counts the request's User-Agent ua, stored with a message
// that has none of its own, in what the batch's messages add.
func (bc *batchContext) addUserAgent(ua string) {
	if !bc.uaKnown {
		bc.ua, bc.uaKnown = storedStringSize(ua), true
	}
	bc.added += bc.ua
	bc.uaAdded += bc.ua
}

// errAdded is the refusal of a batch whose messages, with what the batch
// adds to each (added), are over MaxBatchBytes.
func (bc *batchContext) errAdded() error {
	if 2*bc.uaAdded > bc.added {
		return &Error{Field: "body", Limit: LimitBatchSize,
			Msg: fmt.Sprintf("the request's User-Agent header (%d bytes as stored), stored with each message without a context.userAgent, adds over %d bytes to the batch (with its context and integrations merged into its messages), the limit of 500 KB per batch", bc.ua, MaxBatchBytes)}
	}
	return &Error{Field: "context", Limit: LimitBatchSize,
		Msg: fmt.Sprintf("the batch's context merged into its messages adds over %d bytes (with its integrations, merged likewise, and the request's User-Agent), the limit of 500 KB per batch", MaxBatchBytes)}
}

// storedStringSize is the size of s as a record stores it (event.AppendJSON:
// quoted, with <, > and &, U+2028 and U+2029 escaped in six bytes, each byte
// that is not UTF-8 as \ufffd), or a little more: a control character counts
// six bytes (\n takes two).
func storedStringSize(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				n += 2
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1, r == '\u2028', r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}

func (bc *batchContext) init(raw json.RawMessage, sentAt string) error {
	bc.sentAt = sentAt
	if !isObject(raw) {
		return errNotObject("context")
	}
	if raw = compactObject(raw); len(raw) == 0 {
		return nil
	}
	if len(raw) > MaxEventBytes {
		// Each message carries it: a large one would multiply in Kafka.
		return &Error{Field: "context", Limit: LimitEventSize,
			Msg: fmt.Sprintf("the batch's context is %d bytes, over the limit of 32 KB (%d bytes) per event it is merged into", len(raw), MaxEventBytes)}
	}
	if err := decodeContext(raw, &bc.parsed); err != nil {
		return errField("context", "malformed JSON: %v", err)
	}
	bc.raw = raw
	eachMember(raw, func(key string, _ []byte) {
		for _, k := range segContextKeys {
			bc.readKeys = bc.readKeys || strings.EqualFold(key, k)
		}
	})
	return nil
}

// initIntegrations takes the batch's integrations (raw as sent), which
// Segment merges into each message's as it does its context: held to the
// same limits as the context.
func (bc *batchContext) initIntegrations(raw json.RawMessage) error {
	if !isObject(raw) {
		return errNotObject("integrations")
	}
	if raw = compactObject(raw); len(raw) > MaxEventBytes {
		return &Error{Field: "integrations", Limit: LimitEventSize,
			Msg: fmt.Sprintf("the batch's integrations are %d bytes, over the limit of 32 KB (%d bytes) per event they are merged into", len(raw), MaxEventBytes)}
	}
	bc.integrations = raw
	return nil
}

// merge returns the context of a message whose own context is own (an
// object, null or absent): the batch's members whose keys the message does
// not have, then the message's members, so the message's fields win — also
// for a decoder that matches keys regardless of case, where the later key
// wins.
func (bc *batchContext) merge(own json.RawMessage) json.RawMessage {
	return mergeObjects(bc.raw, own)
}

// mergeObjects merges the batch's object base (compacted: nil when empty)
// into a message's own (an object, null or absent), as merge says.
func mergeObjects(base, own json.RawMessage) json.RawMessage {
	if len(base) == 0 {
		return own
	}
	if len(own) == 0 || string(own) == "null" {
		return base
	}
	var small [16]string
	keys := small[:0]
	eachMember(own, func(key string, _ []byte) { keys = append(keys, key) })
	out := make([]byte, 0, len(base)+len(own))
	out = append(out, '{')
	add := func(member []byte) {
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, member...)
	}
	has := func(key string) bool { return slices.Contains(keys, key) }
	if len(keys) > len(small) {
		// Many keys (a hostile context can have thousands): a set, so a
		// batch costs keys + keys per message, not keys × keys.
		set := make(map[string]struct{}, len(keys))
		for _, k := range keys {
			set[k] = struct{}{}
		}
		has = func(key string) bool { _, ok := set[key]; return ok }
	}
	eachMember(base, func(key string, member []byte) {
		if !has(key) {
			add(member)
		}
	})
	eachMember(own, func(_ string, member []byte) { add(member) })
	return append(out, '}')
}

// eachMember calls f with the key (unescaped) and the bytes `"key":value` of
// every member of the valid JSON object b, in order.
func eachMember(b []byte, f func(key string, member []byte)) {
	i := jsonx.SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return
	}
	i = jsonx.SkipSpace(b, i+1)
	for i < len(b) && b[i] == '"' {
		start := i
		end := jsonx.SkipValidString(b, i)
		key := string(b[i+1 : end-1])
		if strings.IndexByte(key, '\\') >= 0 || !utf8.ValidString(key) {
			// Escapes, or bytes that are not UTF-8, which the decoder
			// reads as U+FFFD (so "\xcb" and "\xd0" are one key to it).
			_ = json.Unmarshal(b[i:end], &key) // valid input: cannot fail
		}
		i = jsonx.SkipSpace(b, end)
		i = jsonx.SkipSpace(b, i+1) // past ':'
		i = jsonx.SkipValidValue(b, i)
		f(key, b[start:i])
		i = jsonx.SkipSpace(b, i)
		if i >= len(b) || b[i] != ',' {
			return
		}
		i = jsonx.SkipSpace(b, i+1)
	}
}

// resolveContext returns the context of m (merged with the batch's when bc
// is set) as kept on the event, and its decoded fields (nil when there is no
// context). The message with the merged context must stay within
// MaxEventBytes.
func resolveContext(m *message, raw []byte, at loc, bc *batchContext) (json.RawMessage, *segContext, error) {
	if !isObject(m.Context) {
		return nil, nil, errNotObject(at.field(".context"))
	}
	own := m.Context
	var c *segContext
	if m.parsed {
		c = &m.ctx
	}
	if bc == nil || len(bc.raw) == 0 {
		return own, c, nil
	}
	merged := bc.merge(own)
	bc.added += len(merged) - len(own)
	if n := len(raw) - len(own) + len(merged); n > MaxEventBytes {
		return nil, nil, &Error{Field: at.String(), Limit: LimitEventSize,
			Msg: fmt.Sprintf("event is %d bytes with its batch's context, over the limit of 32 KB (%d bytes) per event", n, MaxEventBytes)}
	}
	switch {
	case c == nil:
		c = &bc.parsed
	case bc.readKeys:
		// The batch's context has fields the collector reads: decode
		// the merged one, where the message's own win.
		c = &segContext{}
		if err := decodeContext(merged, c); err != nil {
			return nil, nil, errField(at.field(".context"), "malformed JSON: %v", err)
		}
	}
	return merged, c, nil
}

// resolveIntegrations returns the integrations of m merged with its batch's
// (when bc has any). ctxRaw is m's context as resolveContext returned it:
// the message with both merges must stay within MaxEventBytes.
func resolveIntegrations(m *message, raw []byte, ctxRaw json.RawMessage, at loc, bc *batchContext) (json.RawMessage, error) {
	own := m.Integrations
	if bc == nil || len(bc.integrations) == 0 {
		return own, nil
	}
	merged := mergeObjects(bc.integrations, own)
	bc.added += len(merged) - len(own)
	if n := len(raw) - len(m.Context) + len(ctxRaw) - len(own) + len(merged); n > MaxEventBytes {
		return nil, &Error{Field: at.String(), Limit: LimitEventSize,
			Msg: fmt.Sprintf("event is %d bytes with its batch's context and integrations, over the limit of 32 KB (%d bytes) per event", n, MaxEventBytes)}
	}
	return merged, nil
}

// applyContext fills e from a call's context: the client's address and user
// agent, the page, the campaign and what its URL says.
func applyContext(e *event.Event, c *segContext) {
	e.IP, e.UserAgent = c.IP, c.UserAgent
	if p := c.Page; p != nil {
		e.URL, e.Path, e.Referrer = p.URL, p.Path, p.Referrer
		if e.Title == "" {
			e.Title = p.Title
		}
	}
	if c := c.Campaign; c != nil {
		e.UTMCampaign, e.UTMSource, e.UTMMedium, e.UTMTerm, e.UTMContent = c.Name, c.Source, c.Medium, c.Term, c.Content
	}
	FillFromURL(e)
}

// decodeContext decodes a context object of valid input into c (zero).
func decodeContext(raw []byte, c *segContext) error {
	s := scan{b: raw}
	if end := s.context(jsonx.SkipSpace(raw, 0), c); end >= 0 && jsonx.SkipSpace(raw, end) == len(raw) {
		return nil
	}
	*c = segContext{}
	return json.Unmarshal(raw, c)
}

// compactObject drops empty and null objects so the topic carries no noise.
func compactObject(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" || string(raw) == "{}" {
		return nil
	}
	return raw
}

// isObject reports whether raw (a value of valid JSON) is an object, null
// or absent: what the object fields of a call may be.
func isObject(raw json.RawMessage) bool {
	return len(raw) == 0 || raw[0] == '{' || string(raw) == "null"
}

func errNotObject(field string) error { return errField(field, "must be a JSON object") }
