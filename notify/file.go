package notify

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/leadstream/leadstream/internal/yamlconf"
)

// Destination types.
const (
	TypeWebhook = "webhook" // JSON POST, signed
	TypeSlack   = "slack"   // Slack-compatible incoming webhook: {"text": …}
	TypeEmail   = "email"   // one message per record through SMTP
)

// Record kinds: the topic a record came from.
const (
	KindMQL = "mql"
	KindMQA = "mqa"
)

// STARTTLS modes of an SMTP destination.
const (
	StartTLSRequired      = "required"      // refuse to send unless the server upgrades the connection
	StartTLSOpportunistic = "opportunistic" // upgrade when the server offers it
	StartTLSOff           = "off"           // never (local relays)
)

// MinSecretBytes is the shortest signing secret a webhook accepts.
const MinSecretBytes = 16

// Destination is one entry of the destinations file.
type Destination struct {
	Name    string
	Type    string
	Timeout time.Duration // per attempt; 0 = notify.timeout

	// Filter: which records go to this destination (empty = all).
	Kinds    []string
	Models   []string
	MinScore *float64

	// webhook, slack
	URL     string
	Headers map[string]string
	Secret  []byte // HMAC-SHA256 key of the signature header (webhook: required)

	// email
	SMTP SMTPConfig
	From string
	To   []string
}

// SMTPConfig says how an email destination reaches its SMTP server.
type SMTPConfig struct {
	Host     string
	Port     int
	StartTLS string // StartTLS* (default required)
	Username string // empty = no AUTH
	Password string
	RootCAs  *x509.CertPool // ca_file; nil = the system's
}

// Accepts reports whether a record passes the destination's filter.
func (d *Destination) Accepts(kind, model string, score float64) bool {
	if len(d.Kinds) > 0 && !slices.Contains(d.Kinds, kind) {
		return false
	}
	if len(d.Models) > 0 && !slices.Contains(d.Models, model) {
		return false
	}
	return d.MinScore == nil || score >= *d.MinScore
}

// Env and ReadFile resolve {env: NAME} and {file: PATH} values; tests
// replace them.
type resolver struct {
	env      func(string) (string, bool)
	readFile func(string) ([]byte, error)
}

var osResolver = resolver{env: os.LookupEnv, readFile: os.ReadFile}

// LoadFile reads and checks a destinations file.
func LoadFile(path string) ([]Destination, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading notify config: %w", err)
	}
	return ParseFile(path, data)
}

// ParseFile parses and checks a destinations file; every problem is
// reported as FILE:LINE: field: reason.
func ParseFile(filename string, data []byte) ([]Destination, error) {
	return parseFile(filename, data, osResolver)
}

var nameRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

func parseFile(filename string, data []byte, res resolver) ([]Destination, error) {
	p := &fileParser{Parser: yamlconf.Parser{File: filename}, res: res}
	root, err := p.Document(data)
	if err != nil {
		return nil, err
	}
	if root == nil || yamlconf.IsNull(root) {
		p.Errf(root, "", "no destinations (the file must have a top-level \"destinations\" list)")
		return nil, p.Err()
	}
	f := p.Mapping(root, "", "destinations")
	var out []Destination
	if v := f.Val("destinations"); !yamlconf.Present(v) {
		if f != nil {
			p.Errf(root, "destinations", "missing (want a list of destinations)")
		}
	} else {
		first := map[string]int{}
		for i, n := range p.Sequence(v, "destinations") {
			path := fmt.Sprintf("destinations[%d]", i)
			d := p.destination(n, path)
			if d.Name != "" {
				if l, dup := first[d.Name]; dup {
					p.Errf(n, path+".name", "duplicate destination name %q (first at line %d)", d.Name, l)
				}
				first[d.Name] = n.Line
			}
			out = append(out, d)
		}
		if len(out) == 0 && p.Errors() == 0 {
			p.Errf(v, "destinations", "empty list (want at least one destination)")
		}
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

type fileParser struct {
	yamlconf.Parser
	res resolver
}

var keysByType = map[string][]string{
	TypeWebhook: {"url", "headers", "secret"},
	TypeSlack:   {"url", "headers", "secret"},
	TypeEmail:   {"smtp", "from", "to"},
}

func (p *fileParser) destination(n *yaml.Node, path string) Destination {
	var d Destination
	known := []string{"name", "type", "timeout", "kinds", "models", "min_score", "url", "headers", "secret", "smtp", "from", "to"}
	f := p.Mapping(n, path, known...)
	if f == nil {
		return d
	}
	if v := f.Val("name"); !yamlconf.Present(v) {
		p.Errf(n, path+".name", "missing")
	} else if s, ok := p.String(v, path+".name"); ok {
		if !nameRE.MatchString(s) {
			p.Errf(v, path+".name", "invalid name %q (want 1 to 64 of [a-z0-9_-]: it names the consumer group and the metrics)", s)
		} else {
			d.Name = s
		}
	}
	if v := f.Val("type"); !yamlconf.Present(v) {
		p.Errf(n, path+".type", "missing (want webhook, slack or email)")
	} else if s, ok := p.String(v, path+".type"); ok {
		if _, known := keysByType[s]; !known {
			p.Errf(v, path+".type", "unknown type %q (want webhook, slack or email)", s)
		} else {
			d.Type = s
		}
	}
	// Keys of other types are mistakes, not options.
	if d.Type != "" {
		for _, k := range f.Keys {
			for t, ks := range keysByType {
				if t != d.Type && slices.Contains(ks, k) && !slices.Contains(keysByType[d.Type], k) {
					p.Errf(f.Val(k), path+"."+k, "not a setting of type %s (it belongs to %s)", d.Type, t)
					break
				}
			}
		}
	}
	if v := f.Val("timeout"); yamlconf.Present(v) {
		if t, ok := p.Duration(v, path+".timeout"); ok {
			if t <= 0 {
				p.Errf(v, path+".timeout", "must be > 0")
			}
			d.Timeout = t
		}
	}
	if v := f.Val("kinds"); yamlconf.Present(v) {
		for i, k := range p.Sequence(v, path+".kinds") {
			if s, ok := p.String(k, fmt.Sprintf("%s.kinds[%d]", path, i)); ok {
				if s != KindMQL && s != KindMQA {
					p.Errf(k, fmt.Sprintf("%s.kinds[%d]", path, i), "unknown kind %q (want mql or mqa)", s)
				}
				d.Kinds = append(d.Kinds, s)
			}
		}
	}
	if v := f.Val("models"); yamlconf.Present(v) {
		for i, m := range p.Sequence(v, path+".models") {
			if s, ok := p.String(m, fmt.Sprintf("%s.models[%d]", path, i)); ok {
				d.Models = append(d.Models, s)
			}
		}
	}
	if v := f.Val("min_score"); yamlconf.Present(v) {
		if x, ok := p.Number(v, path+".min_score"); ok {
			d.MinScore = &x
		}
	}
	switch d.Type {
	case TypeWebhook, TypeSlack:
		p.web(&d, n, f, path)
	case TypeEmail:
		p.email(&d, n, f, path)
	}
	return d
}

func (p *fileParser) web(d *Destination, n *yaml.Node, f *yamlconf.Fields, path string) {
	if v := f.Val("url"); !yamlconf.Present(v) {
		p.Errf(n, path+".url", "missing (want an http or https URL)")
	} else if s, ok := p.secret(v, path+".url"); ok {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.Errf(v, path+".url", "want an absolute http or https URL") // the URL may hold a token: not echoed
		}
		d.URL = s
	}
	if v := f.Val("headers"); yamlconf.Present(v) {
		hf := p.Mapping(v, path+".headers")
		if hf != nil {
			d.Headers = map[string]string{}
		} else {
			hf = &yamlconf.Fields{} // not a mapping: p.Mapping reported it
		}
		for _, k := range hf.Keys {
			hpath := path + ".headers." + k
			if !headerNameRE.MatchString(k) || reservedHeader(k) {
				p.Errf(hf.Val(k), hpath, "not a header a destination may set (a token of letters, digits and -; not Content-Type, Content-Length, Host, Idempotency-Key or X-Leadstream-*)")
				continue
			}
			if s, ok := p.secret(hf.Val(k), hpath); ok {
				if strings.ContainsAny(s, "\r\n") {
					p.Errf(hf.Val(k), hpath, "must not contain a line break")
				} else if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
					// net/http refuses to send it: every delivery would fail.
					p.Errf(hf.Val(k), hpath, "must not contain a control character")
				}
				d.Headers[k] = s
			}
		}
	}
	if v := f.Val("secret"); yamlconf.Present(v) {
		if s, ok := p.secret(v, path+".secret"); ok {
			if len(s) < MinSecretBytes {
				p.Errf(v, path+".secret", "too short: want at least %d bytes", MinSecretBytes)
			}
			d.Secret = []byte(s)
		}
	} else if d.Type == TypeWebhook {
		p.Errf(n, path+".secret", "missing (a webhook's body is signed with it: %s header)", HeaderSignature)
	}
}

var headerNameRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

func reservedHeader(k string) bool {
	k = strings.ToLower(k)
	return k == "content-type" || k == "content-length" || k == "host" || k == "idempotency-key" || strings.HasPrefix(k, "x-leadstream-")
}

func (p *fileParser) email(d *Destination, n *yaml.Node, f *yamlconf.Fields, path string) {
	if v := f.Val("smtp"); !yamlconf.Present(v) {
		p.Errf(n, path+".smtp", "missing (want host, port, starttls, username, password)")
	} else if sf := p.Mapping(v, path+".smtp", "host", "port", "starttls", "username", "password", "ca_file"); sf != nil {
		spath := path + ".smtp"
		c := &d.SMTP
		if h := sf.Val("host"); !yamlconf.Present(h) {
			p.Errf(v, spath+".host", "missing")
		} else if s, ok := p.String(h, spath+".host"); ok {
			if !smtpHost(s) {
				p.Errf(h, spath+".host", "want a host name or IP address, without scheme or port (the port is smtp.port), got %q", s)
			}
			c.Host = s
		}
		c.Port = 587
		if pv := sf.Val("port"); yamlconf.Present(pv) {
			if port, ok := p.Int(pv, spath+".port"); ok {
				if port < 1 || port > 65535 {
					p.Errf(pv, spath+".port", "want 1 to 65535, got %d", port)
				}
				c.Port = port
			}
		}
		c.StartTLS = StartTLSRequired
		if t := sf.Val("starttls"); yamlconf.Present(t) {
			if s, ok := p.String(t, spath+".starttls"); ok {
				if s != StartTLSRequired && s != StartTLSOpportunistic && s != StartTLSOff {
					p.Errf(t, spath+".starttls", "want required, opportunistic or off, got %q", s)
				}
				c.StartTLS = s
			}
		}
		if u := sf.Val("username"); yamlconf.Present(u) {
			c.Username, _ = p.secret(u, spath+".username")
		}
		if pw := sf.Val("password"); yamlconf.Present(pw) {
			c.Password, _ = p.secret(pw, spath+".password")
			if c.Username == "" {
				p.Errf(pw, spath+".password", "needs username")
			}
		}
		if ca := sf.Val("ca_file"); yamlconf.Present(ca) {
			if s, ok := p.String(ca, spath+".ca_file"); ok {
				pem, err := p.res.readFile(s)
				if err != nil {
					p.Errf(ca, spath+".ca_file", "cannot read %q: %v", s, err)
				} else {
					c.RootCAs = x509.NewCertPool()
					if !c.RootCAs.AppendCertsFromPEM(pem) {
						p.Errf(ca, spath+".ca_file", "%q holds no PEM certificate", s)
					}
				}
			}
		}
	}
	if v := f.Val("from"); !yamlconf.Present(v) {
		p.Errf(n, path+".from", "missing (the sender address)")
	} else if s, ok := p.String(v, path+".from"); ok {
		if !mailRE.MatchString(s) {
			p.Errf(v, path+".from", "not an email address: %q", s)
		}
		d.From = s
	}
	if v := f.Val("to"); !yamlconf.Present(v) {
		p.Errf(n, path+".to", "missing (a list of recipient addresses)")
	} else {
		items := p.Sequence(v, path+".to")
		if len(items) == 0 && v.Kind == yaml.SequenceNode {
			p.Errf(v, path+".to", "empty list")
		}
		for i, t := range items {
			if s, ok := p.String(t, fmt.Sprintf("%s.to[%d]", path, i)); ok {
				if !mailRE.MatchString(s) {
					p.Errf(t, fmt.Sprintf("%s.to[%d]", path, i), "not an email address: %q", s)
				}
				d.To = append(d.To, s)
			}
		}
	}
}

// hostRE is a DNS name (letters, digits, '-', '_', dots).
var hostRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}$`)

// smtpHost reports whether h can name the SMTP server: a host name or an
// IP address, not host:port, a URL or nothing.
func smtpHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return hostRE.MatchString(h)
}

// mailRE is a plain address (no display name, no line breaks).
var mailRE = regexp.MustCompile(`^[^\s@<>,;"]+@[^\s@<>,;"]+$`)

// secret returns a value given in the file, or taken from the environment
// ({env: NAME}) or a file ({file: PATH}, trailing line breaks dropped), so
// that secrets need not be written into the configuration.
func (p *fileParser) secret(n *yaml.Node, path string) (string, bool) {
	n = yamlconf.Resolve(n)
	if n.Kind != yaml.MappingNode {
		return p.String(n, path)
	}
	f := p.Mapping(n, path, "env", "file")
	if f == nil {
		return "", false
	}
	env, file := f.Val("env"), f.Val("file")
	if yamlconf.Present(env) == yamlconf.Present(file) {
		p.Errf(n, path, "want exactly one of env or file")
		return "", false
	}
	if yamlconf.Present(env) {
		name, ok := p.String(env, path+".env")
		if !ok {
			return "", false
		}
		v, set := p.res.env(name)
		if !set || v == "" {
			p.Errf(env, path+".env", "environment variable %s is not set", name)
			return "", false
		}
		return v, true
	}
	name, ok := p.String(file, path+".file")
	if !ok {
		return "", false
	}
	b, err := p.res.readFile(name)
	if err != nil {
		p.Errf(file, path+".file", "cannot read %q: %v", name, err)
		return "", false
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		p.Errf(file, path+".file", "%q is empty", name)
		return "", false
	}
	return v, true
}

// address is host:port of an SMTP server.
func (c *SMTPConfig) address() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }
