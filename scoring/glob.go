package scoring

import (
	"errors"
	"fmt"
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

// checkGlob rejects URL patterns that can never match or that use syntax
// users expect from other glob flavours but that this matcher would treat
// literally. Empty means "any URL" and is fine.
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
		case r <= ' ' || r == 0x7f:
			return fmt.Errorf("contains %q, which never occurs in a URL path", r)
		}
	}
	return nil
}
