// Package jsonx holds the JSON scanning the hot paths share: a validator that
// accepts exactly what encoding/json.Valid accepts, several times faster, the
// scanning steps (strings, numbers, whole values) that event decoding builds
// on, and the walk over input that already passed the validator (walk.go)
// that the Segment decoder (package ingest/segment) builds on.
//
// encoding/json's validator runs a state-machine function per byte; these
// functions instead loop over the bytes of each token and check eight string
// bytes per step. The fuzz test asserts Valid(b) == encoding/json.Valid(b)
// for every input.
package jsonx

import (
	"encoding/binary"
)

// MaxDepth is encoding/json's nesting limit: deeper input is not valid JSON to it.
const MaxDepth = 10000

// Valid reports whether b is one JSON value with optional surrounding
// whitespace, exactly as encoding/json.Valid does (which, like this, does not
// require strings to be valid UTF-8).
func Valid(b []byte) bool {
	ok, _ := Check(b)
	return ok
}

// Check is Valid, and also reports whether b may hold a number too large for
// a float64: one that encoding/json refuses to decode into a float64 or an
// any ("cannot unmarshal number 1e400"), which strconv.ParseFloat makes ±Inf.
// large is never false for such a number; it can be true for a number that
// still fits (it only compares digit counts and the exponent), so a caller
// that cares parses the numbers again only when it is set, which valid input
// from ordinary clients never does.
func Check(b []byte) (valid, large bool) {
	i := SkipSpace(b, 0)
	end, ok, large := skipValue(b, i)
	if !ok {
		return false, false
	}
	return SkipSpace(b, end) == len(b), large
}

// SkipSpace returns the index of the first non-whitespace byte at or after i.
func SkipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// SkipValue validates the JSON value starting at b[i] (no leading
// whitespace) and returns the index just past it. Nesting is limited to
// MaxDepth, as in encoding/json.
func SkipValue(b []byte, i int) (int, bool) {
	end, ok, _ := skipValue(b, i)
	return end, ok
}

// skipValue is SkipValue, also reporting a number that may be too large for a
// float64 (see Check).
func skipValue(b []byte, i int) (int, bool, bool) {
	if i >= len(b) {
		return i, false, false
	}
	switch c := b[i]; {
	case c == '"':
		end, _, ok := SkipString(b, i)
		return end, ok, false
	case c == '{' || c == '[':
		return skipNested(b, i, 0)
	case c == '-' || (c >= '0' && c <= '9'):
		return skipNumber(b, i)
	}
	end, ok := skipScalar(b, i)
	return end, ok, false
}

// skipScalar validates a literal (true, false, null).
func skipScalar(b []byte, i int) (int, bool) {
	switch b[i] {
	case 't':
		return skipLiteral(b, i, "true")
	case 'f':
		return skipLiteral(b, i, "false")
	case 'n':
		return skipLiteral(b, i, "null")
	}
	return i, false
}

func skipLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// SkipValueIn is SkipValue for a value nested in outer open objects or
// arrays: they count towards MaxDepth, as they do for encoding/json.
func SkipValueIn(b []byte, i, outer int) (int, bool) {
	if i < len(b) && (b[i] == '{' || b[i] == '[') {
		end, ok, _ := skipNested(b, i, outer)
		return end, ok
	}
	return SkipValue(b, i)
}

// skipNested validates an object or array iteratively, inside outer open
// levels. The stack holds one bit per open level (1 = object), packed in
// words, so deep input costs no recursion. large is as for Check.
func skipNested(b []byte, i, outer int) (end int, ok, large bool) {
	var small [4]uint64 // 256 levels without allocating
	stack := small[:]
	depth := 0 // open levels
	limit := MaxDepth - outer
	for {
		// b[i] (in range, not whitespace) starts a value.
		if c := b[i]; c == '{' || c == '[' {
			if depth >= limit {
				return i, false, large
			}
			w, bit := depth>>6, uint64(1)<<(depth&63)
			if w == len(stack) {
				stack = append(stack, 0)
			}
			if c == '{' {
				stack[w] |= bit
			} else {
				stack[w] &^= bit
			}
			depth++
			i = SkipSpace(b, i+1)
			if i >= len(b) {
				return i, false, large
			}
			if (c == '{' && b[i] == '}') || (c == '[' && b[i] == ']') {
				i++
				depth--
			} else {
				if c == '{' {
					if i, ok = skipKey(b, i); !ok {
						return i, false, large
					}
				}
				continue // its first member's or element's value
			}
		} else {
			var l bool
			switch c {
			case '"':
				i, _, ok = SkipString(b, i)
			case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
				i, ok, l = skipNumber(b, i)
				large = large || l
			default:
				i, ok = skipScalar(b, i)
			}
			if !ok {
				return i, false, large
			}
		}
		// A value ended at i: close every level that ends here, then move
		// to the next value of the level still open.
	levels:
		for {
			if depth == 0 {
				return i, true, large
			}
			i = SkipSpace(b, i)
			if i >= len(b) {
				return i, false, large
			}
			d := depth - 1
			obj := stack[d>>6]&(1<<(d&63)) != 0
			switch c := b[i]; {
			case c == ',':
				i = SkipSpace(b, i+1)
				if i >= len(b) {
					return i, false, large
				}
				if obj {
					if i, ok = skipKey(b, i); !ok {
						return i, false, large
					}
				}
				break levels
			case obj && c == '}', !obj && c == ']':
				i++
				depth--
			default:
				return i, false, large
			}
		}
	}
}

// skipKey validates `"key" :` plus the whitespace after the colon, leaving i
// at the member's value.
func skipKey(b []byte, i int) (int, bool) {
	if b[i] != '"' {
		return i, false
	}
	i, _, ok := SkipString(b, i)
	if !ok {
		return i, false
	}
	i = SkipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return i, false
	}
	i = SkipSpace(b, i+1)
	if i >= len(b) {
		return i, false
	}
	return i, true
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// SkipString validates the string starting at b[i] == '"' and returns the
// index past its closing quote, and whether it holds any escape sequence
// (then its bytes are not its value).
func SkipString(b []byte, i int) (end int, escaped bool, ok bool) {
	i++
	for {
		// Eight bytes at a time while none is special: a control byte
		// (< 0x20), a quote or a backslash.
		for i+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[i:])
			if special(x) != 0 {
				break
			}
			i += 8
		}
		if i >= len(b) {
			return i, escaped, false
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, escaped, true
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return i, escaped, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return i, escaped, false
				}
				i += 6
			default:
				return i, escaped, false
			}
		case c < 0x20:
			return i, escaped, false
		default:
			i++
		}
	}
}

// special has the high bit set in each byte of x that is < 0x20, '"' or '\\'
// (and possibly in bytes >= 0x80, which the byte loop then passes one by one).
func special(x uint64) uint64 {
	lt := (x - lsb*0x20) &^ x // bytes < 0x20 (or >= 0x80 borrow cases)
	q := x ^ (lsb * '"')      // zero where '"'
	bs := x ^ (lsb * '\\')    // zero where '\\'
	return (lt | (q-lsb)&^q | (bs-lsb)&^bs) & msb
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// SkipNumber validates the number starting at b[i] and returns the index past it:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func SkipNumber(b []byte, i int) (int, bool) {
	end, ok, _ := skipNumber(b, i)
	return end, ok
}

// maxFloatDigits: a number whose integer part has at most this many digits
// less its exponent is below 1e308, within a float64 (max ≈ 1.8e308).
const maxFloatDigits = 308

// skipNumber is SkipNumber, also reporting whether the number may be too
// large for a float64: its magnitude is below 10^(integer digits + exponent),
// so large is set when that sum is over maxFloatDigits.
func skipNumber(b []byte, i int) (int, bool, bool) {
	if b[i] == '-' {
		i++
	}
	start := i
	switch {
	case i >= len(b):
		return i, false, false
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return i, false, false
	}
	intDigits := i - start
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return j, false, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		neg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			neg = b[i] == '-'
			i++
		}
		j := digits(b, i)
		if j == i {
			return j, false, false
		}
		e := exponent(b[i:j])
		if neg {
			e = -e
		}
		return j, true, intDigits+e > maxFloatDigits
	}
	return i, true, intDigits > maxFloatDigits
}

// exponent is the value of the digits d, saturated far above any float64
// exponent.
func exponent(d []byte) int {
	n := 0
	for _, c := range d {
		n = n*10 + int(c-'0')
		if n > 1<<20 {
			return 1 << 20
		}
	}
	return n
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}
