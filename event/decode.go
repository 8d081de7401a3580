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
// substring of, and the Object fields (properties, traits) once into one byte slice: three
// allocations per record instead of one per field.
func decodeFast(b []byte, e *Event) bool {
	s := string(b)
	var objAt [maxObjects][2]int // value spans in b of the Object fields, by Field.obj; {0, 0} = absent
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
		f := fieldNamed(key)
		if f == nil {
			return false // not a field name as written: maybe a case variant, or unknown
		}
		switch f.Kind {
		case Object:
			if b[i] != '{' {
				return false // null or not an object: the general path says what is wrong
			}
			if i, ok = jsonx.SkipValueIn(b, i, 1); !ok { // inside the event object
				return false
			}
			objAt[f.obj] = [2]int{vStart, i}
		case Time:
			end, esc, ok := stringAt(b, i)
			if !ok || esc {
				return false
			}
			if f.TimeOf(e).UnmarshalJSON(b[vStart:end]) != nil {
				return false
			}
			i = end
		case Number:
			if b[i] != '-' && (b[i] < '0' || b[i] > '9') {
				return false
			}
			end, ok := jsonx.SkipNumber(b, i)
			if !ok {
				return false
			}
			v, err := strconv.ParseFloat(s[vStart:end], 64)
			if err != nil {
				return false
			}
			*f.Num(e), i = v, end
		case Bool:
			switch {
			case len(b)-i >= 4 && s[i:i+4] == "true":
				*f.Flag(e), i = true, i+4
			case len(b)-i >= 5 && s[i:i+5] == "false":
				*f.Flag(e), i = false, i+5
			default:
				return false
			}
		case String:
			end, esc, ok := stringAt(b, i)
			if !ok {
				return false
			}
			dst := f.Str(e)
			if esc {
				if *dst, ok = unquote(b[vStart+1 : end-1]); !ok {
					return false
				}
			} else {
				v := s[vStart+1 : end-1]
				if !ascii(v) && !utf8.ValidString(v) {
					return false // encoding/json would replace the bad bytes
				}
				*dst = v
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
	n := 0
	for _, at := range objAt {
		n += at[1] - at[0]
	}
	if n > 0 {
		raw := make([]byte, 0, n)
		for _, f := range objectFields {
			if at := objAt[f.obj]; at[1] > at[0] {
				raw = append(raw, b[at[0]:at[1]]...)
				*f.Raw(e) = json.RawMessage(raw[len(raw)-(at[1]-at[0]) : len(raw) : len(raw)])
			}
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
