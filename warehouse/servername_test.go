package warehouse_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/warehouse"
)

// A server whose certificate holds a name, not the address dialled:
// refused without clickhouse.tls.server-name, suggesting it; reached
// with it.
func TestOpenTLSServerName(t *testing.T) {
	ctx := context.Background()
	ca := testsvc.NewCA(t, "clickhouse")
	addr := testsvc.SecureClickHouseNamed(t, ca, "clickhouse.internal.example", nil).Addr
	cfg := warehouse.Config{Addr: addr, Database: "default", Username: "default", DialTimeout: 5 * time.Second, TLS: true, TLSCAFile: ca.CAFile}
	if conn, err := warehouse.Open(ctx, cfg); err == nil {
		conn.Close()
		t.Fatal("Open verified a certificate for clickhouse.internal.example against 127.0.0.1")
	} else if !strings.Contains(err.Error(), "clickhouse.tls.server-name") {
		t.Errorf("Open without the server name: %v, want clickhouse.tls.server-name suggested", err)
	}
	cfg.TLSServerName = "clickhouse.internal.example"
	conn, err := warehouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var one uint8
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
}
