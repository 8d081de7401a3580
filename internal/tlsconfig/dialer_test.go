package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/testsvc"
)

// tlsServer accepts TLS connections with the certificate in cert, requiring
// a client certificate signed by clientCA; each handshake's outcome is sent
// on the returned channel.
func tlsServer(t *testing.T, cert *atomic.Pointer[tls.Certificate], clientCA *testsvc.CA) (string, <-chan error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCA.Pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert.Load(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	outcomes := make(chan error, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			outcomes <- c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return ln.Addr().String(), outcomes
}

func replaceFile(t *testing.T, path string, content []byte) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A Dialer's connections use the files as they are when each connection is
// made: a renewed CA bundle and client certificate without a restart, the
// last good ones while the files do not load, and always the host's name
// (or IP address) verified.
func TestDialerRenewedFiles(t *testing.T) {
	oldCA, newCA := testsvc.NewCA(t, "old"), testsvc.NewCA(t, "new")
	oldSrv, newSrv := oldCA.Server(t, "server"), newCA.Server(t, "server")
	var serving atomic.Pointer[tls.Certificate]
	serving.Store(&oldSrv.Cert)
	addr, outcomes := tlsServer(t, &serving, oldCA)

	dir := t.TempDir()
	files := Files{Prefix: "svc.tls", CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	expires := time.Now().Add(2 * time.Second)
	oldClient, newClient := oldCA.ClientUntil(t, "c", expires), oldCA.Client(t, "c")
	replaceFile(t, files.CAFile, read(t, oldCA.CAFile))
	replaceFile(t, files.CertFile, read(t, oldClient.CertFile))
	replaceFile(t, files.KeyFile, read(t, oldClient.KeyFile))
	d, err := files.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	dial := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := d.DialContext(ctx, &net.Dialer{}, "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		// The server's verdict on the client certificate.
		select {
		case err := <-outcomes:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := dial(); err != nil {
		t.Fatal(err)
	}

	// The client certificate renewed, the old one expired.
	replaceFile(t, files.CertFile, read(t, newClient.CertFile))
	replaceFile(t, files.KeyFile, read(t, newClient.KeyFile))
	time.Sleep(time.Until(expires) + 500*time.Millisecond)
	if err := dial(); err != nil {
		t.Fatalf("after the client certificate's renewal: %v", err)
	}

	// The server moves to the new CA once the bundle holds both.
	replaceFile(t, files.CAFile, append(read(t, oldCA.CAFile), read(t, newCA.CAFile)...))
	serving.Store(&newSrv.Cert)
	if err := dial(); err != nil {
		t.Fatalf("after the CA bundle's renewal: %v", err)
	}

	// Files that do not load leave the last good ones in use.
	replaceFile(t, files.CAFile, []byte("-----BEGIN CERT"))
	replaceFile(t, files.KeyFile, []byte("not a key"))
	if err := dial(); err != nil {
		t.Fatalf("with half-written files: %v", err)
	}

	// The name verified is the host dialled, an IP address included.
	c := d.Config("10.1.2.3")
	c.Certificates = []tls.Certificate{newClient.Cert}
	conn, err := tls.Dial("tcp", addr, c)
	var hostname x509.HostnameError
	if err == nil {
		conn.Close()
		t.Fatal("a certificate for 127.0.0.1 was accepted for 10.1.2.3")
	} else if !errors.As(err, &hostname) {
		t.Fatalf("dialling 10.1.2.3's name: %v, want a hostname error", err)
	}
}
