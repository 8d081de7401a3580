package ingest

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"encoding/json"
)

// decodeSegMessage decodes one Segment call that passed validJSON (alone or
// inside its request body) into m, which must be zero. The usual message —
// known keys spelt exactly and each at most once, strings without escapes —
// is read in one pass: its strings are substrings of one copy of raw, its raw
// objects sub-slices of raw (so they live as long as raw does). Anything
// else is left to the JSON decoder, which gives the same result for the
// usual messages (FuzzSegMessageFastPath).
func decodeSegMessage(raw []byte, m *segMessage) error {
	if fastSegMessage(raw, m) {
		return nil
	}
	*m = segMessage{}
	return json.Unmarshal(raw, m)
}

// segScan is the state of one fast decode.
type segScan struct {
	b    []byte
	src  string // string(b), made on the first string field
	seen uint32 // fields already set, for the duplicate check
}

// Bits of segScan.seen: the message's fields, then its context's, page's
// and campaign's (each struct is read once, so one set serves them all).
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
)

var (
	segMessageKeys  = []string{"type", "messageId", "timestamp", "originalTimestamp", "sentAt", "anonymousId", "userId", "previousId", "groupId", "event", "name", "properties", "traits", "context", "writeKey"}
	segContextKeys  = []string{"ip", "userAgent", "page", "campaign", "traits"}
	segPageKeys     = []string{"url", "path", "referrer", "title", "search"}
	segCampaignKeys = []string{"name", "source", "medium", "term", "content"}
)

func fastSegMessage(b []byte, m *segMessage) bool {
	s := segScan{b: b}
	i := skipWS(b, 0)
	end := s.object(i, func(key []byte, v int) int {
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
		case "writeKey":
			return s.str(v, fWriteKey, &m.WriteKey)
		case "context":
			if !s.once(fContext) {
				return -1
			}
			if b[v] == 'n' {
				return v + 4 // null: no context
			}
			m.Context = new(segContext)
			return s.context(v, m.Context)
		}
		return s.unknown(key, v, segMessageKeys)
	})
	return end >= 0 && skipWS(b, end) == len(b)
}

func (s *segScan) context(i int, c *segContext) int {
	return s.object(i, func(key []byte, v int) int {
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
			return s.object(v, func(key []byte, v int) int {
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

func (s *segScan) page(i int, p *segPage) int {
	return s.object(i, func(key []byte, v int) int {
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

// decodeSegPage is decodeSegMessage for the page fields of page properties
// (raw is a value of a message that passed validJSON).
func decodeSegPage(raw []byte, p *segPage) error {
	s := segScan{b: raw}
	if end := s.page(0, p); end >= 0 && end == len(raw) {
		return nil
	}
	*p = segPage{}
	return json.Unmarshal(raw, p)
}

// object walks the object at b[i], calling f with each key (without quotes)
// and the index of its value; f returns the index past the value, or -1 to
// give up. It returns the index past the object, or -1: also for keys with
// escapes or non-ASCII bytes, which the decoder may match in other ways.
func (s *segScan) object(i int, f func(key []byte, v int) int) int {
	b := s.b
	if i >= len(b) || b[i] != '{' {
		return -1
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return -1
		}
		end := skipValidString(b, i)
		key := b[i+1 : end-1]
		for _, c := range key {
			if c == '\\' || c >= utf8.RuneSelf {
				return -1
			}
		}
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ':' {
			return -1
		}
		i = skipWS(b, i+1)
		if i >= len(b) {
			return -1
		}
		if i = f(key, i); i < 0 {
			return -1
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case '}':
			return i + 1
		case ',':
			i = skipWS(b, i+1)
		default:
			return -1
		}
	}
}

// once marks field f as set and reports whether it was not set before.
func (s *segScan) once(f uint32) bool {
	if s.seen&f != 0 {
		return false
	}
	s.seen |= f
	return true
}

// str reads the string at b[v] into dst when it has no escapes and is valid
// UTF-8 (its bytes are then its value); null leaves dst empty.
func (s *segScan) str(v int, f uint32, dst *string) int {
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
	end := skipValidString(b, v)
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
func (s *segScan) raw(v int, f uint32, dst *json.RawMessage) int {
	if !s.once(f) {
		return -1
	}
	end := skipValidValue(s.b, v)
	*dst = s.b[v:end:end]
	return end
}

// unknown skips the value of a key the struct does not have, giving up when
// the decoder would take the key for one it has (it matches case-insensitively).
func (s *segScan) unknown(key []byte, v int, known []string) int {
	for _, k := range known {
		if len(k) == len(key) && strings.EqualFold(k, string(key)) {
			return -1
		}
	}
	return skipValidValue(s.b, v)
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValidString returns the index past the string starting at b[i] ==
// '"' of input that passed validJSON: it only looks for the closing quote.
func skipValidString(b []byte, i int) int {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		i += j
		n := 0 // backslashes right before the quote: an odd count escapes it
		for k := i - 1; b[k] == '\\'; k-- {
			n++
		}
		i++
		if n%2 == 0 {
			return i
		}
	}
}

// skipValidValue returns the index past the value starting at b[i] of input
// that passed validJSON; it checks nothing but bounds.
func skipValidValue(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			i = skipValidString(b, i)
			if depth == 0 {
				return i
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth <= 0 {
				return i + 1
			}
		default:
			if depth == 0 { // a number or a literal
				for i < len(b) {
					switch b[i] {
					case ',', '}', ']', ' ', '\t', '\n', '\r':
						return i
					}
					i++
				}
				return i
			}
		}
		i++
	}
	return i
}
