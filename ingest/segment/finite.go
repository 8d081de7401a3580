package segment

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/leadstream/leadstream/internal/jsonx"
)

// A number no float64 holds (1e400) is valid JSON, but every consumer that
// decodes it as a number fails on it: encoding/json ("cannot unmarshal number
// 1e400"), the processor's trait decoding, ClickHouse's JSON functions. The
// collector refuses it, naming where it is. Only a body that jsonx.Check
// flagged (large) is walked, so ordinary traffic pays nothing for this.

// checkFinite refuses the message raw (valid JSON, at its place at) when it
// holds a number too large for a float64, anywhere in it. large is what
// jsonx.Check said of the body raw is part of: false skips the walk.
func checkFinite(raw []byte, large bool, at loc) error {
	if !large {
		return nil
	}
	if path, num, ok := nonFinite(raw); ok {
		return errNonFinite(at.field(path), num)
	}
	return nil
}

func errNonFinite(field, num string) error {
	if len(num) > 40 {
		num = num[:37] + "..."
	}
	return errField(field, "the number %s is not finite as a 64-bit float (beyond ±1.8e308)", num)
}

// nonFinite finds the first number (in document order) of raw, one valid
// JSON value, that strconv.ParseFloat makes ±Inf, as encoding/json does when
// it refuses one. path is where it is below raw: ".traits.n",
// ".properties.items[2]", `["a key"]` for keys that are not plain names.
func nonFinite(raw []byte) (path, num string, found bool) {
	w := finiteWalk{b: raw}
	i := jsonx.SkipSpace(raw, 0)
	if i >= len(raw) {
		return "", "", false
	}
	w.value(i)
	if w.num == "" {
		return "", "", false
	}
	return strings.Join(w.path, ""), w.num, true
}

// finiteWalk walks valid JSON depth first, keeping the path to the value it
// is in; it stops at the first non-finite number (num set, path left at it).
type finiteWalk struct {
	b    []byte
	path []string
	num  string
}

// value walks the value at b[i] and returns the index past it.
func (w *finiteWalk) value(i int) int {
	b := w.b
	switch c := b[i]; {
	case c == '"':
		return jsonx.SkipValidString(b, i)
	case c == '{':
		i = jsonx.SkipSpace(b, i+1)
		for b[i] != '}' {
			end := jsonx.SkipValidString(b, i)
			key := b[i+1 : end-1]
			i = jsonx.SkipSpace(b, end)
			i = jsonx.SkipSpace(b, i+1) // past ':'
			w.path = append(w.path, pathKey(key))
			if i = w.value(i); w.num != "" {
				return i
			}
			w.path = w.path[:len(w.path)-1]
			if i = jsonx.SkipSpace(b, i); b[i] == ',' {
				i = jsonx.SkipSpace(b, i+1)
			}
		}
		return i + 1
	case c == '[':
		i = jsonx.SkipSpace(b, i+1)
		for n := 0; b[i] != ']'; n++ {
			w.path = append(w.path, "["+strconv.Itoa(n)+"]")
			if i = w.value(i); w.num != "" {
				return i
			}
			w.path = w.path[:len(w.path)-1]
			if i = jsonx.SkipSpace(b, i); b[i] == ',' {
				i = jsonx.SkipSpace(b, i+1)
			}
		}
		return i + 1
	case c == '-' || c >= '0' && c <= '9':
		end, _ := jsonx.SkipNumber(b, i)
		if _, err := strconv.ParseFloat(string(b[i:end]), 64); err != nil {
			// Valid JSON numbers fail only with ErrRange: too large
			// (ParseFloat rounds what is too small to 0 without error).
			w.num = string(b[i:end])
		}
		return end
	}
	end, _ := jsonx.SkipValue(b, i) // true, false, null
	return end
}

// pathKey is the path step of an object key (its raw bytes between the
// quotes): ".name" for a plain name, else the key quoted in brackets, cut to
// 64 bytes. The key is read as a decoder reads it: escapes undone, bad UTF-8
// as U+FFFD.
func pathKey(raw []byte) string {
	key := string(raw)
	if strings.IndexByte(key, '\\') >= 0 || !utf8.ValidString(key) {
		_ = json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &key) // valid input: cannot fail
	}
	plain := len(key) > 0 && len(key) <= 64
	for i := 0; i < len(key) && plain; i++ {
		c := key[i]
		plain = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '$'
	}
	if plain {
		return "." + key
	}
	if len(key) > 64 {
		key = key[:64] + "..."
	}
	return "[" + strconv.Quote(key) + "]"
}
