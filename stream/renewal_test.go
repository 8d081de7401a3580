package stream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/leadstream/leadstream/internal/testsvc"
)

// dropListener remembers the connections it accepted, so a test can cut
// them all: the clients must then reconnect (a broker restart, a load
// balancer's idle timeout).
type dropListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *dropListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *dropListener) dropAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
	l.conns = nil
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// As a Kubernetes Secret volume does: a new file renamed over the old.
	tmp := to + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

// A client certificate renewed in its files (cert-manager renewing the
// Secret a role mounts) is the one the clients present when they reconnect:
// after the old certificate expired, the producer (franz-go), the consumer's
// group reader (kafka-go's Dialer) and the metadata client of /readyz
// (kafka-go's Transport) all work again without a restart.
func TestRenewedClientCertificate(t *testing.T) {
	ca := testsvc.NewCA(t, "kafka")
	srv := ca.Server(t, "broker")
	old, renewed := ca.Client(t, "leadstream"), ca.Client(t, "leadstream")
	// The old certificate's expiry is the broker refusing it from a moment
	// the test sets, not a clock: a slow machine's setup outlasting a short
	// NotAfter must not fail the test before the renewal.
	var expired atomic.Bool
	srvTLS := testsvc.ServerTLS(srv, ca)
	srvTLS.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if expired.Load() && len(raw) > 0 && bytes.Equal(raw[0], old.Cert.Certificate[0]) {
			return x509.CertificateInvalidError{Reason: x509.Expired, Detail: "the old client certificate"}
		}
		return nil
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	copyFile(t, old.CertFile, certFile)
	copyFile(t, old.KeyFile, keyFile)

	r := startRig(t, srvTLS, "renew", Security{TLS: true, CAFile: ca.CAFile, CertFile: certFile, KeyFile: keyFile})

	// The renewal: new files, then the old certificate expires and every
	// connection is cut.
	copyFile(t, renewed.CertFile, certFile)
	copyFile(t, renewed.KeyFile, keyFile)
	expired.Store(true)
	r.ln.dropAll()
	r.afterRenewal(t)
}

// A CA bundle renewed in its file is the one the clients verify the brokers
// with when they reconnect: the brokers moved to a certificate of a new CA
// (the bundle holding the old and the new one), and the producer, a
// consumer's group reader and the metadata client of /readyz follow without
// a restart.
func TestRenewedCABundle(t *testing.T) {
	oldCA, newCA := testsvc.NewCA(t, "kafka-2025"), testsvc.NewCA(t, "kafka-2026")
	oldSrv, newSrv := oldCA.Server(t, "broker"), newCA.Server(t, "broker")
	var serving atomic.Pointer[tls.Certificate]
	serving.Store(&oldSrv.Cert)
	srvTLS := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return serving.Load(), nil }}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	copyFile(t, oldCA.CAFile, caFile)

	r := startRig(t, srvTLS, "renewca", Security{TLS: true, CAFile: caFile})

	// The rotation: the bundle gets the new CA, then the brokers present
	// the new certificate and every connection is cut.
	bundle := filepath.Join(t.TempDir(), "bundle.crt")
	oldPEM, _ := os.ReadFile(oldCA.CAFile)
	newPEM, _ := os.ReadFile(newCA.CAFile)
	if err := os.WriteFile(bundle, append(oldPEM, newPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	copyFile(t, bundle, caFile)
	serving.Store(&newSrv.Cert)
	r.ln.dropAll()
	r.afterRenewal(t)
}

// rig is a one-broker TLS cluster whose connections a test can cut, with
// the three kinds of client leadstream has connected to it: the metadata
// client of /readyz, a producer and a consumer that got a first record.
type rig struct {
	ctx      context.Context
	ln       *dropListener
	prober   *Prober
	producer *Producer
	consumed func(key string, within time.Duration)
}

// startRig starts the cluster with srvTLS and the clients with sec, topics
// and group named after name; all are closed when the test ends.
func startRig(t *testing.T, srvTLS *tls.Config, name string, sec Security) *rig {
	t.Helper()
	r := &rig{ln: &dropListener{}}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(srvTLS), kfake.SeedTopics(2, name+".events"),
		kfake.ListenFn(func(network, addr string) (net.Listener, error) {
			l, err := net.Listen(network, addr)
			r.ln.Listener = l
			return r.ln, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	cfg := Config{Brokers: cluster.ListenAddrs(), TopicPrefix: name + ".", Partitions: 2, Security: sec}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	r.ctx = ctx
	if r.prober, err = NewProber(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.prober.Close() })
	if err := r.prober.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	if r.producer, err = NewProducer(ctx, cfg.Producer(TopicEvents), quiet, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.producer.Close() })
	consumed, stop := consumeKeys(ctx, t, cfg, name)
	t.Cleanup(stop)
	r.consumed = consumed
	if err := r.producer.Produce(ctx, []Record{{Key: []byte("before"), Value: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	consumed("before", 30*time.Second)
	return r
}

// consumeKeys runs a consumer of cfg's events topic in group; consumed
// waits until it got a record with key.
func consumeKeys(ctx context.Context, t *testing.T, cfg Config, group string) (consumed func(key string, within time.Duration), stop func()) {
	t.Helper()
	cons, err := NewConsumer(ConsumerConfig{Brokers: cfg.Brokers, Security: cfg.Security, Group: group, Topics: []string{cfg.Topic(TopicEvents)},
		MaxWait: 20 * time.Millisecond}, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 100)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- cons.Run(rctx, func(_ context.Context, b []Message) error {
			for _, m := range b {
				got <- string(m.Key)
			}
			return nil
		})
	}()
	consumed = func(key string, within time.Duration) {
		t.Helper()
		timeout := time.After(within)
		for {
			select {
			case k := <-got:
				if k == key {
					return
				}
			case <-timeout:
				t.Fatalf("record %q not consumed within %s", key, within)
			}
		}
	}
	return consumed, func() {
		cancel()
		<-done
	}
}

// afterRenewal checks that every client works again once the connections
// were cut: the metadata client, the producer, and the consumer.
func (r *rig) afterRenewal(t *testing.T) {
	t.Helper()
	ctx, prober, p, consumed := r.ctx, r.prober, r.producer, r.consumed
	var lastErr error
	deadline := time.Now().Add(15 * time.Second)
	for lastErr = prober.Probe(ctx); lastErr != nil && time.Now().Before(deadline); lastErr = prober.Probe(ctx) {
		time.Sleep(200 * time.Millisecond)
	}
	if lastErr != nil {
		t.Errorf("/readyz's metadata client after the renewal: %v", lastErr)
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
		lastErr = p.Produce(pctx, []Record{{Key: []byte("after"), Value: []byte("2")}})
		pcancel()
		if lastErr == nil || time.Now().After(deadline) {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("producing after the renewal: %v", lastErr)
	}
	consumed("after", 30*time.Second)
}
