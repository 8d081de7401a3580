package notify

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/stream"
)

// logBuffer collects a logger's output (safe for concurrent writes).
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runWithLog runs a notifier logging at info level into a buffer until the
// returned stop is called (or the test ends).
func (e *env) runWithLog(t *testing.T, cfg Config, dests []Destination) (*logBuffer, func()) {
	t.Helper()
	buf := &logBuffer{}
	n, err := New(cfg, dests, slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo})), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("notifier: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("notifier did not stop within 20s")
			}
		})
	}
	t.Cleanup(stop)
	return buf, stop
}

// An SMTP server names the address it refuses ("550 5.1.1 <ops@…>:
// Recipient address rejected", Postfix's wording), and a dead receiver's
// connection error names its address: the dead letter and the
// notifications table keep the whole reason, the info-level log must not
// carry e-mail addresses or IP addresses (personal data).
func TestDeadLetterLogWithoutPersonalData(t *testing.T) {
	e := newEnv(t)
	smtp := startSMTP(t)
	smtp.rcptReply = func(to string) string {
		if to == "ops@acme.example" {
			return "550 5.1.1 <ops@acme.example>: Recipient address rejected: User unknown in virtual mailbox table"
		}
		return ""
	}
	host, port := splitAddr(t, smtp.addr)
	mail := Destination{Name: "mail", Type: TypeEmail, From: "leadstream@acme.example", To: []string{"sales@acme.example", "ops@acme.example"},
		SMTP: SMTPConfig{Host: host, Port: port, StartTLS: StartTLSRequired, Username: smtp.user, Password: smtp.pass, RootCAs: mustPool(t, smtp.caFile)}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there: connection refused
	cfg := e.config()
	cfg.MaxAge = 2 * time.Second
	e.produce(t, stream.TopicMQL, mql(1, "default"))
	logs, stop := e.runWithLog(t, cfg, []Destination{mail, hook("crm", "http://"+closed+"/hook")})
	var reasons []string
	testsvc.Eventually(t, "both destinations dead-lettered the record", 60*time.Second, 200*time.Millisecond, func() (bool, string) {
		reasons = reasons[:0]
		for _, d := range e.deadLetters(t) {
			reasons = append(reasons, fmt.Sprint(d["reason"]))
		}
		return len(reasons) == 2, strings.Join(reasons, "; ")
	})
	stop()
	all := strings.Join(reasons, "\n")
	if !strings.Contains(all, "<ops@acme.example>: Recipient address rejected") || !strings.Contains(all, closed) {
		t.Errorf("the dead letters lost the reasons' details:\n%s", all)
	}
	var lines []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "notification dead-lettered") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("want 2 dead-letter log lines, got:\n%s", logs.String())
	}
	for _, l := range lines {
		if strings.Contains(l, "@acme.example") || strings.Contains(l, "127.0.0.1") {
			t.Errorf("personal data (an e-mail or IP address) logged at info level or above:\n%s", l)
		}
	}
}

func TestRedactAddresses(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := redactAddresses(in); got != want {
			t.Errorf("redactAddresses(%q) = %q, want %q", in, got, want)
		}
	}
	f("SMTP RCPT TO: 550 5.1.1 <ops@acme.example>: Recipient address rejected", "SMTP RCPT TO: 550 5.1.1 <<email>>: Recipient address rejected")
	f("connection: dial tcp 203.0.113.7:443: connect: connection refused", "connection: dial tcp <ip>:443: connect: connection refused")
	f("connection: dial tcp [2001:db8::1]:443: i/o timeout", "connection: dial tcp [<ip>]:443: i/o timeout")
	f("connection: dial tcp 2001:db8::1: refused", "connection: dial tcp <ip>: refused")
	f("SMTP DATA: 451 4.7.1 Client host [198.51.100.9] blocked, mail from a.b@c.example", "SMTP DATA: 451 4.7.1 Client host [<ip>] blocked, mail from <email>")
	f(`notify destination "crm": not delivered within notify.max-age (24h0m0s) after 61 attempts; last: HTTP 503 Service Unavailable`,
		`notify destination "crm": not delivered within notify.max-age (24h0m0s) after 61 attempts; last: HTTP 503 Service Unavailable`)
	f("SMTP RCPT TO: 550 5.1.1 user unknown at 10:15:00", "SMTP RCPT TO: 550 5.1.1 user unknown at 10:15:00")
	f("HTTP 410 Gone (not retried)", "HTTP 410 Gone (not retried)")
}

// A lead id is whatever a visitor sent (the collector takes 32 KB per
// event): the Subject made of it must stay a header of lines of at most
// 998 characters (RFC 5322 2.1.1; Exim refuses longer lines, "message has
// lines too long for transport"), forge no header, and still read as the
// summary line.
func TestMailSubjectOfLongLeadID(t *testing.T) {
	s := &emailSender{d: &Destination{From: "leadstream@acme.example", To: []string{"sales@acme.example"}}, agent: "test"}
	f := func(lead, wantStart string) {
		t.Helper()
		m := mql(1, "default")
		m.LeadID = lead
		b, _ := json.Marshal(m)
		rec, err := decodeRecord(KindMQL, b)
		if err != nil {
			t.Fatal(err)
		}
		raw := s.message(rec, time.Now())
		head, _, _ := strings.Cut(string(raw), "\r\n\r\n")
		for _, l := range strings.Split(head, "\r\n") {
			if len(l) > 998 {
				t.Errorf("lead id of %d bytes: a header line of %d characters: %.80s…", len(lead), len(l), l)
			}
		}
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("lead id of %d bytes: unreadable message: %v", len(lead), err)
		}
		if len(msg.Header["Bcc"]) > 0 || len(msg.Header["Subject"]) != 1 {
			t.Errorf("lead id of %d bytes: forged headers %v", len(lead), msg.Header)
		}
		subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if err != nil || !strings.HasPrefix(subj, wantStart) || utf8.RuneCountInString(subj) > maxSubjectRunes {
			t.Errorf("lead id of %d bytes: subject %q (%v), want it to start %q and be at most %d characters", len(lead), subj, err, wantStart, maxSubjectRunes)
		}
	}
	f("lead-42@acme.example", "MQL: lead lead-42@acme.example scored 101 (threshold 100, model default)")
	f(strings.Repeat("é", 128)+"\r\nBcc: evil@example.com", "MQL: lead "+strings.Repeat("é", 20))
	f(strings.Repeat("a", 2000), "MQL: lead "+strings.Repeat("a", 100))
	f(strings.Repeat("日本", 3000), "MQL: lead 日本日本")

	// The To header lists every recipient: folded, it stays within the
	// bound too, and reads as the list.
	var to []string
	for i := range 60 {
		to = append(to, fmt.Sprintf("sales-team-member-%02d@acme.example", i))
	}
	s.d.To = to
	raw := s.message(probeRecord(t), time.Now())
	head, _, _ := strings.Cut(string(raw), "\r\n\r\n")
	for _, l := range strings.Split(head, "\r\n") {
		if len(l) > 998 {
			t.Errorf("60 recipients: a header line of %d characters", len(l))
		}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := msg.Header.AddressList("To"); err != nil || len(got) != 60 || got[59].Address != to[59] {
		t.Errorf("To of 60 recipients read as %v (%v)", got, err)
	}
}

func probeRecord(t *testing.T) *record {
	t.Helper()
	b, _ := json.Marshal(mql(1, "default"))
	rec, err := decodeRecord(KindMQL, b)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// An SMTP server that answers EHLO with a reply that never ends (a broken
// or hostile relay): net/textproto keeps every line of a reply in memory,
// so without a bound the notifier took it all in until the attempt's
// timeout (at loopback speed, gigabytes: the whole process, every
// destination with it, killed for its memory). The session stops reading
// at a bound, and the attempt fails with a reason saying so.
func TestSMTPEndlessReplyBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const flood = 64 << 20
	wrote := make(chan int, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			wrote <- 0
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		r := bufio.NewReader(c)
		_, _ = c.Write([]byte("220 flood ESMTP\r\n"))
		_, _ = r.ReadString('\n') // EHLO
		line := []byte("250-" + strings.Repeat("X", 1018) + "\r\n")
		n := 0
		for n < flood {
			w, err := c.Write(line)
			n += w
			if err != nil {
				break
			}
		}
		wrote <- n
	}()
	host, port := splitAddr(t, ln.Addr().String())
	s := &emailSender{d: &Destination{Name: "mail", Type: TypeEmail, From: "leadstream@acme.example", To: []string{"sales@acme.example"},
		SMTP: SMTPConfig{Host: host, Port: port, StartTLS: StartTLSOff}}, agent: "test"}
	m := mql(1, "default")
	b, _ := json.Marshal(m)
	rec, _ := decodeRecord(KindMQL, b)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := s.send(ctx, rec, 1)
	n := <-wrote
	if o.ok || !strings.Contains(o.err, "SMTP EHLO") || !strings.Contains(o.err, "longer than") {
		t.Errorf("attempt against an endless EHLO reply: %+v, want a failed EHLO naming the bound", o)
	}
	if n >= flood {
		t.Errorf("the notifier read the whole %d MiB reply", flood>>20)
	}
}

// smtp.host is a host name or an IP address: one with a port (the
// host:port form of Grafana's and Alertmanager's SMTP settings), a scheme
// or nothing at all passed the check, and then every message was retried
// for notify.max-age against an address that cannot exist (or, empty,
// went to port 587 of the notifier's own machine).
func TestParseFileSMTPHost(t *testing.T) {
	f := func(host, want string) {
		t.Helper()
		ds, err := parseFile("n.yaml", []byte("destinations:\n  - {name: m, type: email, smtp: {host: '"+host+"'}, from: x@y.z, to: [a@b.c]}\n"), testResolver)
		switch {
		case want == "" && err != nil:
			t.Errorf("host %q: %v", host, err)
		case want == "" && ds[0].SMTP.Host != host:
			t.Errorf("host %q read as %q", host, ds[0].SMTP.Host)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("host %q: error %v, want %q", host, err, want)
		}
	}
	f("smtp.acme.example", "")
	f("localhost", "")
	f("192.0.2.25", "")
	f("2001:db8::25", "")
	f("smtp.acme.example:587", "n.yaml:2: destinations[0].smtp.host: want a host name or IP address")
	f("smtp://smtp.acme.example", "destinations[0].smtp.host: want a host name or IP address")
	f("[2001:db8::25]", "destinations[0].smtp.host: want a host name or IP address")
	f("", "destinations[0].smtp.host: want a host name or IP address")
	f("smtp acme", "destinations[0].smtp.host: want a host name or IP address")
}

// A receiver's words go into every attempt's error (the row in
// ClickHouse, the last outcome each retrying record keeps, the recorder's
// queue of up to 20,000 rows): a status line of megabytes (net/http takes
// 10 MB of header) or an SMTP reply of a thousand lines made every attempt
// carry it all — one hostile destination could take the process's memory.
// The error keeps its start, bounded.
func TestAttemptErrorBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		r := bufio.NewReader(c)
		for {
			l, err := r.ReadString('\n')
			if err != nil || l == "\r\n" {
				break
			}
		}
		_, _ = c.Write([]byte("HTTP/1.1 503 Service Unavailable " + strings.Repeat("x", 4<<20) + "\r\nContent-Length: 0\r\n\r\n"))
		_, _ = io.Copy(io.Discard, r)
	}()
	m := mql(1, "default")
	b, _ := json.Marshal(m)
	rec, _ := decodeRecord(KindMQL, b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := hook("crm", "http://"+ln.Addr().String()+"/hook")
	o := newWebSender(&d, 1, "test").send(ctx, rec, 1)
	if o.status != 503 || !strings.HasPrefix(o.err, "HTTP 503 Service Unavailable xxx") || len(o.err) > maxErrorText {
		t.Errorf("a 4 MiB status line: status %d, error of %d bytes starting %.60q; want 503 and at most %d bytes", o.status, len(o.err), o.err, maxErrorText)
	}

	smtp := startSMTP(t)
	smtp.rcptReply = func(string) string {
		return strings.Repeat("550-"+strings.Repeat("y", 500)+"\r\n", 1000) + "550 no"
	}
	host, port := splitAddr(t, smtp.addr)
	s := &emailSender{d: &Destination{Name: "mail", Type: TypeEmail, From: "leadstream@acme.example", To: []string{"sales@acme.example"},
		SMTP: SMTPConfig{Host: host, Port: port, StartTLS: StartTLSRequired, Username: smtp.user, Password: smtp.pass, RootCAs: mustPool(t, smtp.caFile)}}, agent: "test"}
	o = s.send(ctx, rec, 1)
	if o.status != 550 || !o.permanent || !strings.HasPrefix(o.err, "SMTP RCPT TO: 550 yyy") || len(o.err) > maxErrorText {
		t.Errorf("a 500 KB reply: status %d, permanent %v, error of %d bytes starting %.60q; want 550 and at most %d bytes", o.status, o.permanent, len(o.err), o.err, maxErrorText)
	}
}
