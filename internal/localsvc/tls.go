package localsvc

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// TLS are the PEM files of a server started with TLS only (no plaintext
// port). One CA signs the server's certificate and, with ClientAuth, the
// client certificates the server requires.
type TLS struct {
	CertFile, KeyFile string // the server's certificate and key
	CAFile            string // the CA: trusted by the readiness check, and by the server for client certificates
	// ClientAuth makes the server require a client certificate signed by
	// the CA; the readiness check presents ClientCertFile/ClientKeyFile.
	ClientAuth                    bool
	ClientCertFile, ClientKeyFile string
	// ServerName is the name the readiness check verifies the server's
	// certificate against; empty = the address it dials.
	ServerName string
}

// clientConfig is the readiness check's TLS configuration.
func (t TLS) clientConfig() (*tls.Config, error) {
	pem, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("localsvc: tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("localsvc: tls: no certificate in %s", t.CAFile)
	}
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.ClientAuth {
		cert, err := tls.LoadX509KeyPair(t.ClientCertFile, t.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("localsvc: tls client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// StartRedisTLS starts redis-server like StartRedis, but listening only
// with TLS (--port 0 --tls-port P) on 127.0.0.1:port (0 picks a free port).
// args are appended, e.g. ACL users: "--user", "ls", "on", ">pw", "~*", "+@all".
// It is ready once a TLS client gets an answer to PING (PONG, or NOAUTH when
// the default user is off).
func StartRedisTLS(ctx context.Context, dir string, port int, t TLS, args ...string) (*Server, error) {
	bin, err := lookPath("redis-server", "redis-server")
	if err != nil {
		return nil, err
	}
	if dir, err = prepareDir(dir); err != nil {
		return nil, err
	}
	tc, err := t.clientConfig()
	if err != nil {
		return nil, err
	}
	auth := "no"
	if t.ClientAuth {
		auth = "yes"
	}
	return withAutoPort(port == 0, func() (*Server, error) {
		p, err := pickPorts(port)
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p[0]))
		s, err := startProcess("redis", dir, addr, bin, append([]string{
			"--bind", "127.0.0.1",
			"--port", "0",
			"--tls-port", strconv.Itoa(p[0]),
			"--tls-cert-file", t.CertFile,
			"--tls-key-file", t.KeyFile,
			"--tls-ca-cert-file", t.CAFile,
			"--tls-auth-clients", auth,
			"--dir", dir,
			"--daemonize", "no",
			"--logfile", "",
			"--save", "",
			"--appendonly", "no",
			"--protected-mode", "no",
		}, args...))
		if err != nil {
			return nil, err
		}
		if err := s.waitReady(ctx, func(ctx context.Context) error { return redisTLSPing(ctx, addr, tc) }); err != nil {
			return nil, err
		}
		return s, nil
	})
}

func redisTLSPing(ctx context.Context, addr string, tc *tls.Config) error {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: tc}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("PING replied %q", line)
	}
	return nil
}

// StartClickHouseTLS starts clickhouse-server like StartClickHouse, but
// with its native protocol only on the secure port (tcp_port_secure, TLS
// configured in the openSSL server section), plaintext HTTP on httpPort for
// the readiness check, and the extra users (name -> password) besides
// default. Server.Addr is the secure native host:port.
func StartClickHouseTLS(ctx context.Context, dir string, securePort, httpPort int, t TLS, users map[string]string) (*Server, error) {
	bin, err := lookPath("clickhouse-server", "clickhouse-server")
	if err != nil {
		return nil, err
	}
	if dir, err = prepareDir(dir); err != nil {
		return nil, err
	}
	tc, err := t.clientConfig()
	if err != nil {
		return nil, err
	}
	return withAutoPort(securePort == 0 || httpPort == 0, func() (*Server, error) {
		p, err := pickPorts(securePort, httpPort)
		if err != nil {
			return nil, err
		}
		return startClickHouse(ctx, bin, dir, clickHouseConfig{securePort: p[0], httpPort: p[1], tls: &t, users: users, probeTLS: tc})
	})
}

// openSSLServer is the openSSL server section of clickhouse-server's
// config (Poco's SSLManager keys; the same in 18.16 and current releases).
// verificationMode strict requires a client certificate.
func openSSLServer(t *TLS) string {
	mode := "none"
	if t.ClientAuth {
		mode = "strict"
	}
	return fmt.Sprintf(`  <openSSL>
    <server>
      <certificateFile>%s</certificateFile>
      <privateKeyFile>%s</privateKeyFile>
      <caConfig>%s</caConfig>
      <verificationMode>%s</verificationMode>
      <loadDefaultCAFile>false</loadDefaultCAFile>
      <cacheSessions>true</cacheSessions>
      <disableProtocols>sslv2,sslv3</disableProtocols>
      <preferServerCiphers>true</preferServerCiphers>
    </server>
  </openSSL>
`, xmlEscape(t.CertFile), xmlEscape(t.KeyFile), xmlEscape(t.CAFile), mode)
}
