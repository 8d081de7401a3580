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

// DefaultCompression is kafka.compression's default. lz4 sends 2.6× fewer
// bytes than none for single events and 8× for batches, and costs the least
// CPU over a record's life for batched traffic (compressed once, decompressed
// by the processor and the sink: about 1.1 µs per record, against 2.4 for zstd
// and 2.6 for snappy); zstd sends half as much again for more CPU. Figures:
// BenchmarkCompression and README "Performance".
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
