package event

import (
	"encoding/json"
	"time"
	"unsafe"
)

// Kind is how a field of Event is encoded on the topic and stored.
type Kind uint8

// Field kinds.
const (
	// String is a JSON string, omitted when empty unless Field.Always.
	String Kind = iota
	// Time is an RFC 3339 string with nanoseconds, always written when
	// Field.Always, else omitted when zero.
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
// ClickHouse's events table), its kind and where it is in an Event.
type Field struct {
	Name   string
	Kind   Kind
	Always bool // written even when empty (the fields Validate requires); a Time without it is optional

	off uintptr // offset in Event of a field of the Go type of Kind (TestFieldsMatchStruct holds it)
	key string  // `,"name":` (`"name":` for the first field), as AppendJSON writes it
	obj int     // ordinal among the Object fields (the decoder's scratch index)
}

// The accessors read the field at its offset: the encoder and decoder run
// them for every field of every event, so they must cost what a field access
// costs (a func per field was measurably slower).
func (f *Field) at(e *Event) unsafe.Pointer { return unsafe.Add(unsafe.Pointer(e), f.off) }

// Str returns the String field of e that f names.
func (f *Field) Str(e *Event) *string { return (*string)(f.at(e)) }

// TimeOf returns the Time field of e that f names.
func (f *Field) TimeOf(e *Event) *time.Time { return (*time.Time)(f.at(e)) }

// Raw returns the Object field of e that f names.
func (f *Field) Raw(e *Event) *json.RawMessage { return (*json.RawMessage)(f.at(e)) }

// Num returns the Number field of e that f names.
func (f *Field) Num(e *Event) *float64 { return (*float64)(f.at(e)) }

// Flag returns the Bool field of e that f names.
func (f *Field) Flag(e *Event) *bool { return (*bool)(f.at(e)) }

// Fields is the one list of Event's fields, in the order of the topic form.
// It drives the topic encoder and decoder, the sink's columns and the
// history reader; adding a field to Event means adding it here (a test
// holds the list, the struct's JSON tags and ClickHouse's schema together).
var Fields = func() []Field {
	var e Event
	s := func(name string, off uintptr) Field { return Field{Name: name, Kind: String, off: off} }
	fs := []Field{
		{Name: "event_id", Kind: String, Always: true, off: unsafe.Offsetof(e.ID)},
		{Name: "type", Kind: String, Always: true, off: unsafe.Offsetof(e.Type)},
		{Name: "event_time", Kind: Time, Always: true, off: unsafe.Offsetof(e.EventTime)},
		{Name: "received_at", Kind: Time, Always: true, off: unsafe.Offsetof(e.ReceivedAt)},
		s("anonymous_id", unsafe.Offsetof(e.AnonymousID)),
		s("lead_id", unsafe.Offsetof(e.LeadID)),
		s("previous_id", unsafe.Offsetof(e.PreviousID)),
		s("group_id", unsafe.Offsetof(e.GroupID)),
		s("write_key_id", unsafe.Offsetof(e.WriteKeyID)),
		s("campaign", unsafe.Offsetof(e.Campaign)),
		s("utm_source", unsafe.Offsetof(e.UTMSource)),
		s("utm_medium", unsafe.Offsetof(e.UTMMedium)),
		s("utm_campaign", unsafe.Offsetof(e.UTMCampaign)),
		s("utm_term", unsafe.Offsetof(e.UTMTerm)),
		s("utm_content", unsafe.Offsetof(e.UTMContent)),
		s("url", unsafe.Offsetof(e.URL)),
		s("path", unsafe.Offsetof(e.Path)),
		s("referrer", unsafe.Offsetof(e.Referrer)),
		s("title", unsafe.Offsetof(e.Title)),
		s("track", unsafe.Offsetof(e.Track)),
		{Name: "properties", Kind: Object, off: unsafe.Offsetof(e.Properties)},
		{Name: "traits", Kind: Object, off: unsafe.Offsetof(e.Traits)},
		{Name: "revenue", Kind: Number, off: unsafe.Offsetof(e.Revenue)},
		s("currency", unsafe.Offsetof(e.Currency)),
		s("ip", unsafe.Offsetof(e.IP)),
		s("user_agent", unsafe.Offsetof(e.UserAgent)),
		{Name: "bot", Kind: Bool, off: unsafe.Offsetof(e.Bot)},
		s("bot_reason", unsafe.Offsetof(e.BotReason)),
		{Name: "original_timestamp", Kind: Time, off: unsafe.Offsetof(e.OriginalTimestamp)},
		{Name: "context", Kind: Object, off: unsafe.Offsetof(e.Context)},
		{Name: "integrations", Kind: Object, off: unsafe.Offsetof(e.Integrations)},
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
var fieldsByLen = func() (idx [24][]*Field) {
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
	if len(key) == 0 || len(key) >= len(fieldsByLen) {
		return nil
	}
	for _, f := range fieldsByLen[len(key)] {
		if f.Name[0] == key[0] && f.Name == key {
			return f
		}
	}
	return nil
}
