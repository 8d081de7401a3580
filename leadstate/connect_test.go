package leadstate_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadstate"
)

// aclUser is a redis-server argument list adding an ACL user.
func aclUser(name, password, rules string) []string {
	return append([]string{"--user", name, "on", ">" + password}, strings.Fields(rules)...)
}

// A TLS-only server with client certificates and ACL users: the writer may
// run scripts and write, the reader only reads.
func TestOpenTLSAndACL(t *testing.T) {
	ctx := context.Background()
	ca := testsvc.NewCA(t, "redis")
	client := ca.Client(t, "leadstream")
	args := append(aclUser("ls-writer", "writer-pw", leadstate.ACLWriter), aclUser("ls-reader", "reader-pw", leadstate.ACLReader)...)
	addr := testsvc.SecureRedis(t, ca, true, append(args, "--user", "default", "off")...).Addr
	base := leadstate.Config{Addr: addr, TLS: true, TLSCAFile: ca.CAFile, TLSCertFile: client.CertFile, TLSKeyFile: client.KeyFile}

	wcfg := base
	wcfg.Username, wcfg.Password = "ls-writer", "writer-pw"
	w, err := leadstate.Open(ctx, wcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	key := "ls2:{l:" + newID("tls") + "}:s"
	if err := w.HSet(ctx, key, "v", "1.5").Err(); err != nil {
		t.Fatal(err)
	}
	if err := w.Eval(ctx, "return redis.call('HINCRBY', KEYS[1], 'n', 1)", []string{key}).Err(); err != nil {
		t.Fatalf("writer runs scripts: %v", err)
	}
	if err := w.Set(ctx, "other:key", "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("writer outside ls2:* and ls:* = %v, want NOPERM", err)
	}
	if err := w.FlushDB(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("writer FLUSHDB = %v, want NOPERM", err)
	}

	rcfg := base
	rcfg.Username, rcfg.Password = "ls-reader", "reader-pw"
	r, err := leadstate.Open(ctx, rcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if v, err := r.HGet(ctx, key, "v").Result(); err != nil || v != "1.5" {
		t.Fatalf("reader HGET = %q, %v", v, err)
	}
	if err := r.HSet(ctx, key, "v", "2").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("reader HSET = %v, want NOPERM (the reader only reads)", err)
	}
	if err := r.Eval(ctx, "return 1", []string{key}).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("reader EVAL = %v, want NOPERM", err)
	}
}

// Each wrong setting fails Open within seconds, naming Redis, the address
// and the cause.
func TestOpenFailures(t *testing.T) {
	ca := testsvc.NewCA(t, "redis")
	other := testsvc.NewCA(t, "other")
	client := ca.Client(t, "leadstream")
	secure := testsvc.SecureRedis(t, ca, true, append(aclUser("ls", "right-pw", leadstate.ACLWriter), "--user", "default", "off")...).Addr
	tlsNoClientAuth := testsvc.SecureRedis(t, ca, false).Addr
	plain := testsvc.Redis(t)
	good := leadstate.Config{Addr: secure, Username: "ls", Password: "right-pw", TLS: true, TLSCAFile: ca.CAFile, TLSCertFile: client.CertFile, TLSKeyFile: client.KeyFile}
	f := func(name string, change func(*leadstate.Config), want ...string) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := good
			change(&c)
			start := time.Now()
			rdb, err := leadstate.Open(context.Background(), c)
			if err == nil {
				rdb.Close()
				t.Fatal("Open succeeded")
			}
			if took := time.Since(start); took > 12*time.Second {
				t.Errorf("took %s to fail", took)
			}
			msg := err.Error()
			if testing.Verbose() {
				t.Log(msg)
			}
			if want[0] == "config" { // a setting that fails before connecting
				want = want[1:]
			} else {
				want = append([]string{"redis at " + c.Addr}, want...)
			}
			for _, w := range want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "right-pw") || strings.Contains(msg, "wrong-pw") {
				t.Errorf("error %q shows the password", msg)
			}
		})
	}
	f("wrong password", func(c *leadstate.Config) { c.Password = "wrong-pw" }, "WRONGPASS", `user "ls"`, "redis.password")
	f("no user", func(c *leadstate.Config) { c.Username, c.Password = "", "" }, "NOAUTH", "redis.password")
	f("untrusted certificate", func(c *leadstate.Config) { c.TLSCAFile = other.CAFile }, "not signed by a CA leadstream trusts", "redis.tls.ca-file")
	f("no client certificate", func(c *leadstate.Config) { c.TLSCertFile, c.TLSKeyFile = "", "" }, "redis.tls.cert-file")
	f("tls to a plaintext port", func(c *leadstate.Config) { c.Addr = plain; c.Username, c.Password = "", "" }, "plaintext", "redis.tls")
	f("plaintext to a tls port", func(c *leadstate.Config) {
		*c = leadstate.Config{Addr: tlsNoClientAuth}
	}, "redis.tls=true")
	f("missing ca file", func(c *leadstate.Config) { c.TLSCAFile = "/nonexistent/ca.pem" }, "config", "redis.tls.ca-file")
}

// redis.cluster reaches a whole Redis Cluster through one of its addresses
// (a managed cluster's configuration endpoint).
func TestOpenClusterThroughOneAddress(t *testing.T) {
	ctx := context.Background()
	addrs := testsvc.RedisCluster(t)
	rdb, err := leadstate.Open(ctx, leadstate.Config{Addr: addrs[0], Cluster: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		t.Fatalf("Open returned a %T, want a cluster client", rdb)
	}
	// Keys in slots served by every master: a plain client on one node
	// would get MOVED for most of them.
	for i := range 30 {
		k := "ls:{" + newID("cl") + "}:x"
		if err := rdb.Set(ctx, k, i, time.Minute).Err(); err != nil {
			t.Fatalf("SET %s through the cluster client: %v", k, err)
		}
	}
	if err := (&leadstate.Config{Addr: addrs[0], Cluster: true, DB: 1}).Validate(); err == nil {
		t.Error("redis.db 1 on a cluster passed Validate")
	}
}
