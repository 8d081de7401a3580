package leadstate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/leadstream/leadstream/internal/tlsconfig"
)

func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func (c *Config) tlsFiles() tlsconfig.Files {
	return tlsconfig.Files{Prefix: "redis.tls", CAFile: c.TLSCAFile, CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile, ServerName: c.TLSServerName}
}

// dialTimeout and keepAlive are go-redis's defaults, which a dialer of our
// own replaces.
var (
	dialTimeout = 5 * time.Second
	keepAlive   = net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3}
)

// openTimeout bounds Open's first contact, so that a role with a wrong
// setting fails at start within seconds.
const openTimeout = 10 * time.Second

// open builds the client and pings the server through it.
func open(ctx context.Context, c Config) (redis.UniversalClient, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	addrs := splitAddrs(c.Addr)
	opts := &redis.UniversalOptions{Addrs: addrs, Username: c.Username, Password: c.Password, DB: c.DB}
	if c.TLS {
		d, err := c.tlsFiles().Dialer()
		if err != nil {
			return nil, err
		}
		opts.TLSConfig = d.Config("") // tells go-redis the connections are TLS; Dialer makes them
		// Every connection, to each node of a cluster, dials with the TLS
		// files as they are then: a renewed client certificate or CA
		// bundle is used when the client reconnects (tlsconfig.Dialer).
		opts.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, &net.Dialer{Timeout: dialTimeout, KeepAliveConfig: keepAlive}, network, addr)
		}
	}
	var rdb redis.UniversalClient
	if len(addrs) > 1 || c.Cluster {
		rdb = redis.NewClusterClient(opts.Cluster())
	} else {
		rdb = redis.NewClient(opts.Simple())
	}
	// Bounded: a TLS handshake against a plaintext port is never answered.
	pctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("connecting to redis at %s: %w", c.Addr, explain(c, err))
	}
	return rdb, nil
}

// explain adds the likely cause to a failed first contact.
func explain(c Config, err error) error {
	user := c.Username
	if user == "" {
		user = "default"
	}
	switch {
	case redis.HasErrorPrefix(err, "WRONGPASS"):
		return fmt.Errorf("%w (the server refused user %q with this password: check redis.username and redis.password)", err, user)
	case redis.HasErrorPrefix(err, "NOAUTH"):
		return fmt.Errorf("%w (the server requires a password: set redis.password, and redis.username for an ACL user)", err)
	case redis.HasErrorPrefix(err, "NOPERM"):
		return fmt.Errorf("%w (ACL user %q lacks a permission leadstream needs: see \"Redis ACL\" in the README)", err, user)
	case errors.Is(err, redis.ErrClosed):
		return err
	}
	if hint := tlsconfig.Hint(err, "redis.tls", c.TLS); hint != "" {
		return fmt.Errorf("%w (%s)", err, hint)
	}
	return err
}

// Redis ACL rules for leadstream's users (after `ACL SETUSER name on
// >password`, or in a `user` line of redis.conf / users.acl). Keys are
// limited to leadstream's namespace (ls:); dangerous commands (KEYS, FLUSH*,
// CLIENT KILL …) are off; CLUSTER SLOTS lets a cluster client find the
// nodes. The README lists them; the tests run each role with them.
const (
	// ACLReader is enough for the collector (the lead API only reads) and
	// for a dry-run `rescore`.
	ACLReader = "~ls2:* resetchannels -@all +@connection +@read -@dangerous +cluster|slots"
	// ACLWriter is what the processor needs (the commit script, visitor
	// expiry, outbox acknowledgements), and `rescore -apply` (MULTI/EXEC,
	// and the deletion of the first layout's ls:… keys).
	ACLWriter = "~ls2:* ~ls:* resetchannels -@all +@connection +@read +@write +@scripting +@transaction -@dangerous +cluster|slots"
)
