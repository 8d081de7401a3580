package event

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends e's topic form to dst: the fields of Fields in order.
// The bytes are exactly what encoding/json produces for Event (field order,
// omitempty and omitzero, HTML-safe string escaping, compacted objects),
// without reflection: the collector encodes every accepted event, so this is
// on its hot path. Properties and traits must be valid JSON (Validate's
// callers ensure it).
func AppendJSON(dst []byte, e *Event) ([]byte, error) {
	dst = append(dst, '{')
	for i := range Fields {
		f := &Fields[i]
		switch f.Kind {
		case String:
			if v := *f.Str(e); v != "" || f.Always {
				dst = appendString(append(dst, f.key...), v)
			}
		case Time:
			if v := f.TimeOf(e); f.Always || !v.IsZero() {
				dst = appendTime(append(dst, f.key...), *v)
			}
		case Object:
			if v := *f.Raw(e); len(v) > 0 {
				var err error
				if dst, err = appendCompact(append(dst, f.key...), v); err != nil {
					return dst, err
				}
			}
		case Number:
			if v := *f.Num(e); v != 0 {
				dst = appendFloat(append(dst, f.key...), v)
			}
		case Bool:
			if *f.Flag(e) {
				dst = append(append(dst, f.key...), "true"...)
			}
		}
	}
	return append(dst, '}'), nil
}

// SizeHint is about how many bytes AppendJSON writes for e: exact unless
// strings need escaping (which grows them) or objects hold whitespace
// (which is dropped). Callers size their buffers with it.
func SizeHint(e *Event) int {
	n := 2
	for i := range Fields {
		f := &Fields[i]
		switch f.Kind {
		case String:
			if v := *f.Str(e); v != "" || f.Always {
				n += len(f.key) + len(v) + 2
			}
		case Time:
			n += len(f.key) + len(`"2006-01-02T15:04:05.999999999Z07:00"`)
		case Object:
			if v := *f.Raw(e); len(v) > 0 {
				n += len(f.key) + len(v)
			}
		case Number:
			n += len(f.key) + 24
		case Bool:
			n += len(f.key) + 4
		}
	}
	return n
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// appendCompact appends raw JSON without insignificant space and with HTML
// characters escaped inside strings, as encoding/json does for
// json.RawMessage. raw must be valid JSON: it was validated when decoded, so
// one copying pass suffices; anything else is reported as an error. Runs of
// bytes that stay as they are (most of a compact object) are copied whole.
func appendCompact(dst, raw []byte) ([]byte, error) {
	dst = slices.Grow(dst, len(raw))
	start := 0 // raw[start:i] is still to be copied
	inString := false
	for i := 0; i < len(raw); {
		if !inString {
			for i < len(raw) && !compactOut[raw[i]] {
				i++
			}
			if i == len(raw) {
				break
			}
			if raw[i] == '"' {
				inString = true
				i++
				continue
			}
			dst = append(dst, raw[start:i]...) // whitespace: dropped
			for i++; i < len(raw) && raw[i] <= ' ' && compactOut[raw[i]]; i++ {
			}
			start = i
			continue
		}
		for i < len(raw) && !compactIn[raw[i]] {
			i++
		}
		if i == len(raw) {
			break
		}
		switch c := raw[i]; c {
		case '\\':
			i += 2 // the escaped byte is ASCII in valid JSON
		case '"':
			inString = false
			i++
		case '<', '>', '&':
			dst = append(dst, raw[start:i]...)
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			i++
			start = i
		default: // 0xE2: U+2028 and U+2029 are escaped
			if i+2 < len(raw) && raw[i+1] == 0x80 && (raw[i+2] == 0xA8 || raw[i+2] == 0xA9) {
				dst = append(dst, raw[start:i]...)
				dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[raw[i+2]&0xF])
				i += 3
				start = i
			} else {
				i++
			}
		}
	}
	if inString {
		return dst, errors.New("event: an object field (properties, traits, context, integrations) is not valid JSON")
	}
	return append(dst, raw[min(start, len(raw)):]...), nil
}

// compactOut marks the bytes appendCompact stops at outside strings (a
// quote, whitespace), compactIn those it stops at inside one.
var compactOut, compactIn = func() (out, in [256]bool) {
	for _, c := range []byte{'"', ' ', '\t', '\n', '\r'} {
		out[c] = true
	}
	for _, c := range []byte{'"', '\\', '<', '>', '&', 0xE2} {
		in[c] = true
	}
	return out, in
}()

// appendFloat formats like encoding/json's float64 encoder.
func appendFloat(dst []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// htmlSafe marks the ASCII bytes encoding/json writes as they are.
var htmlSafe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return t
}()

// appendString quotes s like encoding/json with HTML escaping: <, > and & as
// \u003c…, control characters, U+2028/U+2029 escaped, invalid UTF-8 as U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if htmlSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
