package stream

import (
	"time"

	"github.com/segmentio/kafka-go"
)

// KafkaGo is kafka-go set up with a Config's security (TLS, SASL), for roles
// that run their own kafka-go readers (the notifier's per-destination
// consumer groups) rather than a Consumer.
type KafkaGo struct {
	// Dialer is for kafka.ReaderConfig.Dialer.
	Dialer *kafka.Dialer
	// Client is for metadata and administration requests.
	Client *kafka.Client
}

// NewKafkaGo reads the TLS files and prepares SASL as every other client
// of the configuration does.
func NewKafkaGo(c Config, timeout time.Duration) (*KafkaGo, error) {
	cn, err := c.Security.build()
	if err != nil {
		return nil, err
	}
	return &KafkaGo{Dialer: cn.dialer(), Client: newClient(c.Brokers, cn, timeout)}, nil
}
