package warehouse

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadstream/leadstream/internal/secretflag"
	"github.com/leadstream/leadstream/internal/tlsconfig"
	"github.com/leadstream/leadstream/stream"
)

// Config says how to reach ClickHouse. Every role and tool that reads or
// writes ClickHouse registers it (the sink, migrate, report, rescore,
// costs import), so its flags are registered by the caller.
type Config struct {
	Addr        string // native protocol host:port; a comma-separated list fails over
	Database    string
	Username    string
	Password    string
	DialTimeout time.Duration
	// Cluster names the ClickHouse cluster (remote_servers) the schema lives
	// on: replicated local tables under Distributed ones (cluster.go).
	// Empty = one server.
	Cluster string
	// TLS connects to the secure native port (ClickHouse's tcp_port_secure,
	// 9440 by default) with TLS; the files are the CA bundle to trust (empty
	// = the system's) and a client certificate and key for servers that
	// require one.
	TLS                                bool
	TLSCAFile, TLSCertFile, TLSKeyFile string
	// TLSServerName is the name the servers' certificates must hold; empty
	// = the host dialled.
	TLSServerName string
	// ReadTimeout bounds the wait for one query's answer (no flag; 0 =
	// clickhouse-go's 5 minutes). clickhouse-go sets it once per query, so
	// a long INSERT … SELECT (RebuildEvents) needs a longer one.
	ReadTimeout time.Duration
}

// RegisterFlags registers clickhouse.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "clickhouse.addr", "", "ClickHouse native protocol address host:port (comma-separated for several); empty in `dev` = local clickhouse-server")
	fs.StringVar(&c.Database, "clickhouse.database", DefaultDatabase, "ClickHouse database holding leadstream's tables")
	fs.StringVar(&c.Username, "clickhouse.username", "default", "ClickHouse user")
	secretflag.String(fs, &c.Password, "clickhouse.password", "ClickHouse password")
	fs.DurationVar(&c.DialTimeout, "clickhouse.dial-timeout", 5*time.Second, "timeout for connecting to ClickHouse")
	fs.StringVar(&c.Cluster, "clickhouse.cluster", "", "ClickHouse cluster (remote_servers name) holding the schema: replicated tables under Distributed ones, DDL ON CLUSTER; empty = one server")
	fs.BoolVar(&c.TLS, "clickhouse.tls", false, "connect with TLS, to ClickHouse's secure native port (tcp_port_secure, usually 9440)")
	fs.StringVar(&c.TLSCAFile, "clickhouse.tls.ca-file", "", "PEM file of the CA(s) that sign the ClickHouse server's certificate; empty = the system's trusted CAs")
	fs.StringVar(&c.TLSCertFile, "clickhouse.tls.cert-file", "", "PEM client certificate, for servers that require one")
	fs.StringVar(&c.TLSKeyFile, "clickhouse.tls.key-file", "", "PEM private key of clickhouse.tls.cert-file")
	fs.StringVar(&c.TLSServerName, "clickhouse.tls.server-name", "", "name the ClickHouse servers' certificates must hold; empty = the host of each address")
}

func (c *Config) tlsFiles() tlsconfig.Files {
	return tlsconfig.Files{Prefix: "clickhouse.tls", CAFile: c.TLSCAFile, CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile, ServerName: c.TLSServerName}
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// CheckDatabase returns ErrBadDatabase unless name is a plain identifier,
// the only database names leadstream splices into SQL.
func CheckDatabase(name string) error {
	if !identifier.MatchString(name) {
		return fmt.Errorf("%w, got %q", ErrBadDatabase, name)
	}
	return nil
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if len(stream.SplitList(c.Addr)) == 0 {
		return ErrNoAddr
	}
	if err := CheckDatabase(c.Database); err != nil {
		return err
	}
	if c.Cluster != "" && !identifier.MatchString(c.Cluster) {
		return fmt.Errorf("%w, got %q", ErrBadCluster, c.Cluster)
	}
	if c.DialTimeout < 0 {
		return fmt.Errorf("clickhouse.dial-timeout must not be negative, got %s", c.DialTimeout)
	}
	if err := c.tlsFiles().Validate(c.TLS); err != nil {
		return err
	}
	if c.TLS {
		if _, err := c.tlsFiles().Config(); err != nil {
			return err
		}
	}
	return nil
}

// Open connects to ClickHouse over the native protocol and pings it.
//
// The native protocol is required: clickhouse-go's HTTP mode does not work
// with the ClickHouse 18.16 of the test machines.
func Open(ctx context.Context, c Config) (driver.Conn, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var (
		td *tlsconfig.Dialer
		tc *tls.Config
	)
	if c.TLS {
		var err error
		if td, err = c.tlsFiles().Dialer(); err != nil {
			return nil, err
		}
		tc = td.Config("")
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:     stream.SplitList(c.Addr),
		Protocol: clickhouse.Native,
		// No Auth.Database: it may not exist yet (Migrate creates it), so the
		// session uses the server's default one and every table name is qualified.
		Auth:        clickhouse.Auth{Username: c.Username, Password: c.Password},
		DialTimeout: c.DialTimeout,
		ReadTimeout: c.ReadTimeout,
		// Insert blocks are large and repetitive (URLs, UTM values); LZ4 cuts
		// the bytes on the wire several-fold for little CPU.
		Compression: &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
		Settings:    c.clusterSettings(),
		TLS:         tc,
		DialContext: c.dial(td),
	})
	if err != nil {
		return nil, fmt.Errorf("opening clickhouse at %s: %w", c.Addr, err)
	}
	// Bounded: a TLS handshake against a plaintext port is never answered.
	pctx, cancel := context.WithTimeout(ctx, max(c.DialTimeout, time.Second)+5*time.Second)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connecting to clickhouse at %s: %w", c.Addr, c.explain(err))
	}
	if err := c.checkCluster(pctx, conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// explain adds the likely cause to a failed first contact.
func (c *Config) explain(err error) error {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		switch ex.Code {
		case 192, 193, 516: // UNKNOWN_USER, WRONG_PASSWORD, AUTHENTICATION_FAILED
			return fmt.Errorf("%w (the server refused user %q with this password: check clickhouse.username and clickhouse.password)", err, c.Username)
		}
		return err
	}
	if hint := tlsconfig.Hint(err, "clickhouse.tls", c.TLS); hint != "" {
		return fmt.Errorf("%w (%s)", err, hint)
	}
	return err
}

// WriteTimeout bounds each write on a ClickHouse connection. clickhouse-go
// sends an INSERT's blocks with no deadline and no eye on the context, so a
// server that stops reading (frozen, or a shard behind a black hole) would
// hold the sink — and its shutdown — until TCP gives up, minutes later.
var WriteTimeout = 30 * time.Second

// dial is clickhouse-go's dialer with the context heeded (a cancelled start
// stops dialling) and every write bounded by WriteTimeout; with td, TLS with
// the files as they are at each connection (a renewed certificate or CA
// bundle is used when the pool reconnects: tlsconfig.Dialer).
func (c Config) dial(td *tlsconfig.Dialer) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: c.DialTimeout}
		var conn net.Conn
		var err error
		if td != nil {
			conn, err = td.DialContext(ctx, d, "tcp", addr)
		} else {
			conn, err = d.DialContext(ctx, "tcp", addr)
		}
		if err != nil {
			return nil, err
		}
		return &boundedWrites{Conn: conn, timeout: WriteTimeout}, nil
	}
}

// boundedWrites is a connection whose every Write must finish within timeout.
type boundedWrites struct {
	net.Conn
	timeout time.Duration
}

func (b *boundedWrites) Write(p []byte) (int, error) {
	if err := b.Conn.SetWriteDeadline(time.Now().Add(b.timeout)); err != nil {
		return 0, err
	}
	return b.Conn.Write(p)
}
