package stream

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go/compress"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestParseCompression(t *testing.T) {
	ok := func(in string, want Compression) {
		t.Helper()
		got, err := ParseCompression(in)
		if err != nil || got != want {
			t.Errorf("ParseCompression(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := func(in string) {
		t.Helper()
		if got, err := ParseCompression(in); !errors.Is(err, ErrBadCompression) || !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("ParseCompression(%q) = %q, %v; want ErrBadCompression naming the value", in, got, err)
		}
	}
	ok("none", CompressionNone)
	ok("snappy", CompressionSnappy)
	ok("lz4", CompressionLZ4)
	ok("zstd", CompressionZstd)
	ok(" ZSTD ", CompressionZstd)
	ok("Lz4", CompressionLZ4)
	bad("")
	bad("gzip") // valid Kafka, but not offered: slow, and nothing to gain over zstd
	bad("lz4,zstd")
	bad("uncompressed")
}

// The flag defaults to DefaultCompression and refuses unknown codecs.
func TestCompressionFlag(t *testing.T) {
	parse := func(args ...string) (Config, error) {
		var c Config
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(&strings.Builder{})
		c.RegisterFlags(fs)
		return c, fs.Parse(args)
	}
	c, err := parse()
	if err != nil || c.Compression != DefaultCompression {
		t.Fatalf("default: %q, %v; want %q", c.Compression, err, DefaultCompression)
	}
	if c.Producer(TopicEvents).Compression != DefaultCompression {
		t.Fatalf("Producer() does not carry the compression")
	}
	if c, err = parse("-kafka.compression", "zstd"); err != nil || c.Compression != CompressionZstd {
		t.Fatalf("zstd: %q, %v", c.Compression, err)
	}
	if _, err = parse("-kafka.compression", "brotli"); err == nil || !strings.Contains(err.Error(), "brotli") {
		t.Fatalf("brotli: %v; want an error naming it", err)
	}
}

// Batches produced with every codec are read back, byte for byte, by the
// processor's and sink's consumer (kafka-go) and by kcat; the compressing
// codecs really send fewer bytes.
func TestCompressedBatchesConsumed(t *testing.T) {
	kcat, kcatErr := exec.LookPath("kcat")
	for _, codec := range []Compression{CompressionNone, CompressionSnappy, CompressionLZ4, CompressionZstd} {
		t.Run(string(codec), func(t *testing.T) {
			c := newCluster(t, "t")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			reg := prometheus.NewRegistry()
			p, err := NewProducer(ctx, ProducerConfig{Brokers: c.ListenAddrs(), Topic: "t", Compression: codec}, quiet, reg)
			if err != nil {
				t.Fatal(err)
			}
			const callers, per = 10, 40
			var want []string
			var wg sync.WaitGroup
			for g := range callers {
				recs := make([]Record, per)
				for i := range recs {
					v := fmt.Sprintf(`{"event_id":"e-%d-%d","type":"email_open","lead_id":"lead-%d","properties":{"campaign":"spring-nurture"}}`, g, i, i%9)
					recs[i] = Record{Key: fmt.Appendf(nil, "lead-%d", i%9), Value: []byte(v)}
					want = append(want, v)
				}
				wg.Go(func() {
					if err := p.Produce(ctx, recs); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			slices.Sort(want)
			sent, raw := testCounter(t, reg, "leadstream_kafka_produced_bytes_total"), testCounter(t, reg, "leadstream_kafka_produced_uncompressed_bytes_total")
			if codec == CompressionNone && sent != raw || codec != CompressionNone && sent >= raw/2 {
				t.Fatalf("%s: sent %v bytes for %v uncompressed", codec, sent, raw)
			}

			var (
				mu  sync.Mutex
				got []string
			)
			cons, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: "g", Topics: []string{"t"}, MaxBatch: 100, MaxWait: 20 * time.Millisecond}, quiet, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			cctx, ccancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				done <- cons.Run(cctx, func(_ context.Context, batch []Message) error {
					mu.Lock()
					defer mu.Unlock()
					for _, m := range batch {
						got = append(got, string(m.Value))
					}
					if len(got) >= len(want) {
						ccancel()
					}
					return nil
				})
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-ctx.Done():
				t.Fatalf("kafka-go consumer read %d of %d records", len(got), len(want))
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("kafka-go consumer read %d records, not the %d produced", len(got), len(want))
			}

			if kcatErr != nil {
				testsvc.Required(t, "kcat", "kcat (Debian package kcat, librdkafka) is the independent consumer of compressed batches")
			}
			out, err := exec.CommandContext(ctx, kcat, "-b", c.ListenAddrs()[0], "-C", "-t", "t", "-o", "beginning", "-e", "-q", "-f", "%s\n").CombinedOutput()
			if err != nil {
				t.Fatalf("kcat: %v: %s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			slices.Sort(lines)
			if !slices.Equal(lines, want) {
				t.Fatalf("kcat read %d records, not the %d produced:\n%s", len(lines), len(want), out)
			}
		})
	}
}

// benchRecords are n events-topic records as the collector writes them
// (varying ids, leads, types and times; the same write key, agent and site).
func benchRecords(n int) [][]byte {
	types := []string{`"type":"email_open","track":"Email Opened","campaign":"spring-nurture","properties":{"campaign":"spring-nurture","email_id":"e-%d"}`,
		`"type":"email_click","track":"Email Link Clicked","properties":{"campaign":"spring-nurture","link":"https://www.acme.example/pricing?x=%d"}`,
		`"type":"page_view","url":"https://www.acme.example/blog/%d","path":"/blog","title":"Acme — blog","referrer":"https://www.google.com/"`,
		`"type":"custom","track":"Webinar Attended","properties":{"webinar":"w-2026-03","minutes":%d}`}
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"event_id":"w-3k9x-%d-%d","event_time":"2026-12-02T10:%02d:%02d.%03dZ","received_at":"2026-12-02T10:%02d:%02d.%03dZ","lead_id":"lead-%d","write_key_id":"wk_1a2b3c4d5e6f",`+types[i%len(types)]+`,"ip":"127.0.0.1","user_agent":"analytics-node/6.2.0 (leadbench)"}`,
			i%2+1, 100000+i*7, i%60, (i*7)%60, (i*37)%1000, i%60, (i*7)%60, (i*41)%1000, (i*7919)%20000, i*13%50)
	}
	return out
}

// Compressing a partition's batch with each codec: CPU per record and bytes
// per record as sent, for the batch sizes single-event traffic makes (a few
// records) and batched traffic makes; decompression is kafka-go's, as the
// processor and the sink read.
func BenchmarkCompression(b *testing.B) {
	for _, n := range []int{1, 4, 24, 500} {
		recs := benchRecords(n)
		var raw []byte
		for _, r := range recs {
			raw = append(raw, r...)
		}
		for _, codec := range []Compression{CompressionSnappy, CompressionLZ4, CompressionZstd} {
			b.Run(fmt.Sprintf("%s/%drecords", codec, n), func(b *testing.B) {
				comp, err := kgo.DefaultCompressor(codec.codec())
				if err != nil {
					b.Fatal(err)
				}
				var dst bytes.Buffer
				var sent int
				b.SetBytes(int64(len(raw)))
				b.ReportAllocs()
				for b.Loop() {
					dst.Reset()
					out, _ := comp.Compress(&dst, raw)
					sent = len(out)
				}
				b.ReportMetric(float64(sent+batchHeaderBytes)/float64(n), "sent-B/record")
				b.ReportMetric(float64(len(raw)+batchHeaderBytes)/float64(n), "raw-B/record")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/record")
			})
			b.Run(fmt.Sprintf("%s/%drecords/decompress", codec, n), func(b *testing.B) {
				comp, err := kgo.DefaultCompressor(codec.codec())
				if err != nil {
					b.Fatal(err)
				}
				var dst bytes.Buffer
				c, _ := comp.Compress(&dst, raw)
				kc := map[Compression]compress.Codec{CompressionSnappy: compress.Snappy.Codec(), CompressionLZ4: compress.Lz4.Codec(), CompressionZstd: compress.Zstd.Codec()}[codec]
				out := make([]byte, 0, len(raw))
				b.SetBytes(int64(len(raw)))
				b.ReportAllocs()
				for b.Loop() {
					r := kc.NewReader(bytes.NewReader(c))
					w := bytes.NewBuffer(out[:0])
					if _, err := w.ReadFrom(r); err != nil {
						b.Fatal(err)
					}
					r.Close()
					if w.Len() != len(raw) {
						b.Fatalf("decompressed %d bytes, want %d", w.Len(), len(raw))
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/record")
			})
		}
	}
}
