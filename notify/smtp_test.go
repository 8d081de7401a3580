package notify

import (
	"bufio"
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
