// Package tlsconfig builds the client TLS configuration of leadstream's
// connections to Kafka, Redis and ClickHouse from the same three files each
// service takes: a CA bundle to trust, and a client certificate and key for
// servers that ask for one (mutual TLS).
//
// Its errors name the setting (e.g. kafka.tls.ca-file) and the file, so a
// role that cannot start says which file to fix.
package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
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
// newer; the server's certificate is always verified).
func (f Files) Config() (*tls.Config, error) {
	if err := f.Validate(true); err != nil {
		return nil, err
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s.ca-file: %w", f.Prefix, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.ca-file %s: no PEM certificate in it", f.Prefix, f.CAFile)
		}
		c.RootCAs = pool
	}
	if f.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s.cert-file %s and %s.key-file %s: %w", f.Prefix, f.CertFile, f.Prefix, f.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
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

// serverNameHint points at the server-name setting where there is one.
func serverNameHint(prefix string) string {
	if prefix == "kafka.tls" {
		return ", or set " + prefix + ".server-name"
	}
	return ""
}

// IsTimeout reports whether err is a timeout.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
