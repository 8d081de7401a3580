package testsvc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/localsvc"
)

// CA is a certificate authority made for one test (crypto/x509, ECDSA
// P-256), with its certificate written to CAFile. It issues server
// certificates for loopback and client certificates for mutual TLS.
type CA struct {
	CAFile string // PEM certificate of the CA
	Pool   *x509.CertPool

	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

// KeyPair is an issued certificate: its PEM files and the loaded pair.
type KeyPair struct {
	CertFile, KeyFile string
	Cert              tls.Certificate
}

var serial atomic.Int64

// NewCA makes a CA named name, its files under a temporary directory of t.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(nextSerial()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca := &CA{CAFile: filepath.Join(dir, name+"-ca.pem"), Pool: x509.NewCertPool(), cert: cert, key: key, dir: dir}
	writePEM(t, ca.CAFile, "CERTIFICATE", der)
	ca.Pool.AddCert(cert)
	return ca
}

func nextSerial() int64 { return time.Now().UnixNano() + serial.Add(1) }

// Server issues a server certificate for 127.0.0.1, ::1 and localhost.
func (ca *CA) Server(t testing.TB, name string) KeyPair {
	t.Helper()
	return ca.issue(t, name, x509.ExtKeyUsageServerAuth, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, time.Now().Add(24*time.Hour))
}

// ServerNamed issues a server certificate that holds only the DNS name
// name: not the address a test dials (127.0.0.1), as a managed cluster's
// nodes announced by IP with certificates for the service's name.
func (ca *CA) ServerNamed(t testing.TB, name string) KeyPair {
	t.Helper()
	return ca.issue(t, name, x509.ExtKeyUsageServerAuth, []string{name}, nil, time.Now().Add(24*time.Hour))
}

// Client issues a client certificate (mutual TLS) with common name name.
func (ca *CA) Client(t testing.TB, name string) KeyPair {
	t.Helper()
	return ca.issue(t, name, x509.ExtKeyUsageClientAuth, nil, nil, time.Now().Add(24*time.Hour))
}

// ClientUntil issues a client certificate that expires at notAfter: a
// certificate about to be renewed.
func (ca *CA) ClientUntil(t testing.TB, name string, notAfter time.Time) KeyPair {
	t.Helper()
	return ca.issue(t, name, x509.ExtKeyUsageClientAuth, nil, nil, notAfter)
}

func (ca *CA) issue(t testing.TB, name string, usage x509.ExtKeyUsage, dns []string, ips []net.IP, notAfter time.Time) KeyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(nextSerial()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(ca.dir, fmt.Sprintf("%s-%d", name, tmpl.SerialNumber))
	kp := KeyPair{CertFile: base + ".pem", KeyFile: base + "-key.pem"}
	writePEM(t, kp.CertFile, "CERTIFICATE", der)
	writePEM(t, kp.KeyFile, "PRIVATE KEY", keyDER)
	if kp.Cert, err = tls.LoadX509KeyPair(kp.CertFile, kp.KeyFile); err != nil {
		t.Fatal(err)
	}
	return kp
}

// ServerTLS is a server-side TLS configuration with kp's certificate that,
// when clientCAs is set, requires a client certificate signed by it.
func ServerTLS(kp KeyPair, clientCAs *CA) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{kp.Cert}, MinVersion: tls.VersionTLS12}
	if clientCAs != nil {
		c.ClientCAs = clientCAs.Pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// SecureRedis starts, for this test only, a redis-server that listens only
// with TLS (certificate from ca; with clientAuth it requires a client
// certificate signed by ca), with args appended (e.g. ACL users), and
// returns it (Addr is its host:port). It is stopped when the test ends.
func SecureRedis(t testing.TB, ca *CA, clientAuth bool, args ...string) *localsvc.Server {
	t.Helper()
	return secureRedis(t, ca.serverTLS(t, clientAuth), args...)
}

// SecureRedisNamed is SecureRedis (no client certificates) with a server
// certificate for name only (ServerNamed).
func SecureRedisNamed(t testing.TB, ca *CA, name string) *localsvc.Server {
	t.Helper()
	return secureRedis(t, ca.namedTLS(t, name))
}

func secureRedis(t testing.TB, lt localsvc.TLS, args ...string) *localsvc.Server {
	t.Helper()
	s, err := localsvc.StartRedisTLS(context.Background(), filepath.Join(t.TempDir(), "redis-tls"), 0, lt, args...)
	return started(t, "redis-server", s, err)
}

// SecureClickHouse starts, for this test only, a clickhouse-server whose
// native protocol listens only on its secure port (certificate from ca;
// with clientAuth it requires a client certificate signed by ca), with the
// extra users (name -> password), and returns it (Addr is the secure
// host:port). It is stopped when the test ends.
func SecureClickHouse(t testing.TB, ca *CA, clientAuth bool, users map[string]string) *localsvc.Server {
	t.Helper()
	return secureClickHouse(t, ca.serverTLS(t, clientAuth), users)
}

// SecureClickHouseNamed is SecureClickHouse (no client certificates) with
// a server certificate for name only (ServerNamed).
func SecureClickHouseNamed(t testing.TB, ca *CA, name string, users map[string]string) *localsvc.Server {
	t.Helper()
	return secureClickHouse(t, ca.namedTLS(t, name), users)
}

func secureClickHouse(t testing.TB, lt localsvc.TLS, users map[string]string) *localsvc.Server {
	t.Helper()
	s, err := localsvc.StartClickHouseTLS(context.Background(), filepath.Join(t.TempDir(), "clickhouse-tls"), 0, 0, lt, users)
	return started(t, "clickhouse-server", s, err)
}

// started fails the test when the server did not start (Required when it
// is not installed), and stops it when the test ends.
func started(t testing.TB, what string, s *localsvc.Server, err error) *localsvc.Server {
	t.Helper()
	if errors.Is(err, localsvc.ErrNotInstalled) {
		Required(t, what, err.Error())
	}
	if err != nil {
		t.Fatalf("testsvc: starting %s with TLS: %v", what, err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

// namedTLS is the TLS of a server whose certificate holds only name.
func (ca *CA) namedTLS(t testing.TB, name string) localsvc.TLS {
	srv := ca.ServerNamed(t, name)
	return localsvc.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile, CAFile: ca.CAFile, ServerName: name}
}

func (ca *CA) serverTLS(t testing.TB, clientAuth bool) localsvc.TLS {
	srv := ca.Server(t, "server")
	lt := localsvc.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile, CAFile: ca.CAFile, ClientAuth: clientAuth}
	if clientAuth {
		c := ca.Client(t, "probe")
		lt.ClientCertFile, lt.ClientKeyFile = c.CertFile, c.KeyFile
	}
	return lt
}
