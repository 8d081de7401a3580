package event

import (
	"encoding/json"
	"time"
)

// Kind is how a field of Event is encoded on the topic and stored.
type Kind uint8

// Field kinds.
const (
	// String is a JSON string, omitted when empty unless Field.Always.
	String Kind = iota
	// Time is an RFC 3339 string with nanoseconds, always written.
	Time
	// Object is a JSON object kept as the client sent it (compacted),
	// omitted when empty.
	Object
	// Number is a JSON number, omitted when 0.
	Number
	// Bool is true or absent.
	Bool
)

// Field is one field of Event: its name on the topic (and its column in
// ClickHouse's events table), its kind and how to reach it in an Event.
type Field struct {
	Name   string
	Kind   Kind
	Always bool // written even when empty (the fields Validate requires)

	str  func(*Event) *string
	time func(*Event) *time.Time
	raw  func(*Event) *json.RawMessage
	num  func(*Event) *float64
	flag func(*Event) *bool

	key string // `,"name":` (`"name":` for the first field), as AppendJSON writes it
	obj int    // ordinal among the Object fields (the decoder's scratch index)
}

// Str returns the String field of e that f names.
func (f *Field) Str(e *Event) *string { return f.str(e) }

// TimeOf returns the Time field of e that f names.
func (f *Field) TimeOf(e *Event) *time.Time { return f.time(e) }

// Raw returns the Object field of e that f names.
func (f *Field) Raw(e *Event) *json.RawMessage { return f.raw(e) }

// Num returns the Number field of e that f names.
func (f *Field) Num(e *Event) *float64 { return f.num(e) }

// Flag returns the Bool field of e that f names.
func (f *Field) Flag(e *Event) *bool { return f.flag(e) }

// Fields is the one list of Event's fields, in the order of the topic form.
// It drives the topic encoder and decoder, the sink's columns and the
// history reader; adding a field to Event means adding it here (a test
// holds the list, the struct's JSON tags and ClickHouse's schema together).
var Fields = func() []Field {
	s := func(name string, at func(*Event) *string) Field { return Field{Name: name, Kind: String, str: at} }
	fs := []Field{
		{Name: "event_id", Kind: String, Always: true, str: func(e *Event) *string { return &e.ID }},
		{Name: "type", Kind: String, Always: true, str: func(e *Event) *string { return (*string)(&e.Type) }},
		{Name: "event_time", Kind: Time, Always: true, time: func(e *Event) *time.Time { return &e.EventTime }},
		{Name: "received_at", Kind: Time, Always: true, time: func(e *Event) *time.Time { return &e.ReceivedAt }},
		s("anonymous_id", func(e *Event) *string { return &e.AnonymousID }),
		s("lead_id", func(e *Event) *string { return &e.LeadID }),
		s("previous_id", func(e *Event) *string { return &e.PreviousID }),
		s("write_key_id", func(e *Event) *string { return &e.WriteKeyID }),
		s("campaign", func(e *Event) *string { return &e.Campaign }),
		s("utm_source", func(e *Event) *string { return &e.UTMSource }),
		s("utm_medium", func(e *Event) *string { return &e.UTMMedium }),
		s("utm_campaign", func(e *Event) *string { return &e.UTMCampaign }),
		s("utm_term", func(e *Event) *string { return &e.UTMTerm }),
		s("utm_content", func(e *Event) *string { return &e.UTMContent }),
		s("url", func(e *Event) *string { return &e.URL }),
		s("path", func(e *Event) *string { return &e.Path }),
		s("referrer", func(e *Event) *string { return &e.Referrer }),
		s("title", func(e *Event) *string { return &e.Title }),
		s("track", func(e *Event) *string { return &e.Track }),
		{Name: "properties", Kind: Object, raw: func(e *Event) *json.RawMessage { return &e.Properties }},
		{Name: "traits", Kind: Object, raw: func(e *Event) *json.RawMessage { return &e.Traits }},
		{Name: "revenue", Kind: Number, num: func(e *Event) *float64 { return &e.Revenue }},
		s("currency", func(e *Event) *string { return &e.Currency }),
		s("ip", func(e *Event) *string { return &e.IP }),
		s("user_agent", func(e *Event) *string { return &e.UserAgent }),
		{Name: "bot", Kind: Bool, flag: func(e *Event) *bool { return &e.Bot }},
		s("bot_reason", func(e *Event) *string { return &e.BotReason }),
	}
	objects := 0
	for i := range fs {
		fs[i].key = `,"` + fs[i].Name + `":`
		if fs[i].Kind == Object {
			fs[i].obj = objects
			objects++
		}
	}
	fs[0].key = fs[0].key[1:]
	if objects > maxObjects {
		panic("BUG: more Object fields in event.Fields than the decoder has room for")
	}
	return fs
}()

// maxObjects bounds the Object fields of Fields (the decoder keeps their
// spans in an array).
const maxObjects = 4

// objectFields are the Object fields of Fields.
var objectFields = func() (out []*Field) {
	for i := range Fields {
		if Fields[i].Kind == Object {
			out = append(out, &Fields[i])
		}
	}
	return out
}()

// fieldsByLen indexes Fields by name length for the decoder's key lookup.
var fieldsByLen = func() (idx [16][]*Field) {
	for i := range Fields {
		f := &Fields[i]
		if len(f.Name) >= len(idx) {
			panic("BUG: event field name " + f.Name + " is longer than the lookup allows")
		}
		idx[len(f.Name)] = append(idx[len(f.Name)], f)
	}
	return idx
}()

// fieldNamed returns the field whose name is exactly key, or nil.
func fieldNamed(key string) *Field {
	if len(key) >= len(fieldsByLen) {
		return nil
	}
	for _, f := range fieldsByLen[len(key)] {
		if f.Name == key {
			return f
		}
	}
	return nil
}
