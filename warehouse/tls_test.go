package warehouse_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/warehouse"
)

// The secure native port of clickhouse-server (tcp_port_secure, openSSL
// server section) with a client certificate and a password: the schema is
// created and read back over it.
func TestOpenTLS(t *testing.T) {
	ctx := context.Background()
	ca := testsvc.NewCA(t, "clickhouse")
	client := ca.Client(t, "leadstream")
	addr := testsvc.SecureClickHouse(t, ca, true, map[string]string{"ls": "ch-secret"}).Addr
	cfg := warehouse.Config{Addr: addr, Database: fmt.Sprintf("tls_%d", rand.Uint32()), Username: "ls", Password: "ch-secret",
		DialTimeout: 5 * time.Second, TLS: true, TLSCAFile: ca.CAFile, TLSCertFile: client.CertFile, TLSKeyFile: client.KeyFile}
	conn, err := warehouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := warehouse.Migrate(ctx, conn, cfg.Database); err != nil {
		t.Fatal(err)
	}
	var user string
	// 18.16 has no currentUser(): the running query shows its user.
	if err := conn.QueryRow(ctx, "SELECT user FROM system.processes WHERE query LIKE '%who-am-i%' LIMIT 1").Scan(&user); err != nil || user != "ls" {
		t.Fatalf("user of the query = %q, %v", user, err)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = '"+cfg.Database+"'").Scan(&n); err != nil || n == 0 {
		t.Fatalf("tables in %s: %d, %v", cfg.Database, n, err)
	}
}

// Each wrong setting fails Open within seconds, naming ClickHouse, the
// address and the cause.
func TestOpenTLSFailures(t *testing.T) {
	ca := testsvc.NewCA(t, "clickhouse")
	other := testsvc.NewCA(t, "other")
	client := ca.Client(t, "leadstream")
	secure := testsvc.SecureClickHouse(t, ca, true, map[string]string{"ls": "right-pw"}).Addr
	plain := testsvc.ClickHouse(t)
	good := warehouse.Config{Addr: secure, Database: "leadstream", Username: "ls", Password: "right-pw", DialTimeout: 5 * time.Second,
		TLS: true, TLSCAFile: ca.CAFile, TLSCertFile: client.CertFile, TLSKeyFile: client.KeyFile}
	f := func(name string, change func(*warehouse.Config), want ...string) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := good
			change(&c)
			start := time.Now()
			conn, err := warehouse.Open(context.Background(), c)
			if err == nil {
				conn.Close()
				t.Fatal("Open succeeded")
			}
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("took %s to fail", took)
			}
			msg := err.Error()
			if testing.Verbose() {
				t.Log(msg)
			}
			for _, w := range append([]string{"clickhouse at " + c.Addr}, want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "right-pw") || strings.Contains(msg, "wrong-pw") {
				t.Errorf("error %q shows the password", msg)
			}
		})
	}
	f("wrong password", func(c *warehouse.Config) { c.Password = "wrong-pw" }, `user "ls"`, "clickhouse.password")
	f("untrusted certificate", func(c *warehouse.Config) { c.TLSCAFile = other.CAFile }, "not signed by a CA leadstream trusts", "clickhouse.tls.ca-file")
	f("no client certificate", func(c *warehouse.Config) { c.TLSCertFile, c.TLSKeyFile = "", "" }, "clickhouse.tls.cert-file")
	f("tls to a plaintext port", func(c *warehouse.Config) { c.Addr, c.Username, c.Password = plain, "default", "" }, "clickhouse.tls")
	f("plaintext to a tls port", func(c *warehouse.Config) {
		c.TLS, c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile = false, "", "", ""
	}, "clickhouse.tls=true")
}
