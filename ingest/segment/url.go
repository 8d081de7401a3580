package segment

import (
	"net/url"
	"strings"

	"github.com/leadstream/leadstream/event"
)

// FillFromURL derives the path, the UTM fields and the campaign of e from
// its URL, where they are not set yet. The email click and form handlers use
// it too.
func FillFromURL(e *event.Event) {
	if e.URL == "" {
		return
	}
	if path, query, ok := simpleURL(e.URL); ok {
		if e.Path == "" {
			e.Path = path
			if e.Path == "" {
				e.Path = "/"
			}
		}
		if strings.Contains(query, "utm_") {
			var utm [5]string
			var seen [5]bool // the first value counts, empty or not (url.Values.Get)
			for query != "" {
				var pair string
				pair, query, _ = strings.Cut(query, "&")
				k, v, _ := strings.Cut(pair, "=")
				for i, name := range utmKeys {
					if k == name && !seen[i] {
						utm[i], seen[i] = v, true
					}
				}
			}
			e.UTMSource = firstNonEmpty(e.UTMSource, utm[0])
			e.UTMMedium = firstNonEmpty(e.UTMMedium, utm[1])
			e.UTMCampaign = firstNonEmpty(e.UTMCampaign, utm[2])
			e.UTMTerm = firstNonEmpty(e.UTMTerm, utm[3])
			e.UTMContent = firstNonEmpty(e.UTMContent, utm[4])
		}
		if e.Campaign == "" {
			e.Campaign = e.UTMCampaign
		}
		return
	}
	u, err := url.Parse(e.URL)
	if err != nil {
		return
	}
	if e.Path == "" {
		e.Path = u.Path
		if e.Path == "" {
			e.Path = "/"
		}
	}
	// Parsing the query allocates a map; without "utm_" in it (and nothing
	// percent-encoded that could spell it) every lookup below is empty.
	var q url.Values
	if strings.Contains(u.RawQuery, "utm_") || strings.Contains(u.RawQuery, "%") {
		q = u.Query()
	}
	e.UTMSource = firstNonEmpty(e.UTMSource, q.Get("utm_source"))
	e.UTMMedium = firstNonEmpty(e.UTMMedium, q.Get("utm_medium"))
	e.UTMCampaign = firstNonEmpty(e.UTMCampaign, q.Get("utm_campaign"))
	e.UTMTerm = firstNonEmpty(e.UTMTerm, q.Get("utm_term"))
	e.UTMContent = firstNonEmpty(e.UTMContent, q.Get("utm_content"))
	if e.Campaign == "" {
		e.Campaign = e.UTMCampaign
	}
}

var utmKeys = [5]string{"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"}

// simpleURL splits the usual page URL — http(s)://host[:port][/path][?query][#fragment]
// of printable ASCII with nothing percent-encoded, no '+' or ';' in the query
// and a plain host — into the path and raw query that url.Parse would give,
// whose query values are then the raw substrings url.ParseQuery would give.
// ok is false for any other URL, which url.Parse handles.
func simpleURL(s string) (path, query string, ok bool) {
	rest, found := strings.CutPrefix(s, "https://")
	if !found {
		if rest, found = strings.CutPrefix(s, "http://"); !found {
			return "", "", false
		}
	}
	i := 0
	for i < len(rest) && (rest[i] >= 'a' && rest[i] <= 'z' || rest[i] >= 'A' && rest[i] <= 'Z' || rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.' || rest[i] == '-') {
		i++
	}
	if i == 0 {
		return "", "", false
	}
	if i < len(rest) && rest[i] == ':' {
		j := i + 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if j == i+1 {
			return "", "", false
		}
		i = j
	}
	rest = rest[i:]
	if rest != "" && rest[0] != '/' && rest[0] != '?' && rest[0] != '#' {
		return "", "", false
	}
	for j := 0; j < len(rest); j++ {
		if c := rest[j]; c <= ' ' || c >= 0x7f || c == '%' {
			return "", "", false
		}
	}
	rest, _, _ = strings.Cut(rest, "#")
	path, query, _ = strings.Cut(rest, "?")
	if strings.ContainsAny(query, "+;") {
		return "", "", false
	}
	return path, query, true
}
