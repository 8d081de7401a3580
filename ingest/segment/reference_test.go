package segment

// The decoding written plainly over encoding/json, without the fast paths:
// the reference the fuzz tests compare Parse and Events with (same events,
// same errors).

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/leadstream/leadstream/event"
)

// refBatch is what a batch gives its messages, for the reference: its
// context and integrations (as sent, nil when absent, null or {}) and sentAt.
type refBatch struct {
	ctx    json.RawMessage
	integ  json.RawMessage
	sentAt string
}

func refDecodeMessage(raw []byte, where, forceType string, r *Request, bc *refBatch) (*event.Event, error) {
	if len(raw) > MaxEventBytes {
		return nil, errField(where, "event is %d bytes, over the limit of 32 KB (%d bytes) per event", len(raw), MaxEventBytes)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		// Valid JSON that does not decode: a number too large for a float64.
		path, num, ok := refNonFinite(raw)
		if !ok || err.Error() != "json: cannot unmarshal number "+num+" into Go value of type float64" {
			panic(fmt.Sprintf("reference: %q: %v, found %q %v", raw, err, num, ok))
		}
		return nil, errNonFinite(where+path, num)
	}
	var m message // its JSON fields; the fast decoder's own are left unset
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, errField(where, "malformed JSON: %v", err)
	}
	var own *segContext
	if len(m.Context) > 0 && m.Context[0] == '{' {
		own = new(segContext)
		if err := json.Unmarshal(m.Context, own); err != nil {
			return nil, errField(where, "malformed JSON: %v", err)
		}
	}
	typ := m.Type
	if forceType != "" {
		if typ != "" && typ != forceType {
			return nil, errField(where+".type", "is %q but the endpoint is /v1/%s", typ, forceType)
		}
		typ = forceType
	}
	e := &event.Event{ReceivedAt: r.ReceivedAt, WriteKeyID: r.WriteKeyID}
	var err error
	if e.AnonymousID, err = refIDString(m.AnonymousID, where+".anonymousId"); err != nil {
		return nil, err
	}
	if e.LeadID, err = refIDString(m.UserID, where+".userId"); err != nil {
		return nil, err
	}
	for _, o := range []struct {
		raw   json.RawMessage
		field string
	}{{m.Properties, ".properties"}, {m.Traits, ".traits"}, {m.Integrations, ".integrations"}, {m.Context, ".context"}} {
		if len(o.raw) > 0 && string(o.raw) != "null" && o.raw[0] != '{' {
			return nil, errField(where+o.field, "must be a JSON object")
		}
	}
	// The batch's context merged in: its members the message lacks, then
	// the message's own; the fields read from the merged object.
	ctxRaw, c := m.Context, own
	if bc != nil && len(refCompact(bc.ctx)) > 0 {
		ctxRaw = refMerge(bc.ctx, m.Context)
		if n := len(raw) - len(m.Context) + len(ctxRaw); n > MaxEventBytes {
			return nil, &Error{Field: where, Limit: LimitEventSize, Msg: "event is " + itoa(n) + " bytes with its batch's context, over the limit of 32 KB (32768 bytes) per event"}
		}
		c = new(segContext)
		if err := json.Unmarshal(ctxRaw, c); err != nil {
			return nil, errField(where+".context", "malformed JSON: %v", err)
		}
	}
	// The batch's integrations merged in the same way.
	integ := m.Integrations
	if bc != nil && len(refCompact(bc.integ)) > 0 {
		integ = refMerge(bc.integ, m.Integrations)
		if n := len(raw) - len(m.Context) + len(ctxRaw) - len(m.Integrations) + len(integ); n > MaxEventBytes {
			return nil, &Error{Field: where, Limit: LimitEventSize, Msg: "event is " + itoa(n) + " bytes with its batch's context and integrations, over the limit of 32 KB (32768 bytes) per event"}
		}
	}
	e.Properties = refCompact(m.Properties)
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
			var p struct {
				Revenue  *float64 `json:"revenue"`
				Currency string   `json:"currency"`
				Campaign string   `json:"campaign"`
			}
			if err := json.Unmarshal(m.Properties, &p); len(m.Properties) > 0 && err != nil {
				return nil, errField(where+".properties.revenue", "must be a number")
			}
			if p.Revenue != nil {
				if *p.Revenue < 0 || *p.Revenue > 1e13 {
					return nil, errField(where+".properties.revenue", "must be between 0 and 1e13")
				}
				e.Revenue = *p.Revenue
			}
			e.Currency, e.Campaign = strings.ToUpper(p.Currency), p.Campaign
		}
	case "page", "screen":
		e.Type = event.PageView
		e.Title = m.Name
		// A non-empty string category becomes properties.category, unless
		// the properties have one.
		var cat string
		if len(m.Category) > 0 && m.Category[0] == '"' && json.Unmarshal(m.Category, &cat) == nil && cat != "" {
			props := refMembers(refCompactOrEmpty(m.Properties))
			has := false
			var parts [][]byte
			for _, p := range props {
				has = has || p.key == "category"
				parts = append(parts, p.raw)
			}
			if !has {
				parts = append(parts, append([]byte(`"category":`), m.Category...))
				e.Properties = append(append([]byte{'{'}, bytes.Join(parts, []byte{','})...), '}')
			}
		}
	case "identify":
		e.Type = event.Identify
		e.Traits = refCompact(m.Traits)
		if len(e.Traits) == 0 && c != nil {
			if len(c.Traits) > 0 && string(c.Traits) != "null" && c.Traits[0] != '{' {
				return nil, errField(where+".context.traits", "must be a JSON object")
			}
			e.Traits = refCompact(c.Traits)
		}
	case "group":
		e.Type = event.Group
		e.Traits = refCompact(m.Traits)
		if e.GroupID, err = refIDString(m.GroupID, where+".groupId"); err != nil {
			return nil, err
		} else if e.GroupID == "" {
			return nil, errField(where+".groupId", "is required for group")
		}
	case "alias":
		e.Type = event.Alias
		if e.PreviousID, err = refIDString(m.PreviousID, where+".previousId"); err != nil {
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
	if !r.Server {
		if err := browserScope(e, refLoc(where)); err != nil {
			return nil, err
		}
	}
	if c != nil {
		e.IP, e.UserAgent = c.IP, c.UserAgent
		if p := c.Page; p != nil {
			e.URL, e.Path, e.Referrer = p.URL, p.Path, p.Referrer
			if e.Title == "" {
				e.Title = p.Title
			}
		}
		if cp := c.Campaign; cp != nil {
			e.UTMCampaign, e.UTMSource, e.UTMMedium, e.UTMTerm, e.UTMContent = cp.Name, cp.Source, cp.Medium, cp.Term, cp.Content
		}
		refFillFromURL(e)
	}
	if r.Browser || e.IP == "" {
		e.IP = r.IP // a browser's connection wins over what its page says
	}
	if r.AnonymizeIP {
		e.IP = refAnonymize(e.IP)
		hasIP := false // an "ip" member of any case, an empty one too: dropped
		if c != nil && len(ctxRaw) > 0 {
			for _, m := range refMembers(ctxRaw) {
				hasIP = hasIP || strings.EqualFold(m.key, "ip")
			}
		}
		if c != nil && (c.IP != "" || hasIP) {
			var parts [][]byte
			for _, m := range refMembers(ctxRaw) {
				if !strings.EqualFold(m.key, "ip") {
					parts = append(parts, m.raw)
				}
			}
			if a := refAnonymize(c.IP); a != "" {
				parts = append(parts, []byte(`"ip":"`+a+`"`))
			}
			ctxRaw = append(append([]byte{'{'}, bytes.Join(parts, []byte{','})...), '}')
		}
	}
	if e.UserAgent == "" {
		e.UserAgent = r.UserAgent
	}
	if e.Type == event.PageView && len(m.Properties) > 0 {
		var p segPage
		if json.Unmarshal(m.Properties, &p) == nil {
			e.URL, e.Path = firstNonEmpty(e.URL, p.URL), firstNonEmpty(e.Path, p.Path)
			e.Referrer, e.Title = firstNonEmpty(e.Referrer, p.Referrer), firstNonEmpty(e.Title, p.Title)
			refFillFromURL(e)
		}
	}
	if e.Campaign == "" {
		e.Campaign = e.UTMCampaign
	}
	sentAt, sentField := m.SentAt, where+".sentAt"
	if sentAt == "" && bc != nil {
		sentAt, sentField = bc.sentAt, "sentAt"
	}
	if e.EventTime, e.OriginalTimestamp, err = refEventTime(&m, sentAt, sentField, r.ReceivedAt, where); err != nil {
		return nil, err
	}
	if !r.Server && r.MaxEventAge > 0 && r.ReceivedAt.Sub(e.EventTime) > r.MaxEventAge {
		return nil, errTooOld(&m, refLoc(where), r.ReceivedAt.Sub(e.EventTime), r.MaxEventAge)
	}
	e.Context, e.Integrations = refCompact(ctxRaw), refCompact(integ)
	e.ID = m.MessageID
	if e.ID == "" {
		sum := sha256.Sum256(append([]byte(r.WriteKeyID+"\x00"), raw...))
		e.ID = "gen-" + hex.EncodeToString(sum[:16])
	}
	if len(e.ID) > 256 {
		return nil, errField(where+".messageId", "is longer than 256 characters")
	}
	return e, nil
}

func refEventTime(m *message, sentAt, sentField string, received time.Time, where string) (time.Time, time.Time, error) {
	ts, field := m.Timestamp, where+".timestamp"
	if ts == "" {
		ts, field = m.OriginalTimestamp, where+".originalTimestamp"
	}
	if ts == "" {
		return received, time.Time{}, nil
	}
	t, err := parseTime(ts)
	if err != nil {
		return t, time.Time{}, errField(field, "not an ISO-8601 time: %q", ts)
	}
	if y := t.UTC().Year(); y < 1970 || y >= 2106 {
		return t, time.Time{}, errField(field, "%q is not between 1970 and 2106", ts)
	}
	orig := t.UTC().Truncate(time.Millisecond)
	if sentAt != "" {
		st, err := parseTime(sentAt)
		if err != nil {
			return t, orig, errField(sentField, "not an ISO-8601 time: %q", sentAt)
		}
		held := st.Sub(t) // how long the client held it, by its own clock
		if held < 0 {
			held = 0
		}
		t = received.Add(-held)
	} else if t.Sub(received) > 5*time.Minute {
		t = received
	}
	if t.UTC().Year() < 2000 {
		if sentAt != "" {
			return t, orig, errField(field, "%q with sentAt %q puts the event before the year 2000", ts, sentAt)
		}
		return t, orig, errField(field, "%q is before the year 2000", ts)
	}
	return t.UTC().Truncate(time.Millisecond), orig, nil
}

// refMerge merges the batch context into own with encoding/json's tokenizer:
// the batch's members whose (unescaped) keys own lacks, then own's members,
// each copied as it was written.
func refMerge(batch, own json.RawMessage) json.RawMessage {
	if len(own) == 0 || string(own) == "null" {
		return batch
	}
	ownMembers := refMembers(own)
	has := map[string]bool{}
	for _, m := range ownMembers {
		has[m.key] = true
	}
	var parts [][]byte
	for _, m := range refMembers(batch) {
		if !has[m.key] {
			parts = append(parts, m.raw)
		}
	}
	for _, m := range ownMembers {
		parts = append(parts, m.raw)
	}
	return append(append([]byte{'{'}, bytes.Join(parts, []byte{','})...), '}')
}

type refMember struct {
	key string
	raw []byte
}

func refMembers(obj []byte) []refMember {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // {
		panic(err)
	}
	var out []refMember
	for dec.More() {
		start := int(dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			panic(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			panic(err)
		}
		raw := bytes.TrimLeft(obj[start:dec.InputOffset()], " \t\r\n,")
		out = append(out, refMember{key: tok.(string), raw: raw})
	}
	if _, err := dec.Token(); err != nil && err != io.EOF { // }
		panic(err)
	}
	return out
}

func refCompact(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" || string(raw) == "{}" {
		return nil
	}
	return raw
}

// refCompactOrEmpty is raw, or {} when it is absent or null.
func refCompactOrEmpty(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return json.RawMessage(`{}`)
	}
	return raw
}

func refIDString(raw json.RawMessage, field string) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	switch raw[0] {
	case '"':
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

func refFillFromURL(e *event.Event) {
	if e.URL == "" {
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
	q := u.Query()
	e.UTMSource = firstNonEmpty(e.UTMSource, q.Get("utm_source"))
	e.UTMMedium = firstNonEmpty(e.UTMMedium, q.Get("utm_medium"))
	e.UTMCampaign = firstNonEmpty(e.UTMCampaign, q.Get("utm_campaign"))
	e.UTMTerm = firstNonEmpty(e.UTMTerm, q.Get("utm_term"))
	e.UTMContent = firstNonEmpty(e.UTMContent, q.Get("utm_content"))
	if e.Campaign == "" {
		e.Campaign = e.UTMCampaign
	}
}

// refLoc is the loc whose String is where ("batch[0]" or a call's type).
func refLoc(where string) loc {
	if rest, ok := strings.CutPrefix(where, "batch["); ok {
		n, _ := strconv.Atoi(strings.TrimSuffix(rest, "]"))
		return loc{index: n}
	}
	return single(where)
}

// refAnonymize is AnonymizeIP written with net.IP masks.
func refAnonymize(s string) string {
	ip := net.ParseIP(s)
	if ip == nil {
		host, _, err := net.SplitHostPort(s)
		if err != nil {
			return ""
		}
		if ip = net.ParseIP(host); ip == nil {
			return ""
		}
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.Mask(net.CIDRMask(24, 32)).String()
	}
	return ip.Mask(net.CIDRMask(48, 128)).String()
}

// refNonFinite finds the first number that does not fit a float64 with
// encoding/json's tokenizer, and its path as nonFinite writes it.
func refNonFinite(raw []byte) (path, num string, found bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	type level struct {
		obj    bool
		n      int    // elements or members seen
		key    string // the current member's key
		expKey bool   // an object expecting a key next
	}
	var stack []*level
	pathOf := func() string {
		var sb strings.Builder
		for _, l := range stack {
			if l.obj {
				plain := len(l.key) > 0 && len(l.key) <= 64
				for _, c := range []byte(l.key) {
					if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '$') {
						plain = false
					}
				}
				if plain {
					sb.WriteString("." + l.key)
				} else {
					k := l.key
					if len(k) > 64 {
						k = k[:64] + "..."
					}
					sb.WriteString("[" + strconv.Quote(k) + "]")
				}
			} else {
				sb.WriteString("[" + strconv.Itoa(l.n-1) + "]")
			}
		}
		return sb.String()
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", "", false
		}
		var top *level
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '}' || d == ']' {
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].obj {
					stack[len(stack)-1].expKey = true
				}
				continue
			}
			if top != nil && !top.obj {
				top.n++
			}
			stack = append(stack, &level{obj: d == '{', expKey: d == '{'})
			continue
		}
		if top != nil && top.obj && top.expKey {
			top.key, top.expKey = tok.(string), false
			continue
		}
		if top != nil && !top.obj {
			top.n++
		}
		if n, ok := tok.(json.Number); ok {
			if _, err := strconv.ParseFloat(string(n), 64); err != nil {
				return pathOf(), string(n), true
			}
		}
		if top != nil && top.obj {
			top.expKey = true
		}
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
