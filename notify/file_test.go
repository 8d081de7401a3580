package notify

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

var testResolver = resolver{
	env: func(k string) (string, bool) {
		v, ok := map[string]string{"HOOK_SECRET": "env-secret-0123456789", "SMTP_PW": "pw", "SLACK_URL": "https://hooks.slack.example/T1/B2/x"}[k]
		return v, ok
	},
	readFile: func(p string) ([]byte, error) {
		if p == "/run/secret" {
			return []byte("file-secret-0123456789\n"), nil
		}
		return nil, os.ErrNotExist
	},
}

func TestParseFile(t *testing.T) {
	ds, err := parseFile("n.yaml", []byte(`
destinations:
  - name: crm
    type: webhook
    url: https://hooks.acme.example/leadstream
    headers: {X-Api-Key: {env: HOOK_SECRET}}
    secret: {file: /run/secret}
    timeout: 3s
    kinds: [mql]
    models: [default]
    min_score: 100
  - name: sales-slack
    type: slack
    url: {env: SLACK_URL}
  - name: sales-mail
    type: email
    smtp: {host: smtp.acme.example, port: 2525, starttls: opportunistic, username: ls, password: {env: SMTP_PW}}
    from: leadstream@acme.example
    to: [sales@acme.example, ops@acme.example]
`), testResolver)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 3 {
		t.Fatalf("%d destinations", len(ds))
	}
	crm := ds[0]
	if crm.Type != TypeWebhook || string(crm.Secret) != "file-secret-0123456789" || crm.Headers["X-Api-Key"] != "env-secret-0123456789" ||
		crm.Timeout != 3*time.Second || *crm.MinScore != 100 || crm.Models[0] != "default" || crm.Kinds[0] != "mql" {
		t.Fatalf("crm = %+v", crm)
	}
	if !crm.Accepts(KindMQL, "default", 100) || crm.Accepts(KindMQA, "default", 200) || crm.Accepts(KindMQL, "other", 200) || crm.Accepts(KindMQL, "default", 99) {
		t.Error("crm's filter")
	}
	if ds[1].URL != "https://hooks.slack.example/T1/B2/x" || ds[1].Secret != nil || !ds[1].Accepts(KindMQA, "x", 0) {
		t.Fatalf("slack = %+v", ds[1])
	}
	m := ds[2]
	if m.SMTP.Host != "smtp.acme.example" || m.SMTP.Port != 2525 || m.SMTP.StartTLS != StartTLSOpportunistic || m.SMTP.Password != "pw" || len(m.To) != 2 {
		t.Fatalf("mail = %+v", m)
	}
}

func TestParseFileErrors(t *testing.T) {
	f := func(doc, want string) {
		t.Helper()
		_, err := parseFile("n.yaml", []byte(doc), testResolver)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s\nerror %v, want %q", doc, err, want)
		}
	}
	head := "destinations:\n"
	hook := "  - {name: a, type: webhook, url: 'https://x.example/h', secret: 0123456789abcdefgh"
	f("", "n.yaml:1: no destinations")
	f("destination: []", "n.yaml:1: destination: unknown key (want one of destinations)")
	f(head+"  []", "n.yaml:2: destinations: empty list")
	f(head+hook+"}\n"+hook+"}", "n.yaml:3: destinations[1].name: duplicate destination name \"a\" (first at line 2)")
	f(head+"  - {name: A, type: webhook}", "destinations[0].name: invalid name \"A\"")
	f(head+"  - {name: a, type: sms}", "destinations[0].type: unknown type \"sms\"")
	f(head+"  - {name: a, type: webhook, url: 'ftp://x', secret: 0123456789abcdefgh}", "destinations[0].url: want an absolute http or https URL")
	f(head+"  - {name: a, type: webhook, url: 'https://x.example'}", "destinations[0].secret: missing")
	f(head+"  - {name: a, type: webhook, url: 'https://x.example', secret: short}", "destinations[0].secret: too short")
	f(head+hook+", headers: {Content-Type: x}}", "destinations[0].headers.Content-Type: not a header a destination may set")
	f(head+hook+", headers: [x]}", "destinations[0].headers:")
	f(head+hook+", headers: x}", "destinations[0].headers:")
	f(head+hook+", kinds: [sql]}", "destinations[0].kinds[0]: unknown kind \"sql\"")
	f(head+hook+", min_score: high}", "destinations[0].min_score: want a number")
	f(head+hook+", timeout: 10}", "destinations[0].timeout: bad duration")
	f(head+hook+", to: [a@b.c]}", "destinations[0].to: not a setting of type webhook (it belongs to email)")
	f(head+hook+", urls: x}", "destinations[0].urls: unknown key")
	f(head+"  - {name: a, type: webhook, url: {env: NOPE}, secret: 0123456789abcdefgh}", "destinations[0].url.env: environment variable NOPE is not set")
	f(head+"  - {name: a, type: webhook, url: 'https://x.example', secret: {file: /nope}}", "destinations[0].secret.file: cannot read \"/nope\"")
	f(head+"  - {name: a, type: webhook, url: 'https://x.example', secret: {env: A, file: B}}", "destinations[0].secret: want exactly one of env or file")
	f(head+"  - {name: m, type: email, from: x@y.z, to: [a@b.c]}", "destinations[0].smtp: missing")
	f(head+"  - {name: m, type: email, smtp: {port: 25}, from: x@y.z, to: [a@b.c]}", "destinations[0].smtp.host: missing")
	f(head+"  - {name: m, type: email, smtp: {host: h, starttls: maybe}, from: x@y.z, to: [a@b.c]}", "destinations[0].smtp.starttls: want required, opportunistic or off")
	f(head+"  - {name: m, type: email, smtp: {host: h, password: x}, from: x@y.z, to: [a@b.c]}", "destinations[0].smtp.password: needs username")
	f(head+"  - {name: m, type: email, smtp: {host: h}, from: nobody, to: [a@b.c]}", "destinations[0].from: not an email address")
	f(head+"  - {name: m, type: email, smtp: {host: h}, from: x@y.z, to: []}", "destinations[0].to: empty list")
	f(head+"  - {name: m, type: email, smtp: {host: h}, from: x@y.z, to: ['a@b.c\nBcc: z@z.z']}", "destinations[0].to[0]: not an email address")
	f(head+"  - {name: a\n  - b", "n.yaml:2: invalid YAML")
	// Every problem at once, in line order.
	_, err := parseFile("n.yaml", []byte(head+"  - {name: a, type: sms}\n  - {name: B, type: webhook, url: x, secret: y}"), testResolver)
	if err == nil || len(strings.Split(err.Error(), "\n")) < 4 {
		t.Errorf("want every problem reported: %v", err)
	}
}

func TestSignAndVerify(t *testing.T) {
	secret := []byte("0123456789abcdef")
	body := []byte(`{"kind":"mql"}`)
	now := time.Unix(1_800_000_000, 0)
	h := Sign(secret, now, body)
	if !strings.HasPrefix(h, "t=1800000000,v1=") {
		t.Fatalf("header %q", h)
	}
	if err := Verify(secret, h, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := Verify(secret, h, []byte(`{"kind":"mqa"}`), now, time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Errorf("altered body: %v", err)
	}
	if err := Verify([]byte("another-secret-xx"), h, body, now, time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Errorf("other secret: %v", err)
	}
	if err := Verify(secret, h, body, now.Add(time.Hour), 5*time.Minute); !errors.Is(err, ErrStale) {
		t.Errorf("replayed an hour later: %v", err)
	}
	if err := Verify(secret, "t=1800000000,v1=00,"+h[strings.Index(h, "v1="):], body, now, time.Minute); err != nil {
		t.Errorf("rotation (two v1): %v", err)
	}
	if err := Verify(secret, "garbage", body, now, time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Errorf("garbage: %v", err)
	}
}
