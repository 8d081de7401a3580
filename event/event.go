// Package event defines leadstream's canonical event: the one record that the
// collector writes to the Kafka topic "<prefix>events", that the processor
// scores and that the sink stores as one ClickHouse row.
//
// The JSON form produced by Marshal is a public contract (documented in the
// README); fields are only ever added, never renamed.
package event

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Type is the kind of touch an event records.
type Type string

// Event types. The collector maps Segment calls onto them (see README).
const (
	PageView   Type = "page_view"
	EmailOpen  Type = "email_open"
	EmailClick Type = "email_click"
	FormSubmit Type = "form_submit"
	Identify   Type = "identify"
	Alias      Type = "alias"
	DealWon    Type = "deal_won"
	Custom     Type = "custom"
	// Group is a Segment group call: the lead (or visitor) is a member of
	// the B2B account GroupID, whose traits it carries.
	Group Type = "group"
)

// Types lists every valid Type.
var Types = []Type{PageView, EmailOpen, EmailClick, FormSubmit, Identify, Alias, DealWon, Custom, Group}

// Valid reports whether t is one of Types.
func (t Type) Valid() bool {
	switch t {
	case PageView, EmailOpen, EmailClick, FormSubmit, Identify, Alias, DealWon, Custom, Group:
		return true
	}
	return false
}

// Event is one accepted touch of a prospect.
//
// Properties, Traits, Context and Integrations hold a compact JSON object (or
// are empty) exactly as the client sent it, so the collector never re-encodes
// user data.
type Event struct {
	ID         string    `json:"event_id"`    // Segment messageId; dedup key everywhere
	Type       Type      `json:"type"`        // one of Types
	EventTime  time.Time `json:"event_time"`  // when it happened (client clock, clamped by the collector)
	ReceivedAt time.Time `json:"received_at"` // when the collector accepted it

	AnonymousID string `json:"anonymous_id,omitempty"` // first-party cookie id
	LeadID      string `json:"lead_id,omitempty"`      // known lead (Segment userId)
	PreviousID  string `json:"previous_id,omitempty"`  // alias: the id being merged into LeadID
	GroupID     string `json:"group_id,omitempty"`     // group: the account (Segment groupId)
	WriteKeyID  string `json:"write_key_id,omitempty"` // which source sent it (never the key itself)

	Campaign    string `json:"campaign,omitempty"` // campaign id (email token or utm_campaign)
	UTMSource   string `json:"utm_source,omitempty"`
	UTMMedium   string `json:"utm_medium,omitempty"`
	UTMCampaign string `json:"utm_campaign,omitempty"`
	UTMTerm     string `json:"utm_term,omitempty"`
	UTMContent  string `json:"utm_content,omitempty"`

	URL      string `json:"url,omitempty"`
	Path     string `json:"path,omitempty"`
	Referrer string `json:"referrer,omitempty"`
	Title    string `json:"title,omitempty"`

	Track      string          `json:"track,omitempty"`      // track event name (custom and mapped track calls)
	Properties json.RawMessage `json:"properties,omitempty"` // JSON object
	Traits     json.RawMessage `json:"traits,omitempty"`     // JSON object (identify)

	Revenue  float64 `json:"revenue,omitempty"`
	Currency string  `json:"currency,omitempty"`

	IP        string `json:"ip,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`

	// Bot marks an event the collector attributed to a bot, a headless
	// browser or an email link scanner: it is stored but never scored.
	// BotReason says which rule fired (e.g. "user_agent:headlesschrome").
	Bot       bool   `json:"bot,omitempty"`
	BotReason string `json:"bot_reason,omitempty"`

	// OriginalTimestamp is the event time by the client's own clock (its
	// Segment timestamp), before the collector corrected it for the
	// client's clock skew into EventTime; zero when the client gave none.
	OriginalTimestamp time.Time `json:"original_timestamp,omitzero"`
	// Context and Integrations are the Segment call's context (with its
	// batch's context merged in) and integrations objects, kept as the
	// client sent them.
	Context      json.RawMessage `json:"context,omitempty"`      // JSON object
	Integrations json.RawMessage `json:"integrations,omitempty"` // JSON object
}

// Key returns the Kafka record key that orders this event: the anonymous id
// when present, else the lead id. All events of one visitor land in one
// partition, so one processor sees them in order.
func (e *Event) Key() string {
	if e.AnonymousID != "" {
		return e.AnonymousID
	}
	return e.LeadID
}

// Sentinel validation errors; Validate wraps them with the offending field.
var (
	// ErrMissingID means the event has no event_id.
	ErrMissingID = errors.New("event_id is required")
	// ErrBadType means the type is not one of Types.
	ErrBadType = errors.New("unknown event type")
	// ErrNoIdentity means neither anonymous_id nor lead_id is set.
	ErrNoIdentity = errors.New("anonymous_id or lead_id is required")
	// ErrMissingTime means event_time or received_at is zero.
	ErrMissingTime = errors.New("event_time and received_at are required")
	// ErrNotObject means properties, traits, context or integrations is not a JSON object.
	ErrNotObject = errors.New("must be a JSON object")
	// ErrNoGroup means a group event has no group_id.
	ErrNoGroup = errors.New("group_id is required for a group event")
)

// Validate checks the invariants every stage relies on.
func (e *Event) Validate() error {
	switch {
	case e.ID == "":
		return ErrMissingID
	case !e.Type.Valid():
		return fmt.Errorf("%w %q", ErrBadType, e.Type)
	case e.AnonymousID == "" && e.LeadID == "":
		return ErrNoIdentity
	case e.EventTime.IsZero() || e.ReceivedAt.IsZero():
		return ErrMissingTime
	case e.Type == Group && e.GroupID == "":
		return ErrNoGroup
	}
	if !isObject(e.Properties) {
		return fmt.Errorf("properties: %w", ErrNotObject)
	}
	if !isObject(e.Traits) {
		return fmt.Errorf("traits: %w", ErrNotObject)
	}
	if !isObject(e.Context) {
		return fmt.Errorf("context: %w", ErrNotObject)
	}
	if !isObject(e.Integrations) {
		return fmt.Errorf("integrations: %w", ErrNotObject)
	}
	return nil
}

func isObject(raw json.RawMessage) bool {
	if len(raw) == 0 {
		return true
	}
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{':
			return true
		}
		return false
	}
	return false
}

// Marshal encodes e in its topic form (see AppendJSON).
func Marshal(e *Event) ([]byte, error) { return AppendJSON(nil, e) }

var sizeBufs = sync.Pool{New: func() any { return new([]byte) }}

// EncodedSize is the length of e's JSON record (Marshal), or 0 when it does
// not encode.
func EncodedSize(e *Event) int {
	bp := sizeBufs.Get().(*[]byte)
	b, err := AppendJSON((*bp)[:0], e)
	n := len(b)
	if err != nil {
		n = 0
	}
	if cap(b) <= 1<<20 {
		*bp = b
		sizeBufs.Put(bp)
	}
	return n
}

// MQL is one threshold crossing, published on "<prefix>mql" keyed by lead id.
type MQL struct {
	MQLID          string    `json:"mql_id"` // deterministic: consumers drop redelivered duplicates by it
	LeadID         string    `json:"lead_id"`
	Model          string    `json:"model"`
	Score          float64   `json:"score"`
	Threshold      float64   `json:"threshold"`
	CrossedAt      time.Time `json:"crossed_at"` // event time of the triggering event
	TriggerEventID string    `json:"trigger_event_id"`
	Reasons        []Reason  `json:"reasons"`
}

// MQLID is the deterministic id of the crossing of model by lead triggered by
// an event: a name-based UUID of the three, so a crossing found again (a
// redelivered event, a processor restarted before its outbox was cleared)
// carries the id of the first and consumers drop it.
func MQLID(lead, model, trigger string) string {
	return nameUUID(lead + "\x00" + model + "\x00" + trigger)
}

func nameUUID(name string) string {
	h := sha256.Sum256([]byte(name))
	b := h[:16]
	b[6] = (b[6] & 0x0f) | 0x50 // name-based UUID layout, so it reads as a UUID
	b[8] = (b[8] & 0x3f) | 0x80
	x := hex.EncodeToString(b)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// MQA is one account threshold crossing (marketing-qualified account),
// published on "<prefix>mqa" keyed by account id.
type MQA struct {
	MQAID          string    `json:"mqa_id"` // deterministic: consumers drop redelivered duplicates by it
	AccountID      string    `json:"account_id"`
	Model          string    `json:"model"`
	Score          float64   `json:"score"`
	Threshold      float64   `json:"threshold"`
	CrossedAt      time.Time `json:"crossed_at"` // the account's newest member event time that counted
	TriggerEventID string    `json:"trigger_event_id"`
	EngagedMembers int       `json:"engaged_members"`
	Reasons        []Reason  `json:"reasons"`
	TopMembers     []Member  `json:"top_members"`
}

// MarshalJSON writes an MQL record with "reasons" always an array (never
// null), as the topic's documented form has it.
func (m MQL) MarshalJSON() ([]byte, error) {
	type plain MQL // without this method
	if m.Reasons == nil {
		m.Reasons = []Reason{}
	}
	return json.Marshal(plain(m))
}

// MarshalJSON writes an MQA record with "reasons" and "top_members" always
// arrays (never null): an account can cross with no live member listed
// (min_engaged 0 and its fit alone, its members gone to other accounts).
func (m MQA) MarshalJSON() ([]byte, error) {
	type plain MQA // without this method
	if m.Reasons == nil {
		m.Reasons = []Reason{}
	}
	if m.TopMembers == nil {
		m.TopMembers = []Member{}
	}
	return json.Marshal(plain(m))
}

// Member is one member's part of an account's engagement.
type Member struct {
	LeadID string  `json:"lead_id"`
	Points float64 `json:"points"`
}

// MQAID is the deterministic id of the crossing of model by an account
// triggered by an event (see MQLID); its namespace differs from MQLID's, so
// an account and a lead of the same id never share one.
func MQAID(account, model, trigger string) string {
	return nameUUID("account\x00" + account + "\x00" + model + "\x00" + trigger)
}

// Reason is one rule's contribution to a score.
type Reason struct {
	Rule   string  `json:"rule"`
	Points float64 `json:"points"`
}

// SortReasons orders reasons as MQL records and the lead API list them:
// most points first, then by rule name.
func SortReasons(rs []Reason) {
	sort.Slice(rs, func(a, b int) bool {
		if rs[a].Points != rs[b].Points {
			return rs[a].Points > rs[b].Points
		}
		return rs[a].Rule < rs[b].Rule
	})
}
