package notify

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// smtpServer is a small SMTP server for the tests: EHLO, STARTTLS (with a
// certificate of its own CA), AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP,
// QUIT. It refuses plain-text AUTH, answers the first MAIL of each session
// number in failFirst with 451 (a transient failure), and keeps every
// message it accepted.
type smtpServer struct {
	addr   string
	caFile string
	user   string
	pass   string

	mu        sync.Mutex
	messages  []string // accepted messages (DATA), as received
	sessions  int
	failFirst map[int]bool // session numbers whose MAIL gets 451
	authed    int
	// rcptReply, when set, answers RCPT TO (its argument is the address);
	// "" means 250 ok.
	rcptReply func(to string) string
	helos     []string // the arguments of EHLO and HELO, as received
}

func startSMTP(t *testing.T) *smtpServer {
	t.Helper()
	cert, caPEM := testCert(t)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{addr: ln.Addr().String(), caFile: ca, user: "notifier", pass: "smtp-pass", failFirst: map[int]bool{}}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.session(c, tlsCfg) })
		}
	})
	return s
}

func (s *smtpServer) session(c net.Conn, tlsCfg *tls.Config) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	s.mu.Lock()
	s.sessions++
	n := s.sessions
	s.mu.Unlock()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	say := func(l string) { w.WriteString(l + "\r\n"); w.Flush() }
	say("220 test ESMTP")
	secure, authed := false, false
	var rcpts int
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch verb {
		case "EHLO", "HELO":
			s.mu.Lock()
			s.helos = append(s.helos, strings.TrimSpace(strings.TrimPrefix(line, line[:len(verb)])))
			s.mu.Unlock()
			if secure {
				say("250-test\r\n250 AUTH PLAIN")
			} else {
				say("250-test\r\n250 STARTTLS")
			}
		case "STARTTLS":
			say("220 go ahead")
			tc := tls.Server(c, tlsCfg)
			if tc.Handshake() != nil {
				return
			}
			c, secure = tc, true
			r, w = bufio.NewReader(c), bufio.NewWriter(c)
		case "AUTH":
			parts := strings.Fields(line)
			if !secure || len(parts) < 3 || parts[1] != "PLAIN" {
				say("538 encryption required")
				continue
			}
			b, _ := base64.StdEncoding.DecodeString(parts[2])
			if string(b) != "\x00"+s.user+"\x00"+s.pass {
				say("535 bad credentials")
				continue
			}
			authed = true
			s.mu.Lock()
			s.authed++
			s.mu.Unlock()
			say("235 ok")
		case "MAIL":
			s.mu.Lock()
			fail := s.failFirst[n]
			s.mu.Unlock()
			switch {
			case !authed:
				say("530 authentication required")
			case fail:
				say("451 try again later")
			default:
				rcpts = 0
				say("250 ok")
			}
		case "RCPT":
			s.mu.Lock()
			reply := s.rcptReply
			s.mu.Unlock()
			if reply != nil {
				to := strings.Trim(strings.TrimPrefix(strings.TrimPrefix(line, "RCPT TO:"), "rcpt to:"), "<> ")
				if r := reply(to); r != "" {
					say(r)
					continue
				}
			}
			rcpts++
			say("250 ok")
		case "DATA":
			if rcpts == 0 {
				say("503 no recipients")
				continue
			}
			say("354 go ahead")
			var msg strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				msg.WriteString(strings.TrimPrefix(l, "."))
			}
			s.mu.Lock()
			s.messages = append(s.messages, msg.String())
			s.mu.Unlock()
			say("250 queued")
		case "RSET", "NOOP":
			say("250 ok")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("502 unknown command")
		}
	}
}

func (s *smtpServer) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.messages...)
}

// testCert makes a CA and a certificate for 127.0.0.1 signed by it.
func testCert(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

// EHLO names the client as RFC 5321 asks — a fully qualified host name or an
// address literal — not with a bare word, which servers that check refuse
// (Postfix's reject_non_fqdn_helo_hostname and the like).
func TestEHLONamesTheClientProperly(t *testing.T) {
	for _, c := range []struct {
		host string
		ok   bool
	}{
		{"mail1.acme.example", true}, {"mail1.acme.example.", true}, {"vm", false}, {"leadstream", false},
		{"a..b", false}, {"-a.b", false}, {"a_b.example", false}, {"", false},
	} {
		if got := validHeloHost(c.host); got != c.ok {
			t.Errorf("validHeloHost(%q) = %v, want %v", c.host, got, c.ok)
		}
	}

	smtp := startSMTP(t)
	host, port := splitAddr(t, smtp.addr)
	s := &emailSender{d: &Destination{Name: "mail", Type: TypeEmail, From: "leadstream@acme.example", To: []string{"sales@acme.example"},
		SMTP: SMTPConfig{Host: host, Port: port, StartTLS: StartTLSRequired, Username: smtp.user, Password: smtp.pass, RootCAs: mustPool(t, smtp.caFile)}}, agent: "test"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if o := s.send(ctx, probeRecord(t), 1); !o.ok {
		t.Fatalf("delivery failed: %+v", o)
	}
	smtp.mu.Lock()
	helos := slices.Clone(smtp.helos)
	smtp.mu.Unlock()
	if len(helos) == 0 {
		t.Fatal("the server saw no EHLO")
	}
	for _, h := range helos {
		if h != "[127.0.0.1]" && !validHeloHost(h) {
			t.Errorf("EHLO %q: neither a fully qualified name nor an address literal", h)
		}
	}
	t.Logf("EHLO %v", helos)
}
