package stream

// TopicErasures is the suffix of the topic that announces erased people to
// downstream systems (`leadstream erase`, DELETE /v1/leads/{id}): one
// tombstone per erasure, key = the lead id, value = null.
const TopicErasures = "erasures"

// Tombstone is the record announcing that a lead was erased: its id as the
// key and a null value, Kafka's tombstone (a compacted copy of the topic
// downstream drops the key).
func Tombstone(leadID string) Record { return Record{Key: []byte(leadID)} }
