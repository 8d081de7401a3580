package leadstate_test

import (
	"context"
	"strings"
	"testing"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
)

// A server whose certificate holds a name, not the address dialled (a
// managed cluster's nodes announced by IP): refused without
// redis.tls.server-name, suggesting it; reached with it.
func TestOpenTLSServerName(t *testing.T) {
	ctx := context.Background()
	ca := testsvc.NewCA(t, "redis")
	addr := testsvc.SecureRedisNamed(t, ca, "redis.internal.example").Addr
	cfg := leadstate.Config{Addr: addr, TLS: true, TLSCAFile: ca.CAFile}
	if rdb, err := leadstate.Open(ctx, cfg); err == nil {
		rdb.Close()
		t.Fatal("Open verified a certificate for redis.internal.example against 127.0.0.1")
	} else if !strings.Contains(err.Error(), "redis.tls.server-name") {
		t.Errorf("Open without the server name: %v, want redis.tls.server-name suggested", err)
	}
	cfg.TLSServerName = "redis.internal.example"
	rdb, err := leadstate.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}
