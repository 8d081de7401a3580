package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/leadstream/leadstream/internal/testsvc"
)

func TestFiles(t *testing.T) {
	ca := testsvc.NewCA(t, "t")
	client := ca.Client(t, "c")
	notPEM := filepath.Join(t.TempDir(), "x.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := func(files Files, enabled bool, want string) {
		t.Helper()
		files.Prefix = "svc.tls"
		err := files.Validate(enabled)
		if err == nil && enabled {
			_, err = files.Config()
		}
		switch {
		case want == "" && err != nil:
			t.Errorf("%+v: %v", files, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%+v: error %v, want one containing %q", files, err, want)
		}
	}
	f(Files{}, false, "")
	f(Files{}, true, "")
	f(Files{CAFile: ca.CAFile, CertFile: client.CertFile, KeyFile: client.KeyFile}, true, "")
	f(Files{CAFile: ca.CAFile}, false, "svc.tls is false")
	f(Files{CertFile: client.CertFile}, true, "svc.tls.cert-file and svc.tls.key-file go together")
	f(Files{CAFile: notPEM}, true, "no PEM certificate")
	f(Files{CAFile: "/nonexistent"}, true, "svc.tls.ca-file")
	f(Files{CertFile: client.CertFile, KeyFile: ca.CAFile}, true, "svc.tls.cert-file")

	c, err := Files{Prefix: "p", CAFile: ca.CAFile, ServerName: "db.example"}.Config()
	if err != nil || c.MinVersion != tls.VersionTLS12 || c.ServerName != "db.example" || c.RootCAs == nil || c.InsecureSkipVerify {
		t.Fatalf("config %+v, %v", c, err)
	}
}

func TestHint(t *testing.T) {
	f := func(err error, enabled bool, want string) {
		t.Helper()
		got := Hint(err, "svc.tls", enabled)
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("Hint(%v, %v) = %q, want %q", err, enabled, got, want)
		}
	}
	wrap := func(err error) error { return fmt.Errorf("dialing: %w", err) }
	f(nil, true, "")
	f(wrap(x509.UnknownAuthorityError{}), true, "set svc.tls.ca-file")
	f(wrap(x509.HostnameError{Certificate: &x509.Certificate{}, Host: "h"}), true, "not valid for the address")
	f(wrap(tls.RecordHeaderError{}), true, "answered in plaintext")
	f(wrap(fmt.Errorf("remote error: tls: certificate required")), true, "svc.tls.cert-file")
	f(wrap(io.EOF), false, "set svc.tls=true")
	f(wrap(syscall.ECONNRESET), true, "client certificate")
	f(wrap(context.DeadlineExceeded), true, "check svc.tls")
	f(wrap(context.DeadlineExceeded), false, "")
	f(wrap(fmt.Errorf("connection refused")), true, "")
	if !Permanent(wrap(x509.UnknownAuthorityError{})) || Permanent(wrap(io.EOF)) || Permanent(nil) {
		t.Error("Permanent")
	}
}
