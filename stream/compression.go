package stream

import (
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Compression is the codec of the record batches leadstream produces
// (kafka.compression). Consumers need nothing: Kafka clients decompress
// every standard codec, and brokers store batches as they were sent.
type Compression string

// The codecs kafka.compression accepts.
const (
	CompressionNone   Compression = "none"
	CompressionSnappy Compression = "snappy"
	CompressionLZ4    Compression = "lz4"
	CompressionZstd   Compression = "zstd"
)

// DefaultCompression is kafka.compression's default. lz4 gave the smallest
// total CPU per event (collector and broker) in the wrk scenarios of the
// harness, while sending 2.5–3× fewer bytes than none; zstd is smaller still
// but costs the producer more. See README "Performance".
const DefaultCompression = CompressionLZ4

// ParseCompression reads a kafka.compression value (case-insensitive).
func ParseCompression(s string) (Compression, error) {
	c := Compression(strings.ToLower(strings.TrimSpace(s)))
	switch c {
	case CompressionNone, CompressionSnappy, CompressionLZ4, CompressionZstd:
		return c, nil
	}
	return "", fmt.Errorf("%w: %q (want none, snappy, lz4 or zstd)", ErrBadCompression, s)
}

// codec is the client's codec for c; the zero value means DefaultCompression.
func (c Compression) codec() kgo.CompressionCodec {
	switch c {
	case CompressionNone:
		return kgo.NoCompression()
	case CompressionSnappy:
		return kgo.SnappyCompression()
	case CompressionZstd:
		return kgo.ZstdCompression()
	case CompressionLZ4:
		return kgo.Lz4Compression()
	}
	return DefaultCompression.codec()
}
