//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The notifier records every attempt in ClickHouse: like every other role
// it checks ClickHouse at start, and a server that refuses it (a wrong
// password, an untrusted certificate) stops it within seconds naming the
// cause, instead of a notifier that runs and never records an attempt.
func TestSecureNotifierChecksClickHouse(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts servers")
	}
	e := newSecureEnv(t)
	conf := filepath.Join(e.dir, "notify.yaml")
	if err := os.WriteFile(conf, []byte("destinations:\n  - name: crm\n    type: webhook\n    url: http://127.0.0.1:9/hook\n    secret: {env: CRM_HOOK_SECRET}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongFile := filepath.Join(e.dir, "wrong.secret")
	if err := os.WriteFile(wrongFile, []byte("wrong-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := func(name string, change func(env map[string]string), want ...string) {
		t.Run(name, func(t *testing.T) {
			env := e.env("notifier")
			env["LEADSTREAM_NOTIFY_CONFIG"] = conf
			env["CRM_HOOK_SECRET"] = "crm-hook-secret-0123456789"
			change(env)
			r := e.start(t, "notifier", env)
			select {
			case <-r.done:
			case <-time.After(30 * time.Second):
				t.Fatalf("notifier still running after 30 s with a wrong clickhouse setting:\n%s", tail(r.logs(), 3000))
			}
			logs := r.logs()
			if r.err == nil {
				t.Fatalf("notifier exited without an error:\n%s", tail(logs, 3000))
			}
			for _, w := range want {
				if !strings.Contains(logs, w) {
					t.Errorf("notifier output does not contain %q:\n%s", w, tail(logs, 3000))
				}
			}
			if strings.Contains(logs, "wrong-secret") || strings.Contains(logs, e.secrets["clickhouse"]) {
				t.Error("output shows a clickhouse password")
			}
		})
	}
	f("clickhouse wrong password", func(m map[string]string) { m["LEADSTREAM_CLICKHOUSE_PASSWORD_FILE"] = wrongFile },
		"clickhouse at", "clickhouse.password")
	f("clickhouse plaintext to tls", func(m map[string]string) {
		delete(m, "LEADSTREAM_CLICKHOUSE_TLS_CA_FILE")
		delete(m, "LEADSTREAM_CLICKHOUSE_TLS_CERT_FILE")
		delete(m, "LEADSTREAM_CLICKHOUSE_TLS_KEY_FILE")
		m["LEADSTREAM_CLICKHOUSE_TLS"] = "false"
	}, "clickhouse at", "clickhouse.tls=true")
}
