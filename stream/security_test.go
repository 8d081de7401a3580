package stream

import (
	"context"
	"errors"
	"flag"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/testsvc"
)

// Both clients (franz-go producing, kafka-go consuming and creating topics)
// work over TLS with a client certificate and SASL, for every mechanism.
func TestSecureProduceConsume(t *testing.T) {
	ca := testsvc.NewCA(t, "kafka")
	srv := ca.Server(t, "broker")
	client := ca.Client(t, "leadstream")
	for _, mech := range []string{SASLPlain, SASLScramSHA256, SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, brokers := testsvc.SecureKafka(t, testsvc.ServerTLS(srv, ca), mech, "ls-user", "ls-pass-"+mech)
			cfg := Config{Brokers: brokers, TopicPrefix: "sec.", Partitions: 2, ReplicationFactor: -1, Retention: time.Hour,
				Security: Security{TLS: true, CAFile: ca.CAFile, CertFile: client.CertFile, KeyFile: client.KeyFile,
					SASLMechanism: mech, SASLUsername: "ls-user", SASLPassword: "ls-pass-" + mech}}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			if err := Check(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			if err := EnsureTopics(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			p, err := NewProducer(ctx, ProducerConfig{Brokers: brokers, Security: cfg.Security, Topic: cfg.Topic(TopicEvents)}, quiet, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			recs := []Record{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Value: []byte("2")}, {Key: []byte("c"), Value: []byte("3")}}
			if err := p.Produce(ctx, recs); err != nil {
				t.Fatal(err)
			}
			cons, err := NewConsumer(ConsumerConfig{Brokers: brokers, Security: cfg.Security, Group: "g", Topics: []string{cfg.Topic(TopicEvents)},
				MaxWait: 20 * time.Millisecond}, quiet, nil)
			if err != nil {
				t.Fatal(err)
			}
			rctx, stop := context.WithCancel(ctx)
			var (
				mu  sync.Mutex
				got = map[string]string{}
			)
			done := make(chan error, 1)
			go func() {
				done <- cons.Run(rctx, func(_ context.Context, b []Message) error {
					mu.Lock()
					defer mu.Unlock()
					for _, m := range b {
						got[string(m.Key)] = string(m.Value)
					}
					if len(got) == len(recs) {
						stop()
					}
					return nil
				})
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-ctx.Done():
				t.Fatal("records not consumed over TLS + SASL")
			}
			stop()
			for _, r := range recs {
				if got[string(r.Key)] != string(r.Value) {
					t.Fatalf("consumed %v, want the 3 produced records", got)
				}
			}
		})
	}
}

// A wrong setting fails Check and NewProducer within seconds, with an error
// that names Kafka, the brokers and the cause.
func TestSecurityFailures(t *testing.T) {
	ca := testsvc.NewCA(t, "kafka")
	other := testsvc.NewCA(t, "other")
	srv := ca.Server(t, "broker")
	client := ca.Client(t, "leadstream")
	_, secure := testsvc.SecureKafka(t, testsvc.ServerTLS(srv, ca), SASLScramSHA256, "ls", "right-password", "f.events")
	_, tlsOnly := testsvc.SecureKafka(t, testsvc.ServerTLS(srv, nil), "", "", "", "f.events")
	_, saslOnly := testsvc.SecureKafka(t, nil, SASLScramSHA256, "ls", "right-password", "f.events")
	plain := newCluster(t, "f.events").ListenAddrs()

	good := Security{TLS: true, CAFile: ca.CAFile, CertFile: client.CertFile, KeyFile: client.KeyFile,
		SASLMechanism: SASLScramSHA256, SASLUsername: "ls", SASLPassword: "right-password"}
	f := func(name string, brokers []string, change func(*Security), want ...string) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sec := good
			change(&sec)
			cfg := Config{Brokers: brokers, TopicPrefix: "f.", Partitions: 1, Security: sec}
			start := time.Now()
			err := Check(context.Background(), cfg)
			took := time.Since(start)
			if err == nil {
				t.Fatal("Check succeeded")
			}
			if took > 12*time.Second {
				t.Errorf("Check took %s to fail", took)
			}
			msg := err.Error()
			for _, w := range append([]string{"kafka at " + brokers[0]}, want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "right-password") || strings.Contains(msg, "wrong-password") {
				t.Errorf("error %q shows the password", msg)
			}
			start = time.Now()
			p, err := NewProducer(context.Background(), ProducerConfig{Brokers: brokers, Security: sec, Topic: "f.events", Timeout: 5 * time.Second}, quiet, nil)
			if err == nil {
				p.Close()
				t.Fatal("NewProducer succeeded")
			}
			if testing.Verbose() {
				t.Logf("Check: %v (%s)\nNewProducer: %v", msg, took, err)
			}
			if took := time.Since(start); took > 12*time.Second {
				t.Errorf("NewProducer took %s to fail: %v", took, err)
			}
		})
	}
	f("wrong password", secure, func(s *Security) { s.SASLPassword = "wrong-password" },
		"SASL", `user "ls"`, "kafka.sasl.password")
	f("unknown user", secure, func(s *Security) { s.SASLUsername = "nobody" }, "kafka.sasl.username")
	f("untrusted certificate", secure, func(s *Security) { s.CAFile = other.CAFile },
		"not signed by a CA leadstream trusts", "kafka.tls.ca-file")
	f("no client certificate", secure, func(s *Security) { s.CertFile, s.KeyFile = "", "" },
		"client certificate", "kafka.tls.cert-file")
	f("tls to a plaintext listener", plain, func(s *Security) { s.SASLMechanism, s.SASLUsername, s.SASLPassword = "", "", "" },
		"kafka.tls")
	f("plaintext to a tls listener", tlsOnly, func(s *Security) {
		*s = Security{}
	}, "expects TLS", "kafka.tls=true")
	f("no sasl where required", saslOnly, func(s *Security) { *s = Security{} }, "requires SASL", "kafka.sasl.mechanism")
	f("sasl where none is offered", plain, func(s *Security) { s.TLS, s.CAFile, s.CertFile, s.KeyFile = false, "", "", "" }, "kafka.sasl")
}

func TestSecurityValidate(t *testing.T) {
	ca := testsvc.NewCA(t, "v")
	f := func(s Security, want string) {
		t.Helper()
		err := s.Validate()
		switch {
		case want == "" && err != nil:
			t.Errorf("%+v: %v", s, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%+v: error %v, want one containing %q", s, err, want)
		}
	}
	f(Security{}, "")
	f(Security{TLS: true}, "")
	f(Security{TLS: true, CAFile: ca.CAFile}, "")
	f(Security{CAFile: ca.CAFile}, "kafka.tls is false")
	f(Security{TLS: true, CAFile: "/nonexistent/ca.pem"}, "kafka.tls.ca-file")
	f(Security{TLS: true, CAFile: ca.CAFile, CertFile: ca.CAFile}, "kafka.tls.cert-file and kafka.tls.key-file go together")
	f(Security{SASLMechanism: "GSSAPI", SASLUsername: "u", SASLPassword: "p"}, "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	f(Security{SASLMechanism: "scram-sha-512", SASLUsername: "u", SASLPassword: "p"}, "")
	f(Security{SASLMechanism: SASLPlain, SASLUsername: "u"}, "kafka.sasl.password")
	f(Security{SASLUsername: "u", SASLPassword: "p"}, "kafka.sasl.mechanism is empty")
}

// The password flag is a secret: -h shows no default and never the value.
func TestSASLPasswordIsSecret(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-kafka.sasl.password", "s3cret"}); err != nil {
		t.Fatal(err)
	}
	f := fs.Lookup("kafka.sasl.password")
	if c.Security.SASLPassword != "s3cret" || f.Value.String() != "" || f.DefValue != "" {
		t.Fatalf("password %q, flag shows %q (default %q)", c.Security.SASLPassword, f.Value.String(), f.DefValue)
	}
	if !errors.Is(Check(context.Background(), Config{}), ErrNoBrokers) {
		t.Fatal("Check without brokers")
	}
}

// SASL PLAIN without TLS is valid (some private clusters run it) but sends
// the password in clear: the roles warn at start. SCRAM and PLAIN over TLS
// give no warning.
func TestSecurityWarnings(t *testing.T) {
	for _, c := range []struct {
		s    Security
		warn bool
	}{
		{Security{SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: "p"}, true},
		{Security{SASLMechanism: "plain", SASLUsername: "u", SASLPassword: "p"}, true},
		{Security{SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: "p", TLS: true}, false},
		{Security{SASLMechanism: "SCRAM-SHA-512", SASLUsername: "u", SASLPassword: "p"}, false},
		{Security{}, false},
	} {
		if w := c.s.Warnings(); (len(w) > 0) != c.warn || (c.warn && !strings.Contains(w[0], "in clear")) {
			t.Errorf("%s tls=%v: warnings %q, want a warning: %v", c.s.SASLMechanism, c.s.TLS, w, c.warn)
		}
	}
}
