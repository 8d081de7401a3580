package stream

import (
	"encoding/json"
	"unicode/utf8"
)

// deadLetter is the JSON form of a record on the dead-letter topic.
type deadLetter struct {
	SourceTopic string `json:"source_topic"`
	Partition   int    `json:"partition"`
	Offset      int64  `json:"offset"`
	Reason      string `json:"reason"`
	Value       string `json:"value"`
	// Truncated is set when Value holds only the first MaxDeadLetterValue
	// bytes of a larger record; ValueBytes is then the record's whole size.
	Truncated  bool `json:"value_truncated,omitempty"`
	ValueBytes int  `json:"value_bytes,omitempty"`
}

// Bounds of a dead letter. A record of the source topic may be as large as
// the broker allows (about 1 MiB), and JSON escaping can make its copy six
// times larger (\u0000 for each control byte): wrapped whole it could exceed
// what the dead-letter topic takes, and the dead letter would fail for ever.
// So a large value is cut; the record's partition and offset still find it.
const (
	// MaxDeadLetterValue is the most bytes of a record's value a dead letter copies.
	MaxDeadLetterValue = 64 << 10
	maxDeadLetterKey   = 1 << 10
	maxReason          = 4 << 10
)

// DeadLetter wraps a record that could not be handled, with the reason, for the
// dead-letter topic: {"source_topic","partition","offset","reason","value"},
// plus "value_truncated" and "value_bytes" when the value was longer than
// MaxDeadLetterValue.
func DeadLetter(m Message, reason string) Record {
	d := deadLetter{SourceTopic: m.Topic, Partition: m.Partition, Offset: m.Offset, Reason: cut(reason, maxReason)}
	d.Value = cut(string(m.Value), MaxDeadLetterValue)
	if len(d.Value) < len(m.Value) {
		d.Truncated, d.ValueBytes = true, len(m.Value)
	}
	b, err := json.Marshal(d)
	if err != nil {
		panic("BUG: encoding a dead letter: " + err.Error())
	}
	key := m.Key
	if len(key) > maxDeadLetterKey {
		key = key[:maxDeadLetterKey]
	}
	return Record{Key: key, Value: b}
}

// cut returns at most n bytes of s, not splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > n-utf8.UTFMax && i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
