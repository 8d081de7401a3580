package ingest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/jsonx"
)

// Segment's documented limits.
const (
	MaxEventBytes = 32 << 10  // 32 KB per event
	MaxBatchBytes = 500 << 10 // 500 KB per batch request
)

// segBatch is the body of POST /v1/batch.
type segBatch struct {
	Batch    []json.RawMessage `json:"batch"`
	WriteKey string            `json:"writeKey"`
	SentAt   string            `json:"sentAt"`
	Context  json.RawMessage   `json:"context"`
}

// segMessage is one Segment call (track, page, screen, identify, alias, group).
type segMessage struct {
	Type              string          `json:"type"`
	MessageID         string          `json:"messageId"`
	Timestamp         string          `json:"timestamp"`
	OriginalTimestamp string          `json:"originalTimestamp"`
	SentAt            string          `json:"sentAt"`
	AnonymousID       json.RawMessage `json:"anonymousId"` // string or number, as Segment accepts
	UserID            json.RawMessage `json:"userId"`
	PreviousID        json.RawMessage `json:"previousId"`
	GroupID           json.RawMessage `json:"groupId"`
	Event             string          `json:"event"`
	Name              string          `json:"name"`
	Properties        json.RawMessage `json:"properties"`
	Traits            json.RawMessage `json:"traits"`
	Context           *segContext     `json:"context"`
	WriteKey          string          `json:"writeKey"`
}

type segContext struct {
	IP        string          `json:"ip"`
	UserAgent string          `json:"userAgent"`
	Page      *segPage        `json:"page"`
	Campaign  *segCampaign    `json:"campaign"`
	Traits    json.RawMessage `json:"traits"`
}

type segPage struct {
	URL      string `json:"url"`
	Path     string `json:"path"`
	Referrer string `json:"referrer"`
	Title    string `json:"title"`
	Search   string `json:"search"`
}

type segCampaign struct {
	Name    string `json:"name"`
	Source  string `json:"source"`
	Medium  string `json:"medium"`
	Term    string `json:"term"`
	Content string `json:"content"`
}

// trackTypes maps Segment's semantic track event names onto leadstream types.
var trackTypes = map[string]event.Type{
	"Email Opened":       event.EmailOpen,
	"Email Link Clicked": event.EmailClick,
	"Form Submitted":     event.FormSubmit,
	"Deal Won":           event.DealWon,
}

// request carries what a whole HTTP request shares.
type request struct {
	writeKeyID string
	receivedAt time.Time
	sentAt     string // batch-level sentAt
	ip         string
	userAgent  string
}

// Limit is a Segment limit a request can hit; a 400 for it names it in the
// body's "limit".
type Limit string

// The limits, as the error body names them.
const (
	LimitEventSize Limit = "event_size_32KB"  // MaxEventBytes per event
	LimitBatchSize Limit = "batch_size_500KB" // MaxBatchBytes per request, after gunzip
)

// fieldError is a 400 naming the field that is wrong, and the limit it hit
// when that is what is wrong.
type fieldError struct {
	field string
	msg   string
	limit Limit // "" = not a limit
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func errField(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...)}
}

// errEventSize is the error of an event of n bytes, over MaxEventBytes.
func errEventSize(field string, n int) error {
	return &fieldError{field: field, limit: LimitEventSize,
		msg: fmt.Sprintf("event is %d bytes, over the limit of 32 KB (%d bytes) per event", n, MaxEventBytes)}
}

// decodeMessage turns one Segment call into a canonical event. raw must have
// passed validJSON (alone or as part of its request body). forceType is set
// by the single-call endpoints (/v1/track …), which imply the type.
func decodeMessage(raw []byte, where, forceType string, r *request) (*event.Event, error) {
	if len(raw) > MaxEventBytes {
		return nil, errEventSize(where, len(raw))
	}
	m := getSegMessage()
	defer putSegMessage(m)
	if err := decodeSegMessage(raw, m); err != nil {
		return nil, errField(where, "malformed JSON: %v", err)
	}
	return mapMessage(m, raw, where, forceType, r)
}

// events recycles the events of finished requests (putEvents): an event is
// large, and a batch makes one per message.
var eventPool sync.Pool

func getEvent() *event.Event {
	if e, _ := eventPool.Get().(*event.Event); e != nil {
		return e
	}
	return new(event.Event)
}

// putEvents recycles es; nothing may use them afterwards.
func putEvents(es []*event.Event) {
	for _, e := range es {
		*e = event.Event{}
		eventPool.Put(e)
	}
}

// segMessages recycles decoded messages: an event keeps the strings and raw
// objects decoded into one, never the message itself.
var segMessages sync.Pool

func getSegMessage() *segMessage {
	if m, _ := segMessages.Get().(*segMessage); m != nil {
		return m
	}
	return new(segMessage)
}

func putSegMessage(m *segMessage) {
	*m = segMessage{}
	segMessages.Put(m)
}

// mapMessage is decodeMessage after the JSON decoding of raw into m.
func mapMessage(m *segMessage, raw []byte, where, forceType string, r *request) (*event.Event, error) {
	typ := m.Type
	if forceType != "" {
		if typ != "" && typ != forceType {
			return nil, errField(where+".type", "is %q but the endpoint is /v1/%s", typ, forceType)
		}
		typ = forceType
	}
	e := getEvent()
	e.ReceivedAt, e.WriteKeyID = r.receivedAt, r.writeKeyID
	var err error
	if e.AnonymousID, err = idString(m.AnonymousID, where+".anonymousId"); err != nil {
		return nil, err
	}
	if e.LeadID, err = idString(m.UserID, where+".userId"); err != nil {
		return nil, err
	}
	if err := checkObject(m.Properties, where+".properties"); err != nil {
		return nil, err
	}
	if err := checkObject(m.Traits, where+".traits"); err != nil {
		return nil, err
	}
	e.Properties = compactObject(m.Properties)
	switch typ {
	case "track":
		if m.Event == "" {
			return nil, errField(where+".event", "is required for track")
		}
		e.Track = m.Event
		e.Type = event.Custom
		if t, ok := trackTypes[m.Event]; ok {
			e.Type = t
		}
		if e.Type == event.DealWon {
			if err := dealFields(e, m.Properties, where); err != nil {
				return nil, err
			}
		}
	case "page", "screen":
		e.Type = event.PageView
		e.Title = m.Name
	case "identify":
		e.Type = event.Identify
		e.Traits = compactObject(m.Traits)
		if len(e.Traits) == 0 && m.Context != nil {
			if err := checkObject(m.Context.Traits, where+".context.traits"); err != nil {
				return nil, err
			}
			e.Traits = compactObject(m.Context.Traits)
		}
	case "group":
		// B2B account data: kept as a custom event with the group traits.
		e.Type = event.Custom
		e.Track = "Group"
		e.Traits = compactObject(m.Traits)
		if gid, err := idString(m.GroupID, where+".groupId"); err != nil {
			return nil, err
		} else if gid == "" {
			return nil, errField(where+".groupId", "is required for group")
		}
	case "alias":
		e.Type = event.Alias
		if e.PreviousID, err = idString(m.PreviousID, where+".previousId"); err != nil {
			return nil, err
		}
		if e.PreviousID == "" || e.LeadID == "" {
			return nil, errField(where, "alias needs both userId and previousId")
		}
	case "":
		return nil, errField(where+".type", "is required (track, page, screen, identify, alias or group)")
	default:
		return nil, errField(where+".type", "unknown type %q (want track, page, screen, identify, alias or group)", typ)
	}
	if e.AnonymousID == "" && e.LeadID == "" {
		return nil, errField(where, "userId or anonymousId is required")
	}
	if m.Context != nil {
		applyContext(e, m.Context)
	}
	e.IP, e.UserAgent = firstNonEmpty(e.IP, r.ip), firstNonEmpty(e.UserAgent, r.userAgent)
	if e.Type == event.PageView {
		pageFromProperties(e, m.Properties, m.Context != nil)
	}
	if e.EventTime, err = eventTime(m, r, where); err != nil {
		return nil, err
	}
	e.ID = m.MessageID
	if e.ID == "" {
		// Deterministic, so a client that retries a body without messageIds
		// still does not count twice.
		sum := sha256.Sum256(append([]byte(r.writeKeyID+"\x00"), raw...))
		e.ID = "gen-" + hex.EncodeToString(sum[:16])
	}
	if len(e.ID) > 256 {
		return nil, errField(where+".messageId", "is longer than 256 characters")
	}
	return e, nil
}

func idString(raw json.RawMessage, field string) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	switch raw[0] {
	case '"':
		if s, ok := plainString(raw); ok {
			if len(s) > 256 {
				return "", errField(field, "is longer than 256 characters")
			}
			return strings.TrimSpace(s), nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", errField(field, "malformed string")
		}
		if len(s) > 256 {
			return "", errField(field, "is longer than 256 characters")
		}
		return strings.TrimSpace(s), nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return string(raw), nil // Segment accepts numeric ids
	}
	return "", errField(field, "must be a string or a number")
}

// plainString returns the value of the JSON string raw when it holds only
// printable ASCII and no escape, the common case that needs no decoder (its
// bytes are its value); ok is false otherwise.
func plainString(raw []byte) (string, bool) {
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

func checkObject(raw json.RawMessage, field string) error {
	if len(raw) == 0 || string(raw) == "null" || raw[0] == '{' {
		return nil
	}
	return errField(field, "must be a JSON object")
}

// compactObject drops empty and null objects so the topic carries no noise.
func compactObject(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" || string(raw) == "{}" {
		return nil
	}
	return raw
}

func applyContext(e *event.Event, c *segContext) {
	e.IP, e.UserAgent = c.IP, c.UserAgent
	if p := c.Page; p != nil {
		e.URL, e.Path, e.Referrer = p.URL, p.Path, p.Referrer
		if e.Title == "" {
			e.Title = p.Title
		}
	}
	if c := c.Campaign; c != nil {
		e.UTMCampaign, e.UTMSource, e.UTMMedium, e.UTMTerm, e.UTMContent = c.Name, c.Source, c.Medium, c.Term, c.Content
	}
	fillFromURL(e)
}

// pageFromProperties reads the page fields analytics.js puts in page
// properties. urlDone says fillFromURL already ran (applyContext): with the
// URL unchanged since, running it again would change nothing.
func pageFromProperties(e *event.Event, raw json.RawMessage, urlDone bool) {
	if len(raw) == 0 {
		return
	}
	var p segPage
	if decodeSegPage(raw, &p) != nil {
		return
	}
	prev := e.URL
	e.URL, e.Path = firstNonEmpty(e.URL, p.URL), firstNonEmpty(e.Path, p.Path)
	e.Referrer, e.Title = firstNonEmpty(e.Referrer, p.Referrer), firstNonEmpty(e.Title, p.Title)
	if !urlDone || e.URL != prev {
		fillFromURL(e)
	}
}

// fillFromURL derives the path and UTM fields from the URL when not given.
func fillFromURL(e *event.Event) {
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

func dealFields(e *event.Event, raw json.RawMessage, where string) error {
	if len(raw) == 0 {
		return nil
	}
	var p struct {
		Revenue  *float64 `json:"revenue"`
		Currency string   `json:"currency"`
		Campaign string   `json:"campaign"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return errField(where+".properties.revenue", "must be a number")
	}
	if p.Revenue != nil {
		if *p.Revenue < 0 || *p.Revenue > 1e13 {
			return errField(where+".properties.revenue", "must be between 0 and 1e13")
		}
		e.Revenue = *p.Revenue
	}
	e.Currency = strings.ToUpper(p.Currency)
	e.Campaign = firstNonEmpty(e.Campaign, p.Campaign)
	return nil
}

// maxFutureSkew bounds how far ahead of the collector's clock an event may claim to be.
const maxFutureSkew = 5 * time.Minute

// eventTime applies Segment's clock-skew correction: timestamp + (receivedAt − sentAt).
func eventTime(m *segMessage, r *request, where string) (time.Time, error) {
	ts := firstNonEmpty(m.Timestamp, m.OriginalTimestamp)
	if ts == "" {
		return r.receivedAt, nil
	}
	t, err := parseTime(ts)
	if err != nil {
		return time.Time{}, errField(where+".timestamp", "not an ISO-8601 time: %q", ts)
	}
	if sent := firstNonEmpty(m.SentAt, r.sentAt); sent != "" && m.Timestamp == "" {
		if st, err := parseTime(sent); err == nil {
			t = t.Add(r.receivedAt.Sub(st))
		}
	}
	if t.After(r.receivedAt.Add(maxFutureSkew)) {
		t = r.receivedAt
	}
	if t.Year() < 2000 {
		return time.Time{}, errField(where+".timestamp", "%q is before the year 2000", ts)
	}
	return t.UTC().Truncate(time.Millisecond), nil
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("bad time %q", s)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// decodeBatch decodes a /v1/batch body that passed validJSON. The usual body
// (the four known keys spelt exactly, each once, plain strings) is cut into
// its messages without a decoder: each message is a sub-slice of body. Any
// other body goes through the JSON decoder, which gives the same result for
// the usual ones.
func decodeBatch(body []byte) (segBatch, error) {
	if b, ok := splitBatch(body); ok {
		return b, nil
	}
	var b segBatch
	err := json.Unmarshal(body, &b)
	return b, err
}

// splitBatch is decodeBatch's fast path; ok is false when it does not apply.
// body must have passed validJSON: values are skipped, not validated again.
func splitBatch(body []byte) (b segBatch, ok bool) {
	i := jsonx.SkipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return b, false
	}
	var seen [4]bool
	i = jsonx.SkipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return b, true
	}
	for {
		if i >= len(body) || body[i] != '"' {
			return b, false
		}
		end := skipValidString(body, i)
		key := body[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			return b, false
		}
		i = jsonx.SkipSpace(body, end)
		if i >= len(body) || body[i] != ':' {
			return b, false
		}
		i = jsonx.SkipSpace(body, i+1)
		if i >= len(body) {
			return b, false
		}
		if string(key) == "batch" && body[i] == '[' {
			// The array is walked element by element rather than
			// skipped whole and then walked.
			if seen[0] {
				return b, false
			}
			seen[0] = true
			if i, ok = splitArray(body, i, &b); !ok {
				return b, false
			}
		} else if i, ok = splitMember(body, i, key, &b, &seen); !ok {
			return b, false
		}
		i = jsonx.SkipSpace(body, i)
		if i >= len(body) {
			return b, false
		}
		if body[i] == '}' {
			return b, jsonx.SkipSpace(body, i+1) == len(body)
		}
		if body[i] != ',' {
			return b, false
		}
		i = jsonx.SkipSpace(body, i+1)
	}
}

// splitArray cuts the "batch" array starting at body[i] into b.Batch and
// returns the index past it.
func splitArray(body []byte, i int, b *segBatch) (int, bool) {
	b.Batch = make([]json.RawMessage, 0, 64)
	i = jsonx.SkipSpace(body, i+1)
	for i < len(body) && body[i] != ']' {
		s := i
		i = skipValidValue(body, i)
		b.Batch = append(b.Batch, body[s:i:i])
		i = jsonx.SkipSpace(body, i)
		if i < len(body) && body[i] == ',' {
			i = jsonx.SkipSpace(body, i+1)
			if i < len(body) && body[i] == ']' {
				return i, false // a trailing comma
			}
		} else if i >= len(body) || body[i] != ']' {
			return i, false
		}
	}
	if i >= len(body) {
		return i, false
	}
	return i + 1, true
}

// splitMember takes the value at body[i] of a top-level member other than a
// "batch" array and returns the index past it; false leaves the body to the
// decoder.
func splitMember(body []byte, i int, key []byte, b *segBatch, seen *[4]bool) (int, bool) {
	start := i
	i = skipValidValue(body, i)
	val := body[start:i]
	k := -1
	switch string(key) {
	case "batch":
		k = 0
		if val[0] != 'n' { // only null is left to the fast path
			return i, false
		}
	case "writeKey", "sentAt":
		k = 1
		str := ""
		if val[0] != 'n' { // null leaves it empty
			var ok bool
			if str, ok = plainString(val); !ok {
				return i, false
			}
		}
		if key[0] == 'w' {
			b.WriteKey = str
		} else {
			k = 2
			b.SentAt = str
		}
	case "context":
		k = 3
		b.Context = json.RawMessage(val[:len(val):len(val)])
	default:
		// A key the decoder would match regardless of case, or one it
		// might fold from non-ASCII letters, is left to it.
		for _, c := range key {
			if c >= 0x80 {
				return i, false
			}
		}
		for _, known := range []string{"batch", "writeKey", "sentAt", "context"} {
			if strings.EqualFold(string(key), known) {
				return i, false
			}
		}
	}
	if k >= 0 {
		if seen[k] {
			return i, false // a repeated key: the decoder's rules apply
		}
		seen[k] = true
	}
	return i, true
}
