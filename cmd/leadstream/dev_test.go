package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/leadstream/leadstream/ingest"
	"github.com/leadstream/leadstream/internal/localsvc"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/sink"
	"github.com/leadstream/leadstream/stream"
)

// A dev port another process holds (a second leadstream dev, another
// project's server) stops dev with an error naming the setting that moves
// that port, not only "address already in use".
func TestDevPortInUseNamesItsSetting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	err = runDev(t.Context(), []string{"-data-dir", t.TempDir(), "-dev.kafka-port", strconv.Itoa(port)}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "-dev.kafka-port or LEADSTREAM_DEV_KAFKA_PORT") {
		t.Fatalf("kafka port %d in use: %v, want the error to name -dev.kafka-port and LEADSTREAM_DEV_KAFKA_PORT", port, err)
	}
}

func TestPortHint(t *testing.T) {
	ports := []devPort{{19000, "dev.clickhouse-port"}, {18123, "dev.clickhouse-http-port"}}
	// localsvc's error names the port it found taken: only that one is hinted.
	err := portHint(fmt.Errorf("starting clickhouse-server: %w: 127.0.0.1:18123 (bind: address already in use)", localsvc.ErrPortInUse), ports...)
	if msg := err.Error(); !strings.Contains(msg, "port 18123 is taken") || !strings.Contains(msg, "-dev.clickhouse-http-port or LEADSTREAM_DEV_CLICKHOUSE_HTTP_PORT") ||
		strings.Contains(msg, "LEADSTREAM_DEV_CLICKHOUSE_PORT") {
		t.Errorf("http port taken: %s", msg)
	}
	// The collector's own listener: a real EADDRINUSE from net.Listen.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	_, lerr := net.Listen("tcp", addr)
	if lerr == nil {
		t.Skip("the second listen on one port succeeded")
	}
	_, p := splitHostPort(addr)
	n, _ := strconv.Atoi(p)
	err = portHint(fmt.Errorf("collector listening on %s: %w", addr, lerr), devPort{n, "http.addr"})
	if !strings.Contains(err.Error(), "-http.addr or LEADSTREAM_HTTP_ADDR") {
		t.Errorf("collector port taken: %v", err)
	}
	// Other errors are left as they are.
	other := fmt.Errorf("starting redis-server: %w", localsvc.ErrNotInstalled)
	if got := portHint(other, devPort{16379, "dev.redis-port"}); got != other {
		t.Errorf("not a port error: %v", got)
	}
}

// The banner's token command runs the binary dev was started as: make run
// starts ./bin/leadstream, and a bare "leadstream" is not on the PATH then.
func TestBannerNamesTheBinary(t *testing.T) {
	for _, c := range []struct{ arg0, want string }{
		{"./bin/leadstream", " ./bin/leadstream token click "},
		{"leadstream", " leadstream token click "},
	} {
		old := os.Args[0]
		os.Args[0] = c.arg0
		out, err := captureStdout(func() error {
			var icfg ingest.Config
			icfg.WriteKeys = []string{"dev-write-key"}
			kcfg := stream.Config{Brokers: []string{"127.0.0.1:19092"}, TopicPrefix: "leadstream."}
			var scfg sink.Config
			scfg.ClickHouse.Addr, scfg.ClickHouse.Database = "127.0.0.1:19000", "leadstream"
			printBanner("127.0.0.1:8080", icfg, kcfg, leadstate.Config{Addr: "127.0.0.1:16379"}, scfg, t.TempDir())
			return nil
		})
		os.Args[0] = old
		if err != nil || !strings.Contains(out, c.want) {
			t.Errorf("started as %s: the banner lacks %q:\n%s", c.arg0, c.want, out)
		}
	}
}
