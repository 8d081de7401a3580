// Package tlsconfig builds the client TLS configuration of leadstream's
// connections to Kafka, Redis and ClickHouse from the same three files each
// service takes: a CA bundle to trust, and a client certificate and key for
// servers that ask for one (mutual TLS).
//
// Its errors name the setting (e.g. kafka.tls.ca-file) and the file, so a
// role that cannot start says which file to fix.
package tlsconfig

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
)

// Files are the TLS settings of one service. Prefix is the flag prefix of
// its settings (e.g. "kafka.tls"), used in error messages only.
type Files struct {
	Prefix     string
	CAFile     string // PEM CA bundle; empty = the system's trusted roots
	CertFile   string // PEM client certificate (mutual TLS); needs KeyFile
	KeyFile    string // PEM private key of CertFile
	ServerName string // name to verify the server's certificate against; empty = the host dialled
}

// Any reports whether any file or server name is set.
func (f Files) Any() bool {
	return f.CAFile != "" || f.CertFile != "" || f.KeyFile != "" || f.ServerName != ""
}

// Validate checks that the settings belong together: a certificate needs
// its key and a key its certificate, and none of them without TLS.
func (f Files) Validate(enabled bool) error {
	if !enabled && f.Any() {
		return fmt.Errorf("%s.* files are set but %s is false: set %s=true to connect with TLS", f.Prefix, f.Prefix, f.Prefix)
	}
	if (f.CertFile == "") != (f.KeyFile == "") {
		return fmt.Errorf("%s.cert-file and %s.key-file go together: set both for a client certificate, or neither", f.Prefix, f.Prefix)
	}
	return nil
}

// Config reads the files and returns a client TLS configuration (TLS 1.2 or
// newer; the server's certificate is always verified) with the files'
// content now. Connections that live long, and reconnect, use a Dialer.
func (f Files) Config() (*tls.Config, error) {
	d, err := f.Dialer()
	if err != nil {
		return nil, err
	}
	return d.Config(""), nil
}

// Dialer makes the TLS connections of one service. Every new connection uses
// the files as they are then: a CA bundle or a client certificate renewed in
// place (cert-manager renewing a mounted Secret, an agent rewriting the
// files) is used from the next connection on, without a restart. A role that
// read them only at start would keep presenting an expired certificate, or
// refuse servers that moved to a new CA, each time it reconnects. Files that
// do not load (a certificate rewritten before its key, a half-written
// bundle) leave the last good content in use.
type Dialer struct {
	serverName string
	ca         *caBundle // nil: the system's trusted roots
	key        *keyPair  // nil: no client certificate
}

// Dialer reads the files, failing as Config does, and returns a Dialer.
func (f Files) Dialer() (*Dialer, error) {
	if err := f.Validate(true); err != nil {
		return nil, err
	}
	d := &Dialer{serverName: f.ServerName}
	if f.CAFile != "" {
		d.ca = &caBundle{file: f.CAFile}
		if err := d.ca.load(); errors.Is(err, errNoPEM) {
			return nil, fmt.Errorf("%s.ca-file %s: %w", f.Prefix, f.CAFile, err)
		} else if err != nil {
			return nil, fmt.Errorf("%s.ca-file: %w", f.Prefix, err)
		}
	}
	if f.CertFile != "" {
		d.key = &keyPair{certFile: f.CertFile, keyFile: f.KeyFile}
		if err := d.key.load(); err != nil {
			return nil, fmt.Errorf("%s.cert-file %s and %s.key-file %s: %w", f.Prefix, f.CertFile, f.Prefix, f.KeyFile, err)
		}
	}
	return d, nil
}

// Config is the configuration of one connection to host (a name or an IP
// address, verified against the server's certificate unless the Files set
// a ServerName), with the CA bundle and client certificate in the files now.
func (d *Dialer) Config(host string) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: d.serverName}
	if c.ServerName == "" {
		c.ServerName = host
	}
	if d.ca != nil {
		c.RootCAs = d.ca.current()
	}
	if d.key != nil {
		c.GetClientCertificate = d.key.get
	}
	return c
}

// DialContext connects to addr through nd and makes the TLS handshake, both
// bounded by ctx and nd.Timeout.
func (d *Dialer) DialContext(ctx context.Context, nd *net.Dialer, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	return (&tls.Dialer{NetDialer: nd, Config: d.Config(host)}).DialContext(ctx, network, addr)
}

var errNoPEM = errors.New("no PEM certificate in it")

// caBundle is a CA bundle read again when it changed (see Dialer).
type caBundle struct {
	file string

	mu   sync.Mutex
	pem  []byte
	pool *x509.CertPool // never changed once made: connections share it
}

func (b *caBundle) load() error {
	pem, err := os.ReadFile(b.file)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pool != nil && bytes.Equal(pem, b.pem) {
		return nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return errNoPEM
	}
	b.pem, b.pool = pem, pool
	return nil
}

// current is the pool of the bundle in the file now, or of the last one
// that loaded.
func (b *caBundle) current() *x509.CertPool {
	_ = b.load() // on failure the last good bundle stays
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pool
}

// keyPair is a client certificate read again from its files at every
// handshake the server asks for one (see Dialer).
type keyPair struct {
	certFile, keyFile string

	mu      sync.Mutex
	certPEM []byte
	keyPEM  []byte
	cert    *tls.Certificate
}

// load reads the files and keeps the pair when it loads; the error is the
// reason it did not.
func (k *keyPair) load() error {
	certPEM, err := os.ReadFile(k.certFile)
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(k.keyFile)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert != nil && bytes.Equal(certPEM, k.certPEM) && bytes.Equal(keyPEM, k.keyPEM) {
		return nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	k.cert, k.certPEM, k.keyPEM = &cert, certPEM, keyPEM
	return nil
}

// get is the tls.Config's GetClientCertificate: the pair in the files now,
// or the last one that loaded.
func (k *keyPair) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	_ = k.load() // on failure the last good pair stays
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cert, nil
}

// Hint explains a connection failure that looks like a TLS problem, for
// the end of an error message, or returns "" when err does not. prefix is
// the service's TLS flag (e.g. "redis.tls"); enabled says whether TLS was on.
func Hint(err error, prefix string, enabled bool) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		header   tls.RecordHeaderError
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &unknown):
		return "the server's certificate is not signed by a CA leadstream trusts: set " + prefix + ".ca-file to the CA that signed it"
	case errors.As(err, &hostname):
		return "the server's certificate is not valid for the address dialled: connect by a name it holds" + serverNameHint(prefix)
	case errors.As(err, &invalid):
		return "the server's certificate is not valid (expired, or not for server use)"
	case errors.As(err, &header):
		return "the server answered in plaintext: it has no TLS on this port; set " + prefix + "=false or use its TLS port"
	case strings.Contains(err.Error(), "remote error: tls:"):
		return "the server refused the TLS handshake: if it requires a client certificate, set " + prefix + ".cert-file and " + prefix + ".key-file to one signed by a CA it trusts"
	case !enabled && closed(err):
		return "the server closed the connection at once: if it expects TLS on this port, set " + prefix + "=true"
	case enabled && closed(err):
		// With TLS 1.3 a refused client certificate may show as a reset
		// instead of the server's alert.
		return "the server closed the TLS connection: if it requires a client certificate, set " + prefix + ".cert-file and " + prefix + ".key-file to one signed by a CA it trusts"
	case enabled && IsTimeout(err):
		return "no answer within the timeout: if the server expects plaintext on this port, the TLS handshake waits forever; check " + prefix
	}
	return ""
}

func closed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Permanent reports whether err is a TLS failure that retrying cannot fix:
// an untrusted or invalid certificate, a plaintext server, a refused
// handshake.
func Permanent(err error) bool {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		header   tls.RecordHeaderError
	)
	return err != nil && (errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &header) || strings.Contains(err.Error(), "remote error: tls:"))
}

// serverNameHint points at the service's server-name setting.
func serverNameHint(prefix string) string {
	return ", or set " + prefix + ".server-name to one"
}

// IsTimeout reports whether err is a timeout.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
