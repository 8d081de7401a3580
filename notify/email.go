package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// emailSender sends one message per record through SMTP: a connection per
// message (MQLs are rare; a pooled session would add state to get wrong).
type emailSender struct {
	d     *Destination
	agent string
}

func (s *emailSender) send(ctx context.Context, r *record, _ int) outcome {
	msg := s.message(r, time.Now())
	done := make(chan outcome, 1)
	var conn net.Conn
	dialer := &net.Dialer{}
	c, err := dialer.DialContext(ctx, "tcp", s.d.SMTP.address())
	if err != nil {
		return outcome{err: netError(ctx, err)}
	}
	conn = &boundedConn{Conn: c, left: maxSMTPRead}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	go func() { done <- s.session(conn, r, msg) }()
	select {
	case o := <-done:
		return o
	case <-ctx.Done():
		conn.Close()
		if o := <-done; o.ok {
			// The server accepted the message (end of DATA) before the
			// deadline cut the QUIT short: delivered, not to be sent again.
			return o
		}
		return outcome{err: netError(ctx, ctx.Err())}
	}
}

// session speaks SMTP on conn: EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, QUIT.
func (s *emailSender) session(conn net.Conn, r *record, msg []byte) outcome {
	cfg := &s.d.SMTP
	c, err := smtp.NewClient(conn, cfg.Host)
	if err != nil {
		conn.Close()
		return smtpOutcome("greeting", err)
	}
	defer c.Close()
	if err := c.Hello(heloName(conn)); err != nil {
		return smtpOutcome("EHLO", err)
	}
	if cfg.StartTLS != StartTLSOff {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(&tls.Config{ServerName: cfg.Host, RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}); err != nil {
				return smtpOutcome("STARTTLS", err)
			}
		} else if cfg.StartTLS == StartTLSRequired {
			return outcome{permanent: true, err: "the SMTP server does not offer STARTTLS (smtp.starttls: required)"}
		}
	}
	if cfg.Username != "" {
		// PlainAuth sends the password only over TLS (or to localhost).
		if err := c.Auth(smtp.PlainAuth("", cfg.Username, cfg.Password, cfg.Host)); err != nil {
			return smtpOutcome("AUTH", err)
		}
	}
	if err := c.Mail(s.d.From); err != nil {
		return smtpOutcome("MAIL FROM", err)
	}
	for _, to := range s.d.To {
		if err := c.Rcpt(to); err != nil {
			return smtpOutcome("RCPT TO", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return smtpOutcome("DATA", err)
	}
	if _, err := w.Write(msg); err != nil {
		return smtpOutcome("DATA", err)
	}
	if err := w.Close(); err != nil {
		return smtpOutcome("DATA", err)
	}
	_ = c.Quit() // the message was accepted at the end of DATA
	return outcome{ok: true, status: 250}
}

// maxSMTPRead bounds what one session reads from the server (replies and
// the TLS handshake: a few kilobytes): net/textproto keeps a reply's lines
// in memory until its last, so a server sending one without end would take
// the process's memory until the attempt's timeout.
const maxSMTPRead = 1 << 20

// errSMTPTooLong is what a session reads once the server sent maxSMTPRead.
var errSMTPTooLong = fmt.Errorf("the server sent longer than %d KiB (a reply without end?)", maxSMTPRead>>10)

// boundedConn fails its reads once left bytes were read.
type boundedConn struct {
	net.Conn
	left int
}

func (c *boundedConn) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errSMTPTooLong
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= n
	return n, err
}

// smtpOutcome classifies a failed SMTP step: a 5xx reply, a refusal of
// net/smtp's own and a certificate error are permanent; a 4xx reply, a
// timeout, a broken connection and an endless reply are retried.
func smtpOutcome(step string, err error) outcome {
	o := smtpClassify(step, err)
	o.err = errorText(o.err)
	return o
}

func smtpClassify(step string, err error) outcome {
	if errors.Is(err, errSMTPTooLong) {
		return outcome{err: "SMTP " + step + ": " + errSMTPTooLong.Error()}
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		o := outcome{status: te.Code, err: fmt.Sprintf("SMTP %s: %d %s", step, te.Code, te.Msg)}
		o.permanent = te.Code >= 500
		return o
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return outcome{err: "SMTP " + step + ": timeout"}
	}
	// net/smtp's own refusals ("smtp: server doesn't support AUTH", a CR or
	// LF in an address) and TLS certificate errors come back every time.
	if strings.HasPrefix(err.Error(), "smtp: ") || strings.Contains(err.Error(), "unencrypted connection") || strings.Contains(err.Error(), "certificate") {
		return outcome{permanent: true, err: "SMTP " + step + ": " + err.Error()}
	}
	return outcome{err: "SMTP " + step + ": " + err.Error()}
}

// message is the e-mail of a record: plain text, quoted-printable, with the
// record's id as Message-ID, so a mail system can drop a redelivered copy.
func (s *emailSender) message(r *record, now time.Time) []byte {
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", s.d.From)
	hdr("To", foldList(s.d.To))
	hdr("Subject", subjectHeader(r.title()))
	hdr("Date", now.UTC().Format(time.RFC1123Z))
	hdr("Message-ID", "<"+r.ID+"."+r.Kind+"@leadstream>")
	hdr(HeaderIdempotencyKey, r.ID)
	hdr(HeaderKind, r.Kind)
	hdr("User-Agent", s.agent)
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(strings.ReplaceAll(r.text(), "\n", "\r\n") + "\r\n"))
	_ = qp.Close()
	return b.Bytes()
}

// foldList joins addresses for an address header, folding the line before
// one that would take it past 78 characters: any number of recipients, no
// line past RFC 5322's 998.
func foldList(addrs []string) string {
	var b strings.Builder
	line := len("To: ")
	for i, a := range addrs {
		if i > 0 {
			b.WriteString(",")
			line++
			if line+1+len(a) > 78 {
				b.WriteString("\r\n")
				line = 0
			}
			b.WriteString(" ")
			line++
		}
		b.WriteString(a)
		line += len(a)
	}
	return b.String()
}

// maxSubjectRunes bounds the Subject: a lead id is whatever a visitor sent
// (up to the collector's 32 KB per event); the message's text has it all.
const maxSubjectRunes = 200

// subjectHeader is title as a Subject value: cut to maxSubjectRunes, encoded
// (RFC 2047) when it is not plain ASCII, and folded between its encoded
// words, so that no line passes RFC 5322's 998 characters (mime's encoder
// separates them with a space only: a title of non-ASCII characters made a
// line of thousands).
func subjectHeader(title string) string {
	if utf8.RuneCountInString(title) > maxSubjectRunes {
		title = string([]rune(title)[:maxSubjectRunes-1]) + "…"
	}
	enc := mime.QEncoding.Encode("utf-8", title)
	if enc == title {
		return title // plain ASCII, at most maxSubjectRunes
	}
	// Within an encoded word a space is "_": each space here separates two.
	return strings.ReplaceAll(enc, "?= =?", "?=\r\n =?")
}

// heloName is what EHLO names this client: the host's name when it is fully
// qualified, otherwise the connection's local address as an address literal
// (RFC 5321 4.1.4: an FQDN or an address literal; servers that check refuse
// a bare word such as "leadstream").
func heloName(conn net.Conn) string {
	if h, err := os.Hostname(); err == nil && validHeloHost(h) {
		return h
	}
	if a, ok := conn.LocalAddr().(*net.TCPAddr); ok && a.IP != nil {
		if ip4 := a.IP.To4(); ip4 != nil {
			return "[" + ip4.String() + "]"
		}
		return "[IPv6:" + a.IP.String() + "]"
	}
	return "[127.0.0.1]"
}

// validHeloHost reports whether h is a fully qualified domain name that can
// go into EHLO: dotted labels of letters, digits and hyphens.
func validHeloHost(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if !strings.Contains(h, ".") || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
