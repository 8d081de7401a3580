package warehouse

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// A write to a peer that reads nothing fails after the write timeout instead
// of blocking (clickhouse-go's block writes have no deadline of their own),
// and a later write gets a fresh deadline.
func TestBoundedWrites(t *testing.T) {
	a, b := net.Pipe() // synchronous: a write waits for a reader
	defer a.Close()
	defer b.Close()
	w := &boundedWrites{Conn: a, timeout: 100 * time.Millisecond}
	start := time.Now()
	_, err := w.Write([]byte("block"))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a peer that reads nothing: %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the write returned after %v", d)
	}
	go func() {
		buf := make([]byte, 16)
		b.Read(buf)
	}()
	if _, err := w.Write([]byte("again")); err != nil {
		t.Fatalf("a write the peer reads: %v", err)
	}
}
