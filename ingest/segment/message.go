package segment

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/jsonx"
)

// message is one Segment call (track, page, screen, identify, alias, group).
type message struct {
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
	Context           json.RawMessage `json:"context"`
	Integrations      json.RawMessage `json:"integrations"`
	WriteKey          string          `json:"writeKey"`
	// Category is a page's or screen's category, beside its name
	// (analytics-kotlin, analytics-swift, analytics-android and
	// analytics-node send it there): kept as properties.category.
	Category json.RawMessage `json:"category"`

	// ctx is Context decoded, when it is an object (parsed).
	ctx    segContext
	parsed bool
}

// trackTypes maps Segment's semantic track event names onto leadstream types.
var trackTypes = map[string]event.Type{
	"Email Opened":       event.EmailOpen,
	"Email Link Clicked": event.EmailClick,
	"Form Submitted":     event.FormSubmit,
	"Deal Won":           event.DealWon,
}

// mapMessage maps the decoded call m (raw is its JSON) onto an event.
func mapMessage(m *message, raw []byte, at loc, forceType string, r *Request, bc *batchContext) (*event.Event, error) {
	typ := m.Type
	if forceType != "" {
		if typ != "" && typ != forceType {
			return nil, errField(at.field(".type"), "is %q but the endpoint is /v1/%s", typ, forceType)
		}
		typ = forceType
	}
	e := getEvent()
	e.ReceivedAt, e.WriteKeyID = r.ReceivedAt, r.WriteKeyID
	var err error
	if e.AnonymousID, err = idString(m.AnonymousID, at, ".anonymousId"); err != nil {
		return nil, err
	}
	if e.LeadID, err = idString(m.UserID, at, ".userId"); err != nil {
		return nil, err
	}
	if !isObject(m.Properties) {
		return nil, errNotObject(at.field(".properties"))
	}
	if !isObject(m.Traits) {
		return nil, errNotObject(at.field(".traits"))
	}
	if !isObject(m.Integrations) {
		return nil, errNotObject(at.field(".integrations"))
	}
	ctxRaw, c, err := resolveContext(m, raw, at, bc)
	if err != nil {
		return nil, err
	}
	integrations, err := resolveIntegrations(m, raw, ctxRaw, at, bc)
	if err != nil {
		return nil, err
	}
	e.Properties = compactObject(m.Properties)
	switch typ {
	case "track":
		if m.Event == "" {
			return nil, errField(at.field(".event"), "is required for track")
		}
		e.Track = m.Event
		e.Type = event.Custom
		if t, ok := trackTypes[m.Event]; ok {
			e.Type = t
		}
		if e.Type == event.DealWon {
			if err := dealFields(e, m.Properties, at); err != nil {
				return nil, err
			}
		}
	case "page", "screen":
		e.Type = event.PageView
		e.Title = m.Name
		e.Properties = withCategory(e.Properties, m.Category)
	case "identify":
		e.Type = event.Identify
		e.Traits = compactObject(m.Traits)
		if len(e.Traits) == 0 && c != nil {
			if !isObject(c.Traits) {
				return nil, errNotObject(at.field(".context.traits"))
			}
			e.Traits = compactObject(c.Traits)
		}
	case "group":
		// B2B account: the lead becomes a member of groupId, whose traits
		// (name, domain, industry, employees …) the call carries.
		e.Type = event.Group
		e.Traits = compactObject(m.Traits)
		if e.GroupID, err = idString(m.GroupID, at, ".groupId"); err != nil {
			return nil, err
		} else if e.GroupID == "" {
			return nil, errField(at.field(".groupId"), "is required for group")
		}
	case "alias":
		e.Type = event.Alias
		if e.PreviousID, err = idString(m.PreviousID, at, ".previousId"); err != nil {
			return nil, err
		}
		if e.PreviousID == "" || e.LeadID == "" {
			return nil, errField(at.String(), "alias needs both userId and previousId")
		}
	case "":
		return nil, errField(at.field(".type"), "is required (track, page, screen, identify, alias or group)")
	default:
		return nil, errField(at.field(".type"), "unknown type %q (want track, page, screen, identify, alias or group)", typ)
	}
	if e.AnonymousID == "" && e.LeadID == "" {
		return nil, errField(at.String(), "userId or anonymousId is required")
	}
	if !r.Server {
		if err := browserScope(e, at); err != nil {
			return nil, err
		}
	}
	if c != nil {
		applyContext(e, c)
	}
	if r.Browser || e.IP == "" {
		e.IP = r.IP
	}
	if r.AnonymizeIP {
		e.IP = AnonymizeIP(e.IP)
		if c != nil && (c.IP != "" || mayHaveIPKey(ctxRaw)) {
			// Also when the decoder read an empty ip: {"ip":"198.51.100.7",
			// "IP":""} reads "" (the last key of any case wins) and
			// would keep the full address in the stored context.
			ctxRaw = anonymizeContextIP(ctxRaw, c.IP)
		}
	}
	if e.UserAgent == "" && r.UserAgent != "" {
		e.UserAgent = r.UserAgent
		if bc != nil {
			// Repeated in every message of the batch, as a batch context
			// is: counted in what the batch may add (a 16 KB header on
			// a thousand tiny messages would otherwise be 100 MB).
			bc.addUserAgent(r.UserAgent)
		}
	}
	if e.Type == event.PageView {
		pageFromProperties(e, m.Properties, c != nil)
	}
	// The campaign of every call: the deal's, else context.campaign.name,
	// else the URL's utm_campaign (with or without a page).
	e.Campaign = firstNonEmpty(e.Campaign, e.UTMCampaign)
	sentAt, batchSentAt := m.SentAt, false
	if sentAt == "" && bc != nil {
		sentAt, batchSentAt = bc.sentAt, true
	}
	if e.EventTime, e.OriginalTimestamp, err = eventTime(m, sentAt, batchSentAt, r.ReceivedAt, at); err != nil {
		return nil, err
	}
	if !r.Server && r.MaxEventAge > 0 {
		if age := r.ReceivedAt.Sub(e.EventTime); age > r.MaxEventAge {
			return nil, errTooOld(m, at, age, r.MaxEventAge)
		}
	}
	e.Context, e.Integrations = compactObject(ctxRaw), compactObject(integrations)
	e.ID = m.MessageID
	if e.ID == "" {
		// Deterministic, so a client that retries a body without messageIds
		// still does not count twice.
		sum := sha256.Sum256(append([]byte(r.WriteKeyID+"\x00"), raw...))
		e.ID = "gen-" + hex.EncodeToString(sum[:16])
	}
	if len(e.ID) > 256 {
		return nil, errField(at.field(".messageId"), "is longer than 256 characters")
	}
	if len(raw)+len(ctxRaw)+len(integrations)-len(m.Integrations)+len(e.UserAgent) > maxUnchecked {
		// Stored, an event repeats its URL (url, utm_*, campaign, the
		// context's page.url) and JSON-escapes <, > and & six bytes each:
		// a large one is measured once encoded. The request's User-Agent
		// (up to the 16 KiB of a request's head) is stored with it too.
		if n := event.EncodedSize(e); n > MaxRecordBytes {
			return nil, &Error{Field: at.String(), Limit: LimitEventSize,
				Msg: fmt.Sprintf("event is %d bytes once stored (escaped, with the fields taken from its URL and its user agent), over the limit of %d bytes per stored event", n, MaxRecordBytes)}
		}
	}
	return e, nil
}

// withCategory returns the properties props (compacted) of a page or screen
// whose category is category (its JSON value): with "category" added as
// their last member when category is a non-empty string and they have no
// "category" of their own, else props.
func withCategory(props, category json.RawMessage) json.RawMessage {
	if len(category) < 3 || category[0] != '"' {
		return props // absent, null, "" or not a string
	}
	has := false
	out := make([]byte, 0, len(props)+len(category)+len(`{,"category":}`))
	out = append(out, '{')
	eachMember(props, func(key string, member []byte) {
		has = has || key == "category"
		out = append(append(out, member...), ',')
	})
	if has {
		return props
	}
	out = append(append(append(out, `"category":`...), category...), '}')
	return out
}

// MaxRecordBytes bounds an event as stored (its Kafka record): 4 × the 32 KB
// of an event as sent, which what an event's own fields can grow to only
// when it is built to (hundreds of < in a URL repeated in four fields).
const MaxRecordBytes = 4 * MaxEventBytes

// maxUnchecked is the size of a message (with its context) under which its
// record cannot reach MaxRecordBytes, so it is not measured: each byte is
// stored in at most six fields (its context or properties, and url, path,
// a utm_* field and campaign taken from a URL), at most six bytes escaped.
const maxUnchecked = MaxRecordBytes / 40

func idString(raw json.RawMessage, at loc, field string) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	switch raw[0] {
	case '"':
		if s, ok := jsonx.PlainString(raw); ok {
			if len(s) > 256 {
				return "", errField(at.field(field), "is longer than 256 characters")
			}
			return strings.TrimSpace(s), nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", errField(at.field(field), "malformed string")
		}
		if len(s) > 256 {
			return "", errField(at.field(field), "is longer than 256 characters")
		}
		return strings.TrimSpace(s), nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if len(raw) > 256 {
			return "", errField(at.field(field), "is longer than 256 characters")
		}
		return string(raw), nil // Segment accepts numeric ids
	}
	return "", errField(at.field(field), "must be a string or a number")
}

// pageFromProperties reads the page fields analytics.js puts in page
// properties. urlDone says FillFromURL already ran (applyContext): with the
// URL unchanged since, running it again would change nothing.
func pageFromProperties(e *event.Event, raw json.RawMessage, urlDone bool) {
	if len(raw) == 0 {
		return
	}
	var p segPage
	if decodePage(raw, &p) != nil {
		return
	}
	prev := e.URL
	e.URL, e.Path = firstNonEmpty(e.URL, p.URL), firstNonEmpty(e.Path, p.Path)
	e.Referrer, e.Title = firstNonEmpty(e.Referrer, p.Referrer), firstNonEmpty(e.Title, p.Title)
	if !urlDone || e.URL != prev {
		FillFromURL(e)
	}
}

// dealFields takes a Deal Won's revenue, currency and campaign from its
// properties. revenue is a number or, as Segment's own libraries accept
// (@segment/facade Track#revenue), a string of one with an optional
// leading "$" ("1234.50", "$99"); a string it cannot read whole ("1,234.50":
// thousands or decimal comma?) is refused, naming it. currency and campaign
// are taken when they are strings (a numeric campaign id as its digits) and
// otherwise left out, never a reason to refuse the deal.
func dealFields(e *event.Event, raw json.RawMessage, at loc) error {
	if len(raw) == 0 {
		return nil
	}
	var p struct {
		Revenue, Currency, Campaign json.RawMessage
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return errField(at.field(".properties"), "must be a JSON object")
	}
	if v, ok, err := revenue(p.Revenue); err != nil {
		return errField(at.field(".properties.revenue"), "%v", err)
	} else if ok {
		if v < 0 || v > 1e13 {
			return errField(at.field(".properties.revenue"), "must be between 0 and 1e13")
		}
		e.Revenue = v
	}
	if c, ok := jsonString(p.Currency); ok {
		e.Currency = strings.ToUpper(c)
	}
	campaign, ok := jsonString(p.Campaign)
	if !ok && len(p.Campaign) > 0 && (p.Campaign[0] == '-' || p.Campaign[0] >= '0' && p.Campaign[0] <= '9') {
		campaign = string(p.Campaign) // a numeric id, as sent
	}
	e.Campaign = firstNonEmpty(e.Campaign, campaign)
	return nil
}

// revenue reads a Deal Won's revenue: ok is false when there is none (absent
// or null).
func revenue(raw json.RawMessage) (v float64, ok bool, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false, nil
	}
	s := string(raw)
	if str, isStr := jsonString(raw); isStr {
		s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(str), "$"))
		if s == "" {
			return 0, false, nil
		}
	}
	v, err = strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false, fmt.Errorf("must be a number, or a string of one such as \"1234.50\" or \"$99\"; got %s", short(string(raw)))
	}
	return v, true, nil
}

// short is s for an error message: its first 40 bytes (whole characters)
// and "…" when longer.
func short(s string) string {
	if len(s) <= 40 {
		return s
	}
	n := 40
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// jsonString returns raw's value when it is a JSON string.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// maxFutureSkew bounds how far ahead of the collector's clock an event
// without sentAt may claim to be.
const maxFutureSkew = 5 * time.Minute

// Times a client's timestamp must fall within: what ClickHouse's DateTime
// stores (original_timestamp keeps it as sent).
var (
	minTimestamp = time.Unix(0, 0)
	maxTimestamp = time.Date(2106, 1, 1, 0, 0, 0, 0, time.UTC)
)

// eventTime returns a call's event time and its original timestamp (zero
// when it has none), for a call received at received with sentAt (the
// call's, else its batch's: batchSentAt).
//
// Segment's rule: with a sentAt, event time = timestamp + (received −
// sentAt), i.e. the receipt time less how long the client held the event by
// its own clock (sentAt − timestamp). That makes the client's clock error
// cancel out. The client's clock still decides how long it says it held the
// event, so: an event that claims to have happened after it was sent
// (timestamp > sentAt) is taken as happening when received — a corrected
// event is never later than its receipt. Without a sentAt the timestamp is
// taken as it is, clamped to the receipt when more than maxFutureSkew ahead.
// Either way an event time before the year 2000 is refused.
func eventTime(m *message, sentAt string, batchSentAt bool, received time.Time, at loc) (t, orig time.Time, err error) {
	ts, tsField := m.Timestamp, ".timestamp"
	if ts == "" {
		ts, tsField = m.OriginalTimestamp, ".originalTimestamp"
	}
	if ts == "" {
		return received, time.Time{}, nil
	}
	if t, err = parseTime(ts); err != nil {
		return t, orig, errField(at.field(tsField), "not an ISO-8601 time: %q", ts)
	}
	if t.Before(minTimestamp) || !t.Before(maxTimestamp) {
		return t, orig, errField(at.field(tsField), "%q is not between 1970 and 2106", ts)
	}
	orig = t.UTC().Truncate(time.Millisecond)
	if sentAt != "" {
		st, err := parseTime(sentAt)
		if err != nil {
			field := "sentAt" // the batch's
			if !batchSentAt {
				field = at.field(".sentAt")
			}
			return t, orig, errField(field, "not an ISO-8601 time: %q", sentAt)
		}
		t = received.Add(-max(st.Sub(t), 0))
	} else if t.After(received.Add(maxFutureSkew)) {
		t = received
	}
	if t.UTC().Year() < 2000 {
		if sentAt != "" {
			return t, orig, errField(at.field(tsField), "%q with sentAt %q puts the event before the year 2000", ts, sentAt)
		}
		return t, orig, errField(at.field(tsField), "%q is before the year 2000", ts)
	}
	return t.UTC().Truncate(time.Millisecond), orig, nil
}

// timeLayouts are the ISO-8601 times parseTime reads, in the order it tries
// them: RFC 3339 (which time.Parse reads on a fast path: what every SDK
// sends), then a zone offset written without its colon (+0200) or "Z", no
// zone (UTC), and an offset with its colon — the last three also with a
// month, day or hour missing its leading zero: Segment's own HTTP API docs
// date messages "2015-2-02T00:30:12.984Z", and Segment takes them. A time
// that RFC 3339 reads never gets past the first.
var timeLayouts = [...]string{
	time.RFC3339Nano,
	"2006-1-2T15:04:05.999999999Z0700",
	"2006-1-2T15:04:05.999999999",
	"2006-1-2T15:04:05.999999999Z07:00",
}

func parseTime(s string) (time.Time, error) {
	for _, layout := range timeLayouts {
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

// loc is where a message is in its request, for error messages: the type
// of a single call ("track"), or "batch[i]". The names are made only for
// errors, so the mapping of a valid message builds no strings.
type loc struct {
	call  string // a single call's type; "" in a batch
	index int    // the place in the batch; -1 for a single call
}

func single(call string) loc { return loc{call: call, index: -1} }

func (l loc) String() string {
	if l.index < 0 {
		return l.call
	}
	return "batch[" + strconv.Itoa(l.index) + "]"
}

// field names a field of the message, e.g. "batch[3].event".
func (l loc) field(suffix string) string { return l.String() + suffix }
