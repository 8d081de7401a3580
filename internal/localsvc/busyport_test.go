package localsvc_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"

	"github.com/leadstream/leadstream/internal/localsvc"
)

// A fixed port already taken (by another redis-server, say) makes the start
// fail, naming it: the readiness probe must not succeed against the server
// that holds the port while ours exits.
func TestStartOnBusyPort(t *testing.T) {
	need(t, "redis-server")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	ctx := context.Background()
	if s, err := localsvc.StartRedis(ctx, t.TempDir(), p); err == nil {
		s.Stop()
		t.Fatalf("StartRedis on busy port %d succeeded", p)
	} else if !errors.Is(err, localsvc.ErrPortInUse) {
		t.Errorf("StartRedis on busy port %d: %v, want ErrPortInUse", p, err)
	}
	foreign, err := localsvc.StartRedis(ctx, t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Stop()
	_, port, _ = net.SplitHostPort(foreign.Addr)
	p, _ = strconv.Atoi(port)
	if s, err := localsvc.StartRedis(ctx, t.TempDir(), p); err == nil {
		s.Stop()
		t.Fatalf("StartRedis on the port of another redis-server (%d) succeeded", p)
	}
}
