package scoring

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// matchGlob reports whether s matches pattern, where * matches any run of
// characters (including /) and ? exactly one character; every other byte is
// literal. It runs on the hot path for every event and URL rule, so it
// neither allocates nor compiles: it keeps only the most recent * as a
// backtrack point. That is enough because * matches anything, so retrying an
// earlier * can never succeed where the latest one failed; the cost stays
// O(len(pattern)*len(s)) in the worst case and linear for typical patterns.
func matchGlob(pattern, s string) bool {
	px, sx := 0, 0
	starP, starS := -1, 0 // position after the latest *, and where it resumes in s
	for px < len(pattern) || sx < len(s) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				px++
				starP, starS = px, sx
				continue
			case '?':
				if sx < len(s) {
					_, n := utf8.DecodeRuneInString(s[sx:])
					px++
					sx += n
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		if starP >= 0 && starS < len(s) {
			// Let the * swallow one more character (a whole rune, so ? that
			// follows never sees half of one) and retry from there.
			_, n := utf8.DecodeRuneInString(s[starS:])
			starS += n
			px, sx = starP, starS
			continue
		}
		return false
	}
	return true
}

// matchEscapedGlob is matchGlob for a pattern compileGlob decoded, where \
// makes the byte after it literal (a decoded %2A, %3F or %5C: a *, ? or \ of
// the path, not a wildcard). It is matchGlob's loop with that one case more,
// kept apart so that the common pattern, which has no '%' to decode, does
// not pay for the check on every byte.
func matchEscapedGlob(pattern, s string) bool {
	px, sx := 0, 0
	starP, starS := -1, 0
	for px < len(pattern) || sx < len(s) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				px++
				starP, starS = px, sx
				continue
			case '?':
				if sx < len(s) {
					_, n := utf8.DecodeRuneInString(s[sx:])
					px++
					sx += n
					continue
				}
			case '\\':
				if px+1 < len(pattern) {
					if sx < len(s) && s[sx] == pattern[px+1] {
						px += 2
						sx++
						continue
					}
					break
				}
				fallthrough // a trailing \ is itself
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		if starP >= 0 && starS < len(s) {
			_, n := utf8.DecodeRuneInString(s[starS:])
			starS += n
			px, sx = starP, starS
			continue
		}
		return false
	}
	return true
}

// compileGlob returns the pattern matchEscapedGlob matches a decoded path
// (see decodePath) with: pattern, as written in the rules file, with its %XX
// escapes decoded, so that "/%C3%BCber*" and "/über*" are the same glob and
// match the page however its path arrived (percent-encoded from ls.js,
// decoded from a URL). A decoded *, ? or \ is literal (escaped with \): "%3F"
// is a question mark, not a wildcard. An invalid escape ("%", "%zz") is kept
// as written, as decodePath keeps it in a path. pattern itself is returned
// (no allocation) when it has no '%'; checkGlob has accepted it, so it has no
// \ of its own.
func compileGlob(pattern string) string {
	if strings.IndexByte(pattern, '%') < 0 {
		return pattern
	}
	var b strings.Builder
	b.Grow(len(pattern))
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if c == '%' {
			if d, ok := unhex2(pattern, i); ok {
				if d == '*' || d == '?' || d == '\\' {
					b.WriteByte('\\')
				}
				b.WriteByte(d)
				i += 2
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// decodePath returns the URL path p with its %XX escapes decoded (as
// url.Parse decodes a URL's path, and so as the collector stores the path of
// an event that came with a URL only), an invalid escape kept as written
// where url.PathUnescape would fail. A path without '%' is returned as is,
// without allocating: the common case, on the processor's hot path.
func decodePath(p string) string {
	i := strings.IndexByte(p, '%')
	if i < 0 {
		return p
	}
	return decodeEscapes(p, i)
}

// decodeEscapes is decodePath's work, from p's first '%' at i.
func decodeEscapes(p string, i int) string {
	var b strings.Builder
	b.Grow(len(p))
	b.WriteString(p[:i])
	for ; i < len(p); i++ {
		c := p[i]
		if c == '%' {
			if d, ok := unhex2(p, i); ok {
				b.WriteByte(d)
				i += 2
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// unhex2 decodes the escape %XX at s[i] (s[i] == '%'); ok is false when two
// hex digits do not follow.
func unhex2(s string, i int) (byte, bool) {
	if i+2 >= len(s) {
		return 0, false
	}
	hi, ok1 := unhex(s[i+1])
	lo, ok2 := unhex(s[i+2])
	return hi<<4 | lo, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// checkGlob rejects URL patterns that can never match or that use syntax
// users expect from other glob flavours but that this matcher would treat
// literally. Empty means "any URL" and is fine. It reads the pattern as
// written, before compileGlob decodes it: a space is fine (a decoded path
// may hold one: "/a b" or "/a%20b" alike), as is any byte written as %XX
// ("%23" for a literal #, "%5B" for [, "%0A" for a newline); what it rejects
// is written literally — control characters, which a YAML file holds only
// by mistake (a path holding one is matched with its %XX form), and # and
// the other glob flavours' syntax, which would otherwise be taken literally.
func checkGlob(pattern string) error {
	if pattern == "" {
		return nil
	}
	if !utf8.ValidString(pattern) {
		return errors.New("not valid UTF-8")
	}
	if c := pattern[0]; c != '/' && c != '*' {
		return errors.New(`must start with "/" or "*": it is matched against the URL path, which always starts with "/"`)
	}
	for _, r := range pattern {
		switch {
		case r == '[' || r == ']' || r == '{' || r == '}' || r == '\\':
			return fmt.Errorf("%q is not supported (only * and ? are special)", r)
		case r == '#':
			return errors.New(`"#" never occurs in a URL path (fragments are not matched)`)
		case r < ' ' || r == 0x7f:
			return fmt.Errorf("contains the control character %q (write it as %%%02X to match it in a path)", r, r)
		}
	}
	return nil
}
