package event

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/leadstream/leadstream/internal/jsonx"
)

// Unmarshal decodes a topic record and validates it, exactly as
// encoding/json.Unmarshal followed by Validate would (the fuzz test holds it to
// that). Records in the form AppendJSON writes, which is every record the
// collector produces, take a single-pass decoder several times faster than
// encoding/json; anything else (unknown or differently-cased keys, nulls, type
// mismatches, malformed JSON) is decoded by encoding/json itself, so its
// result and its error are encoding/json's.
func Unmarshal(b []byte, e *Event) error {
	*e = Event{}
	if !decodeFast(b, e) {
		*e = Event{}
		if err := json.Unmarshal(b, e); err != nil {
			return fmt.Errorf("decoding event: %w", err)
		}
		// encoding/json copies RawMessage values out of b already.
	}
	if err := e.Validate(); err != nil {
		return fmt.Errorf("invalid event: %w", err)
	}
	return nil
}

// decodeFast decodes the object in b into e in one pass and reports whether it
// could: it gives up (and e is then undefined) on anything it does not
// decode exactly like encoding/json, leaving that to the general path.
//
// It copies b once into a string that every unescaped string field is a
// substring of, and properties and traits once into one byte slice: three
// allocations per record instead of one per field.
func decodeFast(b []byte, e *Event) bool {
	s := string(b)
	var propsAt, traitsAt [2]int // value spans in b
	hasProps, hasTraits := false, false
	i := jsonx.SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = jsonx.SkipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
		goto end
	}
	for {
		// Key: a string without escapes naming one of Event's fields exactly.
		if i >= len(b) || b[i] != '"' {
			return false
		}
		kEnd, esc, ok := jsonx.SkipString(b, i)
		if !ok || esc {
			return false
		}
		key := s[i+1 : kEnd-1]
		i = jsonx.SkipSpace(b, kEnd)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = jsonx.SkipSpace(b, i+1)
		if i >= len(b) {
			return false
		}
		vStart := i
		switch key {
		case "properties", "traits":
			if b[i] != '{' {
				return false // null or not an object: the general path says what is wrong
			}
			if i, ok = jsonx.SkipValueIn(b, i, 1); !ok { // inside the event object
				return false
			}
			if key == "properties" {
				propsAt, hasProps = [2]int{vStart, i}, true
			} else {
				traitsAt, hasTraits = [2]int{vStart, i}, true
			}
		case "event_time", "received_at":
			end, esc, ok := stringAt(b, i)
			if !ok || esc {
				return false
			}
			t := &e.EventTime
			if key == "received_at" {
				t = &e.ReceivedAt
			}
			if t.UnmarshalJSON(b[vStart:end]) != nil {
				return false
			}
			i = end
		case "revenue":
			if b[i] != '-' && (b[i] < '0' || b[i] > '9') {
				return false
			}
			end, ok := jsonx.SkipNumber(b, i)
			if !ok {
				return false
			}
			f, err := strconv.ParseFloat(s[vStart:end], 64)
			if err != nil {
				return false
			}
			e.Revenue, i = f, end
		case "bot":
			switch {
			case len(b)-i >= 4 && s[i:i+4] == "true":
				e.Bot, i = true, i+4
			case len(b)-i >= 5 && s[i:i+5] == "false":
				e.Bot, i = false, i+5
			default:
				return false
			}
		default:
			f := stringField(e, key)
			if f == nil {
				return false // not a field name as written: maybe a case variant, or unknown
			}
			end, esc, ok := stringAt(b, i)
			if !ok {
				return false
			}
			if esc {
				if *f, ok = unquote(b[vStart+1 : end-1]); !ok {
					return false
				}
			} else {
				v := s[vStart+1 : end-1]
				if !ascii(v) && !utf8.ValidString(v) {
					return false // encoding/json would replace the bad bytes
				}
				*f = v
			}
			i = end
		}
		i = jsonx.SkipSpace(b, i)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			i++
			break
		}
		if b[i] != ',' {
			return false
		}
		i = jsonx.SkipSpace(b, i+1)
	}
end:
	if jsonx.SkipSpace(b, i) != len(b) {
		return false
	}
	if hasProps || hasTraits {
		n := propsAt[1] - propsAt[0]
		raw := make([]byte, 0, n+traitsAt[1]-traitsAt[0])
		raw = append(raw, b[propsAt[0]:propsAt[1]]...)
		raw = append(raw, b[traitsAt[0]:traitsAt[1]]...)
		if hasProps {
			e.Properties = json.RawMessage(raw[:n:n])
		}
		if hasTraits {
			e.Traits = json.RawMessage(raw[n:])
		}
	}
	return true
}

// stringAt validates the string token at b[i].
func stringAt(b []byte, i int) (end int, escaped, ok bool) {
	if b[i] != '"' {
		return i, false, false
	}
	return jsonx.SkipString(b, i)
}

// stringField returns the string field of e whose JSON name is key.
func stringField(e *Event, key string) *string {
	switch key {
	case "event_id":
		return &e.ID
	case "type":
		return (*string)(&e.Type)
	case "anonymous_id":
		return &e.AnonymousID
	case "lead_id":
		return &e.LeadID
	case "previous_id":
		return &e.PreviousID
	case "write_key_id":
		return &e.WriteKeyID
	case "campaign":
		return &e.Campaign
	case "utm_source":
		return &e.UTMSource
	case "utm_medium":
		return &e.UTMMedium
	case "utm_campaign":
		return &e.UTMCampaign
	case "utm_term":
		return &e.UTMTerm
	case "utm_content":
		return &e.UTMContent
	case "url":
		return &e.URL
	case "path":
		return &e.Path
	case "referrer":
		return &e.Referrer
	case "title":
		return &e.Title
	case "track":
		return &e.Track
	case "currency":
		return &e.Currency
	case "ip":
		return &e.IP
	case "user_agent":
		return &e.UserAgent
	case "bot_reason":
		return &e.BotReason
	}
	return nil
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// unquote decodes the body of a validated string token with escapes, as
// encoding/json does: a lone or broken surrogate becomes U+FFFD. Invalid
// UTF-8 is left to the general path (ok = false).
func unquote(q []byte) (string, bool) {
	out := make([]byte, 0, len(q))
	for i := 0; i < len(q); {
		c := q[i]
		if c != '\\' {
			if c >= utf8.RuneSelf {
				r, size := utf8.DecodeRune(q[i:])
				if r == utf8.RuneError && size == 1 {
					return "", false
				}
				out = append(out, q[i:i+size]...)
				i += size
				continue
			}
			out = append(out, c)
			i++
			continue
		}
		switch q[i+1] {
		case '"', '\\', '/':
			out = append(out, q[i+1])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(q[i+2 : i+6])
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(q) && q[i] == '\\' && q[i+1] == 'u' {
					if dec := utf16.DecodeRune(r, hex4(q[i+2:i+6])); dec != unicode.ReplacementChar {
						out = utf8.AppendRune(out, dec)
						i += 6
						continue
					}
				}
				r = unicode.ReplacementChar
			}
			out = utf8.AppendRune(out, r)
			continue
		}
		i += 2
	}
	return string(out), true
}

// hex4 decodes four hex digits (already validated by jsonx.SkipString).
func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		default:
			c = c - 'A' + 10
		}
		r = r<<4 | rune(c)
	}
	return r
}
