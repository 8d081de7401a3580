package leadstate_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
)

// renewFile replaces to with from's content as a Kubernetes Secret volume
// does: a new file renamed over the old.
func renewFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(to+".tmp", to); err != nil {
		t.Fatal(err)
	}
}

// A client certificate renewed in its files is the one a running client
// presents when it reconnects: after the old one expired and the server
// closed the connections, Redis answers again without a restart.
func TestRenewedClientCertificate(t *testing.T) {
	ctx := context.Background()
	ca := testsvc.NewCA(t, "redis")
	// The server first: the short-lived certificate is issued once it is up
	// (starting it can take seconds on a busy machine).
	addr := testsvc.SecureRedis(t, ca, true).Addr
	expires := time.Now().Add(4 * time.Second)
	old := ca.ClientUntil(t, "leadstream", expires)
	renewed := ca.Client(t, "leadstream")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	renewFile(t, old.CertFile, certFile)
	renewFile(t, old.KeyFile, keyFile)
	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: addr, TLS: true, TLSCAFile: ca.CAFile, TLSCertFile: certFile, TLSKeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()

	renewFile(t, renewed.CertFile, certFile)
	renewFile(t, renewed.KeyFile, keyFile)
	time.Sleep(time.Until(expires) + time.Second)
	// The server drops every client (a restart, a failover).
	if err := rdb.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "no").Err(); err != nil {
		t.Logf("CLIENT KILL: %v", err)
	}

	var lastErr error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if lastErr = rdb.Ping(ctx).Err(); lastErr == nil {
			return
		}
	}
	t.Fatalf("redis after the renewal: %v", lastErr)
}
