package segment

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/leadstream/leadstream/internal/jsonx"
)

// decodeMessage decodes one call that passed jsonx.Valid (alone or inside
// its request body) into m, which must be zero. The usual message — known
// keys spelt exactly and each at most once, strings without escapes — is
// read in one pass: its strings are substrings of one copy of raw, its raw
// objects sub-slices of raw (so they live as long as raw does), and its
// context is decoded on the way. Anything else is left to encoding/json,
// which gives the same result for the usual messages (FuzzMessageFastPath).
func decodeMessage(raw []byte, m *message) error {
	if fastMessage(raw, m) {
		return nil
	}
	*m = message{}
	if err := json.Unmarshal(raw, m); err != nil {
		return err
	}
	if len(m.Context) > 0 && m.Context[0] == '{' {
		if err := decodeContext(m.Context, &m.ctx); err != nil {
			return err
		}
		m.parsed = true
	}
	return nil
}

// scan is the state of one fast decode.
type scan struct {
	b    []byte
	src  string // string(b), made on the first string field
	seen uint32 // fields already set, for the duplicate check
}

// Bits of scan.seen: the message's fields, then its context's, page's and
// campaign's (each struct is read once, so one set serves them all).
const (
	fType = 1 << iota
	fMessageID
	fTimestamp
	fOriginalTimestamp
	fSentAt
	fAnonymousID
	fUserID
	fPreviousID
	fGroupID
	fEvent
	fName
	fProperties
	fTraits
	fContext
	fIntegrations
	fWriteKey
	fCtxIP
	fCtxUserAgent
	fCtxPage
	fCtxCampaign
	fCtxTraits
	fPageURL
	fPagePath
	fPageReferrer
	fPageTitle
	fPageSearch
	fCampName
	fCampSource
	fCampMedium
	fCampTerm
	fCampContent
	fCategory
)

var (
	messageKeys     = []string{"type", "messageId", "timestamp", "originalTimestamp", "sentAt", "anonymousId", "userId", "previousId", "groupId", "event", "name", "properties", "traits", "context", "integrations", "writeKey", "category"}
	segContextKeys  = []string{"ip", "userAgent", "page", "campaign", "traits"}
	segPageKeys     = []string{"url", "path", "referrer", "title", "search"}
	segCampaignKeys = []string{"name", "source", "medium", "term", "content"}
)

func fastMessage(b []byte, m *message) bool {
	s := scan{b: b}
	i := jsonx.SkipSpace(b, 0)
	end := jsonx.Members(b, i, func(key []byte, v int) int {
		switch string(key) {
		case "type":
			return s.str(v, fType, &m.Type)
		case "messageId":
			return s.str(v, fMessageID, &m.MessageID)
		case "timestamp":
			return s.str(v, fTimestamp, &m.Timestamp)
		case "originalTimestamp":
			return s.str(v, fOriginalTimestamp, &m.OriginalTimestamp)
		case "sentAt":
			return s.str(v, fSentAt, &m.SentAt)
		case "anonymousId":
			return s.raw(v, fAnonymousID, &m.AnonymousID)
		case "userId":
			return s.raw(v, fUserID, &m.UserID)
		case "previousId":
			return s.raw(v, fPreviousID, &m.PreviousID)
		case "groupId":
			return s.raw(v, fGroupID, &m.GroupID)
		case "event":
			return s.str(v, fEvent, &m.Event)
		case "name":
			return s.str(v, fName, &m.Name)
		case "properties":
			return s.raw(v, fProperties, &m.Properties)
		case "traits":
			return s.raw(v, fTraits, &m.Traits)
		case "integrations":
			return s.raw(v, fIntegrations, &m.Integrations)
		case "writeKey":
			return s.str(v, fWriteKey, &m.WriteKey)
		case "category":
			return s.raw(v, fCategory, &m.Category)
		case "context":
			if b[v] != '{' { // null, or not an object: kept raw, mapMessage says what is wrong
				return s.raw(v, fContext, &m.Context)
			}
			if !s.once(fContext) {
				return -1
			}
			end := s.context(v, &m.ctx)
			if end < 0 {
				return -1
			}
			m.Context, m.parsed = b[v:end:end], true
			return end
		}
		return s.unknown(key, v, messageKeys)
	})
	return end >= 0 && jsonx.SkipSpace(b, end) == len(b)
}

func (s *scan) context(i int, c *segContext) int {
	return jsonx.Members(s.b, i, func(key []byte, v int) int {
		switch string(key) {
		case "ip":
			return s.str(v, fCtxIP, &c.IP)
		case "userAgent":
			return s.str(v, fCtxUserAgent, &c.UserAgent)
		case "traits":
			return s.raw(v, fCtxTraits, &c.Traits)
		case "page":
			if !s.once(fCtxPage) {
				return -1
			}
			if s.b[v] == 'n' {
				return v + 4
			}
			c.Page = new(segPage)
			return s.page(v, c.Page)
		case "campaign":
			if !s.once(fCtxCampaign) {
				return -1
			}
			if s.b[v] == 'n' {
				return v + 4
			}
			cp := new(segCampaign)
			c.Campaign = cp
			return jsonx.Members(s.b, v, func(key []byte, v int) int {
				switch string(key) {
				case "name":
					return s.str(v, fCampName, &cp.Name)
				case "source":
					return s.str(v, fCampSource, &cp.Source)
				case "medium":
					return s.str(v, fCampMedium, &cp.Medium)
				case "term":
					return s.str(v, fCampTerm, &cp.Term)
				case "content":
					return s.str(v, fCampContent, &cp.Content)
				}
				return s.unknown(key, v, segCampaignKeys)
			})
		}
		return s.unknown(key, v, segContextKeys)
	})
}

func (s *scan) page(i int, p *segPage) int {
	return jsonx.Members(s.b, i, func(key []byte, v int) int {
		switch string(key) {
		case "url":
			return s.str(v, fPageURL, &p.URL)
		case "path":
			return s.str(v, fPagePath, &p.Path)
		case "referrer":
			return s.str(v, fPageReferrer, &p.Referrer)
		case "title":
			return s.str(v, fPageTitle, &p.Title)
		case "search":
			return s.str(v, fPageSearch, &p.Search)
		}
		return s.unknown(key, v, segPageKeys)
	})
}

// decodePage decodes the page fields of page properties (raw is a value of
// a message that passed jsonx.Valid).
func decodePage(raw []byte, p *segPage) error {
	s := scan{b: raw}
	if end := s.page(0, p); end >= 0 && end == len(raw) {
		return nil
	}
	*p = segPage{}
	return json.Unmarshal(raw, p)
}

// once marks field f as set and reports whether it was not set before.
func (s *scan) once(f uint32) bool {
	if s.seen&f != 0 {
		return false
	}
	s.seen |= f
	return true
}

// str reads the string at b[v] into dst when it has no escapes and is valid
// UTF-8 (its bytes are then its value); null leaves dst empty.
func (s *scan) str(v int, f uint32, dst *string) int {
	if !s.once(f) {
		return -1
	}
	b := s.b
	switch b[v] {
	case 'n':
		return v + 4
	case '"':
	default:
		return -1
	}
	end := jsonx.SkipValidString(b, v)
	val := b[v+1 : end-1]
	if bytes.IndexByte(val, '\\') >= 0 || !utf8.Valid(val) {
		return -1
	}
	if s.src == "" {
		s.src = string(b)
	}
	*dst = s.src[v+1 : end-1]
	return end
}

// raw sets dst to the bytes of the value at b[v], as the decoder does for a
// json.RawMessage (null included).
func (s *scan) raw(v int, f uint32, dst *json.RawMessage) int {
	if !s.once(f) {
		return -1
	}
	end := jsonx.SkipValidValue(s.b, v)
	*dst = s.b[v:end:end]
	return end
}

// unknown skips the value of a key the struct does not have, giving up when
// the decoder would take the key for one it has (it matches case-insensitively).
func (s *scan) unknown(key []byte, v int, known []string) int {
	for _, k := range known {
		if len(k) == len(key) && strings.EqualFold(k, string(key)) {
			return -1
		}
	}
	return jsonx.SkipValidValue(s.b, v)
}

// batch is the body of POST /v1/batch.
type batch struct {
	Batch        []json.RawMessage `json:"batch"`
	WriteKey     string            `json:"writeKey"`
	SentAt       string            `json:"sentAt"`
	Context      json.RawMessage   `json:"context"`
	Integrations json.RawMessage   `json:"integrations"`
}

// decodeBatch decodes a /v1/batch body that passed jsonx.Valid. The usual
// body (the five known keys spelt exactly, each once, plain strings) is cut
// into its messages without a decoder: each message is a sub-slice of body.
// Any other body goes through encoding/json, which gives the same result for
// the usual ones (FuzzSplitBatch).
func decodeBatch(body []byte) (batch, error) {
	if b, ok := splitBatch(body); ok {
		return b, nil
	}
	var b batch
	err := json.Unmarshal(body, &b)
	return b, err
}

// batchKeys are the members of a batch body, in the order of splitBatch's
// seen flags.
var batchKeys = [...]string{"batch", "writeKey", "sentAt", "context", "integrations"}

// splitBatch is decodeBatch's fast path; ok is false when it does not apply.
// body must have passed jsonx.Valid: values are skipped, not validated again.
func splitBatch(body []byte) (b batch, ok bool) {
	i := jsonx.SkipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return b, false
	}
	var seen [len(batchKeys)]bool
	i = jsonx.SkipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return b, true
	}
	for {
		if i >= len(body) || body[i] != '"' {
			return b, false
		}
		end := jsonx.SkipValidString(body, i)
		key := body[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			return b, false
		}
		i = jsonx.SkipSpace(body, end)
		if i >= len(body) || body[i] != ':' {
			return b, false
		}
		i = jsonx.SkipSpace(body, i+1)
		if i >= len(body) {
			return b, false
		}
		if string(key) == "batch" && body[i] == '[' {
			// The array is walked element by element rather than
			// skipped whole and then walked.
			if seen[0] {
				return b, false
			}
			seen[0] = true
			if i, ok = splitArray(body, i, &b); !ok {
				return b, false
			}
		} else if i, ok = splitMember(body, i, key, &b, &seen); !ok {
			return b, false
		}
		i = jsonx.SkipSpace(body, i)
		if i >= len(body) {
			return b, false
		}
		if body[i] == '}' {
			return b, jsonx.SkipSpace(body, i+1) == len(body)
		}
		if body[i] != ',' {
			return b, false
		}
		i = jsonx.SkipSpace(body, i+1)
	}
}

// splitArray cuts the "batch" array starting at body[i] into b.Batch and
// returns the index past it.
func splitArray(body []byte, i int, b *batch) (int, bool) {
	b.Batch = make([]json.RawMessage, 0, 64)
	i = jsonx.SkipSpace(body, i+1)
	for i < len(body) && body[i] != ']' {
		s := i
		i = jsonx.SkipValidValue(body, i)
		b.Batch = append(b.Batch, body[s:i:i])
		i = jsonx.SkipSpace(body, i)
		if i < len(body) && body[i] == ',' {
			i = jsonx.SkipSpace(body, i+1)
			if i < len(body) && body[i] == ']' {
				return i, false // a trailing comma
			}
		} else if i >= len(body) || body[i] != ']' {
			return i, false
		}
	}
	if i >= len(body) {
		return i, false
	}
	return i + 1, true
}

// splitMember takes the value at body[i] of a top-level member other than a
// "batch" array and returns the index past it; false leaves the body to the
// decoder.
func splitMember(body []byte, i int, key []byte, b *batch, seen *[len(batchKeys)]bool) (int, bool) {
	start := i
	i = jsonx.SkipValidValue(body, i)
	val := body[start:i]
	k := -1
	switch string(key) {
	case "batch":
		k = 0
		if val[0] != 'n' { // only null is left to the fast path
			return i, false
		}
	case "writeKey", "sentAt":
		k = 1
		str := ""
		if val[0] != 'n' { // null leaves it empty
			var ok bool
			if str, ok = jsonx.PlainString(val); !ok {
				return i, false
			}
		}
		if key[0] == 'w' {
			b.WriteKey = str
		} else {
			k = 2
			b.SentAt = str
		}
	case "context":
		k = 3
		b.Context = json.RawMessage(val[:len(val):len(val)])
	case "integrations":
		k = 4
		b.Integrations = json.RawMessage(val[:len(val):len(val)])
	default:
		// A key the decoder would match regardless of case, or one it
		// might fold from non-ASCII letters, is left to it.
		for _, c := range key {
			if c >= 0x80 {
				return i, false
			}
		}
		for _, known := range batchKeys {
			if strings.EqualFold(string(key), known) {
				return i, false
			}
		}
	}
	if k >= 0 {
		if seen[k] {
			return i, false // a repeated key: the decoder's rules apply
		}
		seen[k] = true
	}
	return i, true
}
