package stream

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	kafkasasl "github.com/segmentio/kafka-go/sasl"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/leadstream/leadstream/internal/secretflag"
	"github.com/leadstream/leadstream/internal/tlsconfig"
)

// SASL mechanisms Security.SASLMechanism accepts.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// ErrKafkaAuth means the brokers refused leadstream's SASL credentials.
var ErrKafkaAuth = errors.New("kafka refused the SASL credentials")

// Security says how every Kafka client of leadstream connects: TLS (with an
// optional client certificate) and SASL. It is configured once (kafka.tls*,
// kafka.sasl.*) and applied to both clients the product uses: franz-go, which
// produces, and kafka-go, which consumes and administers topics. The zero
// value is plaintext without authentication.
type Security struct {
	TLS        bool
	CAFile     string // PEM CA bundle; empty = the system's roots
	CertFile   string // client certificate (mutual TLS)
	KeyFile    string
	ServerName string // name to verify the brokers' certificates against; empty = the host dialled

	SASLMechanism string // "" (none), PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	SASLUsername  string
	SASLPassword  string
}

// RegisterFlags registers kafka.tls* and kafka.sasl.* flags.
func (s *Security) RegisterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&s.TLS, "kafka.tls", false, "connect to the Kafka brokers with TLS")
	fs.StringVar(&s.CAFile, "kafka.tls.ca-file", "", "PEM file of the CA(s) that sign the brokers' certificates; empty = the system's trusted CAs")
	fs.StringVar(&s.CertFile, "kafka.tls.cert-file", "", "PEM client certificate, for brokers that require one (mutual TLS)")
	fs.StringVar(&s.KeyFile, "kafka.tls.key-file", "", "PEM private key of kafka.tls.cert-file")
	fs.StringVar(&s.ServerName, "kafka.tls.server-name", "", "name the brokers' certificates must hold; empty = the host of each broker address")
	fs.StringVar(&s.SASLMechanism, "kafka.sasl.mechanism", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty = no SASL")
	fs.StringVar(&s.SASLUsername, "kafka.sasl.username", "", "SASL user name")
	secretflag.String(fs, &s.SASLPassword, "kafka.sasl.password", "SASL password")
}

func (s *Security) files() tlsconfig.Files {
	return tlsconfig.Files{Prefix: "kafka.tls", CAFile: s.CAFile, CertFile: s.CertFile, KeyFile: s.KeyFile, ServerName: s.ServerName}
}

// Validate checks the settings and reads the TLS files.
func (s *Security) Validate() error {
	if err := s.files().Validate(s.TLS); err != nil {
		return err
	}
	if s.TLS {
		if _, err := s.files().Config(); err != nil {
			return err
		}
	}
	switch strings.ToUpper(s.SASLMechanism) {
	case "":
		if s.SASLUsername != "" || s.SASLPassword != "" {
			return errors.New("kafka.sasl.username or kafka.sasl.password is set but kafka.sasl.mechanism is empty: set it to PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if s.SASLUsername == "" || s.SASLPassword == "" {
			return fmt.Errorf("kafka.sasl.mechanism %s needs kafka.sasl.username and kafka.sasl.password", s.SASLMechanism)
		}
	default:
		return fmt.Errorf("kafka.sasl.mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got %q", s.SASLMechanism)
	}
	return nil
}

// Warnings are what a valid Security still does unsafely, for the roles to
// log at start: SASL PLAIN without TLS sends the password in clear (SCRAM
// never sends it, so it is left alone).
func (s *Security) Warnings() []string {
	if strings.ToUpper(s.SASLMechanism) == SASLPlain && !s.TLS {
		return []string{"kafka.sasl.mechanism=PLAIN without kafka.tls: the Kafka password crosses the network in clear; set kafka.tls=true or use SCRAM-SHA-512"}
	}
	return nil
}

// conn is the security of one client, built from Security: the TLS
// configuration, and the SASL mechanism wrapped to tell a refused login from
// other connection failures (see saslState).
type conn struct {
	sec   Security
	tls   *tlsconfig.Dialer // nil: plaintext
	mech  sasl.Mechanism    // nil: no SASL
	state *saslState
}

// build reads the TLS files and prepares the SASL mechanism (franz-go's
// implementation, which kafka-go uses too through saslAdapter).
func (s *Security) build() (*conn, error) {
	c := &conn{sec: *s, state: &saslState{}}
	if s.TLS {
		d, err := s.files().Dialer()
		if err != nil {
			return nil, err
		}
		c.tls = d
	}
	var m sasl.Mechanism
	switch strings.ToUpper(s.SASLMechanism) {
	case "":
		return c, nil
	case SASLPlain:
		m = plain.Auth{User: s.SASLUsername, Pass: s.SASLPassword}.AsMechanism()
	case SASLScramSHA256:
		m = scram.Auth{User: s.SASLUsername, Pass: s.SASLPassword}.AsSha256Mechanism()
	case SASLScramSHA512:
		m = scram.Auth{User: s.SASLUsername, Pass: s.SASLPassword}.AsSha512Mechanism()
	default:
		return nil, fmt.Errorf("kafka.sasl.mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got %q", s.SASLMechanism)
	}
	c.mech = trackedMechanism{m, c.state}
	return c, nil
}

// dialTimeout bounds connecting to a broker, TLS handshake included.
const dialTimeout = 10 * time.Second

// dialTLS connects to a broker with TLS, with the TLS files as they are
// now: every client dials through it, so a renewed certificate or CA
// bundle is used when they reconnect (tlsconfig.Dialer).
func (c *conn) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	return c.tls.DialContext(ctx, &net.Dialer{Timeout: dialTimeout}, network, addr)
}

// kgoOpts are the franz-go options.
func (c *conn) kgoOpts() []kgo.Opt {
	var opts []kgo.Opt
	if c.tls != nil {
		opts = append(opts, kgo.Dialer(c.dialTLS))
	}
	if c.mech != nil {
		opts = append(opts, kgo.SASL(c.mech))
	}
	return opts
}

// kafkaGoSASL is the SASL mechanism for kafka-go's Transport and Dialer.
func (c *conn) kafkaGoSASL() kafkasasl.Mechanism {
	if c.mech == nil {
		return nil
	}
	return saslAdapter{c.mech}
}

// dialer is the kafka-go Dialer of a consumer group reader.
func (c *conn) dialer() *kafka.Dialer {
	d := &kafka.Dialer{Timeout: dialTimeout, DualStack: true, SASLMechanism: c.kafkaGoSASL()}
	if c.tls != nil {
		d.DialFunc = c.dialTLS
	}
	return d
}

// saslState remembers whether the last SASL exchange of a client finished.
// Some brokers (kfake, and others on some errors) answer refused credentials
// by closing the connection: the client then sees only an EOF, which means
// a refused login when it happens in the middle of an exchange.
type saslState struct{ inExchange atomic.Bool }

type trackedMechanism struct {
	sasl.Mechanism
	st *saslState
}

func (m trackedMechanism) Authenticate(ctx context.Context, host string) (sasl.Session, []byte, error) {
	sess, first, err := m.Mechanism.Authenticate(ctx, host)
	if err != nil {
		return nil, nil, err
	}
	m.st.inExchange.Store(true)
	return trackedSession{sess, m.st}, first, nil
}

type trackedSession struct {
	sasl.Session
	st *saslState
}

func (s trackedSession) Challenge(b []byte) (bool, []byte, error) {
	done, msg, err := s.Session.Challenge(b)
	if done && err == nil {
		s.st.inExchange.Store(false)
	}
	return done, msg, err
}

// saslAdapter runs a franz-go SASL mechanism as a kafka-go one: both clients
// then authenticate through the same implementation. The two interfaces
// differ only in naming, and in that franz-go may return a last message with
// done, which none of the mechanisms used here does.
type saslAdapter struct{ m sasl.Mechanism }

func (a saslAdapter) Name() string { return a.m.Name() }

func (a saslAdapter) Start(ctx context.Context) (kafkasasl.StateMachine, []byte, error) {
	host := ""
	if md := kafkasasl.MetadataFromContext(ctx); md != nil {
		host = fmt.Sprintf("%s:%d", md.Host, md.Port)
	}
	sess, first, err := a.m.Authenticate(ctx, host)
	if err != nil {
		return nil, nil, err
	}
	return saslSession{sess}, first, nil
}

type saslSession struct{ s sasl.Session }

func (s saslSession) Next(_ context.Context, challenge []byte) (bool, []byte, error) {
	return s.s.Challenge(challenge)
}

// checkTimeout bounds Check: long enough for a slow managed cluster's TLS
// handshake and SASL exchange, short enough that a role with a wrong setting
// fails at start within seconds.
const checkTimeout = 10 * time.Second

// Check connects to the brokers with the configured security and reads the
// cluster's metadata, so that a role with a wrong password, an untrusted
// certificate or a TLS/plaintext mismatch fails at start with an error
// naming the cause. Roles call it before anything else talks to Kafka.
func Check(ctx context.Context, c Config) error {
	if len(c.Brokers) == 0 {
		return ErrNoBrokers
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	p, err := NewProber(c)
	if err != nil {
		return err
	}
	defer p.Close()
	return p.Probe(ctx)
}

// Prober checks that the brokers answer, for a role's /readyz: a consumer
// role has no other way to tell that it lost Kafka while no records flow.
type Prober struct {
	brokers   []string
	topic     string
	cn        *conn
	client    *kafka.Client
	contacted atomic.Bool // a Probe succeeded
}

// NewProber prepares a Prober; it connects on the first Probe.
func NewProber(c Config) (*Prober, error) {
	if len(c.Brokers) == 0 {
		return nil, ErrNoBrokers
	}
	cn, err := c.Security.build()
	if err != nil {
		return nil, err
	}
	return &Prober{brokers: c.Brokers, topic: c.Topic(TopicEvents), cn: cn, client: newClient(c.Brokers, cn, 5*time.Second)}, nil
}

// Probe reads the events topic's metadata the first time and asks a broker
// for its API versions after that (kafka-go answers metadata from a cache
// that outlives the brokers); its error names the likely cause.
func (p *Prober) Probe(ctx context.Context) error {
	var err error
	if !p.contacted.Load() {
		_, err = p.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{p.topic}})
		p.contacted.Store(err == nil)
	} else {
		var res *kafka.ApiVersionsResponse
		if res, err = p.client.ApiVersions(ctx, &kafka.ApiVersionsRequest{}); err == nil {
			err = res.Error
		}
	}
	if err != nil {
		return p.cn.explain(p.brokers, err)
	}
	return nil
}

// Close closes the Prober's connections.
func (p *Prober) Close() { closeClient(p.client) }

// authRefused reports whether err means the brokers refused the credentials.
func (c *conn) authRefused(err error) bool {
	return errors.Is(err, kafka.SASLAuthenticationFailed) ||
		c.mech != nil && c.state.inExchange.Load() && closedEarly(err)
}

// explain wraps a failure to talk to the brokers with its likely cause.
func (c *conn) explain(brokers []string, err error) error {
	s := &c.sec
	where := "kafka at " + strings.Join(brokers, ",")
	switch {
	case c.authRefused(err):
		return fmt.Errorf("%s: %w: %s for user %q failed: check kafka.sasl.username and kafka.sasl.password (%v)", where, ErrKafkaAuth, s.SASLMechanism, s.SASLUsername, err)
	case errors.Is(err, kafka.UnsupportedSASLMechanism):
		return fmt.Errorf("%s: the brokers do not offer SASL mechanism %s: check kafka.sasl.mechanism (%w)", where, s.SASLMechanism, err)
	case errors.Is(err, kafka.IllegalSASLState):
		return fmt.Errorf("%s: the brokers do not expect SASL on this listener: unset kafka.sasl.mechanism or use their SASL port (%w)", where, err)
	}
	if hint := tlsconfig.Hint(err, "kafka.tls", s.TLS); hint != "" {
		if s.SASLMechanism == "" && closedEarly(err) {
			hint += ", or, if it requires SASL, set kafka.sasl.mechanism"
		}
		return fmt.Errorf("%s: %w (%s)", where, err, hint)
	}
	if s.SASLMechanism == "" && closedEarly(err) {
		return fmt.Errorf("%s: %w (the broker closed the connection: if it requires SASL, set kafka.sasl.mechanism)", where, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// permanent reports whether a failure to talk to the brokers is one that
// retrying cannot fix: refused credentials or an untrusted certificate.
func (c *conn) permanent(err error) bool {
	return c.authRefused(err) || errors.Is(err, kafka.UnsupportedSASLMechanism) ||
		errors.Is(err, kafka.IllegalSASLState) || tlsconfig.Permanent(err)
}

func closedEarly(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// closeClient closes the idle connections of a kafka-go client's transport.
func closeClient(c *kafka.Client) {
	if t, ok := c.Transport.(*kafka.Transport); ok {
		t.CloseIdleConnections()
	}
}
