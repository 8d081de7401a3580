package stream

import "encoding/json"

// deadLetter is the JSON form of a record on the dead-letter topic.
type deadLetter struct {
	SourceTopic string `json:"source_topic"`
	Partition   int    `json:"partition"`
	Offset      int64  `json:"offset"`
	Reason      string `json:"reason"`
	Value       string `json:"value"`
}

// DeadLetter wraps a record that could not be handled, with the reason, for the
// dead-letter topic: {"source_topic","partition","offset","reason","value"}.
func DeadLetter(m Message, reason string) Record {
	b, err := json.Marshal(deadLetter{SourceTopic: m.Topic, Partition: m.Partition, Offset: m.Offset, Reason: reason, Value: string(m.Value)})
	if err != nil {
		panic("BUG: encoding a dead letter: " + err.Error())
	}
	return Record{Key: m.Key, Value: b}
}
