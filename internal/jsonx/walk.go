package jsonx

import (
	"bytes"
	"unicode/utf8"
)

// The functions below walk input that already passed Valid (alone or as
// part of a document that did): they only look for the end of each token,
// so a decoder that validated a whole request body once can cut it into
// members and values without checking the same bytes again.

// SkipValidString returns the index past the string starting at b[i] == '"'
// of valid input: it only looks for the closing quote.
func SkipValidString(b []byte, i int) int {
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

// SkipValidValue returns the index past the value starting at b[i] of valid
// input; it checks nothing but bounds.
func SkipValidValue(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			i = SkipValidString(b, i)
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

// Members walks the object at b[i] of valid input, calling f with each key
// (its bytes between the quotes) and the index of its value; f returns the
// index past the value, or -1 to give up. Members returns the index past the
// object, or -1: when b[i] is not '{', when f gives up, and for keys with
// escapes or non-ASCII bytes, which a decoder may match in other ways than
// byte for byte (encoding/json folds case, also of non-ASCII letters).
func Members(b []byte, i int, f func(key []byte, v int) int) int {
	if i >= len(b) || b[i] != '{' {
		return -1
	}
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return -1
		}
		end := SkipValidString(b, i)
		key := b[i+1 : end-1]
		for _, c := range key {
			if c == '\\' || c >= utf8.RuneSelf {
				return -1
			}
		}
		i = SkipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return -1
		}
		i = SkipSpace(b, i+1)
		if i >= len(b) {
			return -1
		}
		if i = f(key, i); i < 0 {
			return -1
		}
		i = SkipSpace(b, i)
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case '}':
			return i + 1
		case ',':
			i = SkipSpace(b, i+1)
		default:
			return -1
		}
	}
}

// PlainString returns the value of the JSON string raw when it holds only
// printable ASCII and no escape, the common case that needs no decoder (its
// bytes are its value); ok is false otherwise.
func PlainString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	for _, c := range raw[1 : len(raw)-1] {
		if c < 0x20 || c >= 0x7f || c == '\\' || c == '"' {
			return "", false
		}
	}
	return string(raw[1 : len(raw)-1]), true
}
