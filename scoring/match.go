package scoring

import (
	"encoding/json"
	"strings"

	"github.com/leadstream/leadstream/event"
)

// Hit is one rule that matched an event.
type Hit struct {
	Rule   int // index into Model.Rules
	Name   string
	Points float64
	Cap    *Cap // the rule's cap, shared: do not modify
}

// Match appends the rules of m that match e to dst and returns it. No
// allocation when cap(dst) suffices, no rule of m has `properties`
// (properties are decoded from e.Properties lazily, at most once per call)
// and the event's path has no '%' (a path with one is decoded once per call,
// when a rule has a URL).
//
// A rule matches when e.Type equals its Event and each of its non-empty
// conditions holds: Track and Campaign exactly, URL as a glob on the decoded
// path (e.Path, or else the path part of e.URL, with its %XX escapes decoded:
// ls.js sends location.pathname percent-encoded, a URL-only event has its
// path decoded by url.Parse, and a page must match alike), Properties as
// equal JSON values. Events whose properties are not a valid JSON object
// match no rule that has properties.
func (m *Model) Match(e *event.Event, dst []Hit) []Hit {
	var (
		path      string
		havePath  bool
		props     map[string]any
		haveProps bool
	)
	for i := range m.Rules {
		r := &m.Rules[i]
		if r.Event != e.Type ||
			(r.Track != "" && r.Track != e.Track) ||
			(r.Campaign != "" && r.Campaign != e.Campaign) {
			continue
		}
		if r.URL != "" {
			if !havePath {
				path, havePath = eventPath(e), true
			}
			var ok bool
			if r.glob == "" {
				ok = matchGlob(r.URL, path)
			} else {
				ok = matchEscapedGlob(r.glob, path) // a pattern with a decoded escape
			}
			if !ok {
				continue
			}
		}
		if len(r.Properties) > 0 {
			if !haveProps {
				props, haveProps = decodeProperties(e.Properties), true
			}
			if !propertiesMatch(r.Properties, props) {
				continue
			}
		}
		dst = append(dst, Hit{Rule: i, Name: r.Name, Points: r.Points, Cap: r.Cap})
	}
	return dst
}

// eventPath is the path URL globs match: e.Path, or else the path part of
// e.URL, decoded (decodePath). What the event stores is left as it came. A
// path from e.URL is looked for '%' by the scan that finds its end.
func eventPath(e *event.Event) string {
	if e.Path != "" {
		return decodePath(e.Path)
	}
	p, i := splitURLPath(e.URL)
	if i >= 0 {
		return decodeEscapes(p, i)
	}
	return p
}

// urlPath returns the path of a URL as a substring of it, without allocating:
// the text after scheme://host up to ? or #, or "/" when there is none.
// Scheme-less input is read as a path when it starts with "/" and as
// host/path otherwise, since the collector forwards page URLs as clients
// sent them.
func urlPath(u string) string {
	p, _ := splitURLPath(u)
	return p
}

// splitURLPath is urlPath, also returning the index of the path's first '%'
// (-1 when it has none).
func splitURLPath(u string) (path string, pct int) {
	rest := u
	switch {
	case strings.HasPrefix(u, "//"): // scheme-relative: //host/path
		rest = skipHost(u[2:])
	case strings.HasPrefix(u, "/"):
	default:
		if i := schemeEnd(u); i > 0 {
			rest = u[i:]
		}
		rest = skipHost(rest)
	}
	pct = -1
scan:
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case '?', '#':
			rest = rest[:i]
			break scan
		case '%':
			if pct < 0 {
				pct = i
			}
		}
	}
	if rest == "" {
		return "/", -1
	}
	return rest, pct
}

// schemeEnd returns the index just after "scheme://", or 0 when u does not
// start with a scheme (RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )).
func schemeEnd(u string) int {
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':' && strings.HasPrefix(u[i:], "://"):
			return i + 3
		default:
			return 0
		}
	}
	return 0
}

// skipHost drops the authority (host[:port], user info) in front of the path.
func skipHost(s string) string {
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		return s[i:]
	}
	return ""
}

func decodeProperties(raw json.RawMessage) map[string]any {
	m, err := DecodeTraits(raw)
	if err != nil {
		return nil
	}
	return m
}

func propertiesMatch(want, have map[string]any) bool {
	for k, w := range want {
		h, ok := have[k]
		if !ok || !jsonEqual(w, h) {
			return false
		}
	}
	return true
}

// jsonEqual compares a rule value with a decoded JSON value. Types must agree
// as in JSON: the string "1" is not the number 1. Integer kinds are accepted
// on the rule side for Rules built in Go rather than parsed.
func jsonEqual(want, have any) bool {
	switch w := want.(type) {
	case string:
		h, ok := have.(string)
		return ok && h == w
	case bool:
		h, ok := have.(bool)
		return ok && h == w
	}
	wf, ok := numberValue(want)
	if !ok {
		return false
	}
	hf, ok := have.(float64)
	return ok && hf == wf
}

func numberValue(v any) (float64, bool) {
	switch v := v.(type) {
	case float64:
		return v, true
	case float32:
		return float64(v), true
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	case int32:
		return float64(v), true
	case uint:
		return float64(v), true
	case uint64:
		return float64(v), true
	case uint32:
		return float64(v), true
	}
	return 0, false
}
