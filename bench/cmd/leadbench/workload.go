package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/ingest"
	"github.com/leadstream/leadstream/ingest/token"
	"github.com/leadstream/leadstream/stream"
)

// The event mix every scenario uses, so that the collector, the processor,
// the sink and their ceilings all handle the same records. Out of 100 events:
//
//	45 page views of anonymous visitors (1 in 6 on /pricing, 1 in 6 on /careers, UTM-tagged URLs)
//	20 "Email Opened" and 15 "Email Link Clicked" of known leads
//	 2 "Form Submitted" carrying both ids (links an anonymous visitor to its lead: a merge)
//	 3 identify with traits (fit scoring)
//	 2 group calls of known leads (account membership and account traits)
//	13 custom "Webinar Attended" (no rule matches: stored, not scored)
//
// Leads and visitors are spread by a hash of the sequence number over
// mixLeads leads and mixAnons anonymous ids; anonymous id k always belongs to
// lead k % mixLeads, so a visitor is merged at most once. Lead k's group
// calls name account k % mixAccounts (10 leads per account): once a lead's
// first group call is in, each of its scored events also updates its account.
const (
	mixLeads    = 20_000
	mixAnons    = 100_000
	mixAccounts = 2_000
)

// Request-level facts the collector adds to every event (see ingest).
const (
	benchWriteKey   = "bench-write-key"
	benchSecretKey  = "bench-secret-key"
	benchTokenKID   = "bench"
	benchTokenKey   = "bench-token-secret-0123456789"
	serverUserAgent = "analytics-node/6.2.0 (leadbench)"
	browserUA       = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
	mailUA          = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"
)

var pagePaths = []string{"/", "/pricing", "/blog/real-time-lead-scoring", "/careers", "/product/scoring", "/docs/getting-started"}

// msg is one generated Segment call, before rendering as JSON (for HTTP) or
// as the canonical event the collector would write (for pre-filled topics).
type msg struct {
	typ, name   string // Segment type; track event name
	id          string
	anon, lead  string
	ts          time.Time
	url, path   string
	title       string
	props       string // JSON object or ""
	traits      string // JSON object or ""
	group       string // groupId of a group call
	contextUA   string // context.userAgent (relayed browser agent) or ""
	contextPage bool
}

// splitmix is a cheap, well-mixed hash of a sequence number.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// mixMessage returns event n of a run; runID makes message ids unique per run.
func mixMessage(runID string, n uint64, now time.Time) msg {
	h := splitmix(n)
	m := msg{id: runID + "-" + strconv.FormatUint(n, 10), ts: now}
	lead := "lead-" + strconv.FormatUint(h%mixLeads, 10)
	switch b := (n * 61) % 100; {
	case b < 45:
		k := h % mixAnons
		m.typ, m.anon = "page", "anon-"+strconv.FormatUint(k, 10)
		m.path = pagePaths[(h>>20)%uint64(len(pagePaths))]
		m.url = "https://www.acme.example" + m.path
		if (h>>32)%3 == 0 {
			m.url += "?utm_source=newsletter&utm_medium=email&utm_campaign=spring-launch"
		}
		m.title = "Acme — " + m.path
		m.props = fmt.Sprintf(`{"path":%q,"url":%q,"title":%q,"referrer":"https://www.google.com/"}`, m.path, m.url, m.title)
		m.contextUA, m.contextPage = browserUA, true
	case b < 65:
		m.typ, m.name, m.lead = "track", "Email Opened", lead
		m.props = `{"campaign":"spring-nurture","email_id":"e-` + strconv.FormatUint(h%50, 10) + `"}`
	case b < 80:
		m.typ, m.name, m.lead = "track", "Email Link Clicked", lead
		m.props = `{"campaign":"spring-nurture","link":"https://www.acme.example/pricing"}`
	case b < 82:
		k := h % mixAnons
		m.typ, m.name = "track", "Form Submitted"
		m.anon, m.lead = "anon-"+strconv.FormatUint(k, 10), "lead-"+strconv.FormatUint(k%mixLeads, 10)
		m.props = `{"form":"whitepaper-q3","fields":3}`
	case b < 85:
		m.typ, m.lead = "identify", lead
		titles := []string{"VP Marketing", "Marketing Manager", "Head of Growth", "Engineer"}
		m.traits = fmt.Sprintf(`{"title":%q,"employees":%d,"industry":"software"}`, titles[(h>>16)%4], 50+(h>>24)%1000)
	case b < 87:
		k := h % mixLeads
		m.typ, m.lead, m.group = "group", lead, "acct-"+strconv.FormatUint(k%mixAccounts, 10)
		m.traits = fmt.Sprintf(`{"name":"Account %d","industry":"software","employees":%d}`, k%mixAccounts, 50+(k%mixAccounts)%1000)
	default:
		m.typ, m.name, m.lead = "track", "Webinar Attended", lead
		m.props = `{"webinar":"w-2026-03","minutes":42}`
	}
	return m
}

// appendSegment appends m as a Segment message (what analytics-node sends).
func appendSegment(b []byte, m *msg) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, m.typ...)
	b = append(b, `","messageId":"`...)
	b = append(b, m.id...)
	b = append(b, `","timestamp":"`...)
	b = m.ts.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
	b = append(b, '"')
	if m.anon != "" {
		b = append(b, `,"anonymousId":"`...)
		b = append(b, m.anon...)
		b = append(b, '"')
	}
	if m.lead != "" {
		b = append(b, `,"userId":"`...)
		b = append(b, m.lead...)
		b = append(b, '"')
	}
	if m.group != "" {
		b = append(b, `,"groupId":"`...)
		b = append(b, m.group...)
		b = append(b, '"')
	}
	if m.name != "" {
		b = append(b, `,"event":"`...)
		b = append(b, m.name...)
		b = append(b, '"')
	}
	if m.props != "" {
		b = append(b, `,"properties":`...)
		b = append(b, m.props...)
	}
	if m.traits != "" {
		b = append(b, `,"traits":`...)
		b = append(b, m.traits...)
	}
	if m.contextUA != "" {
		b = append(b, `,"context":{"userAgent":"`...)
		b = append(b, m.contextUA...)
		b = append(b, `","ip":"198.51.100.23"`...)
		if m.contextPage {
			b = fmt.Appendf(b, `,"page":{"url":%q,"path":%q,"title":%q}`, m.url, m.path, m.title)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// canonical is the event the collector makes of m (ingest's mapping, written
// out by hand: the bench may only use ingest's public API).
func canonical(m *msg, received time.Time) event.Event {
	e := event.Event{
		ID: m.id, EventTime: m.ts.UTC().Truncate(time.Millisecond), ReceivedAt: received.UTC().Truncate(time.Millisecond),
		AnonymousID: m.anon, LeadID: m.lead, WriteKeyID: ingest.KeyID(benchWriteKey),
		IP: "127.0.0.1", UserAgent: serverUserAgent,
	}
	if m.props != "" {
		e.Properties = json.RawMessage(m.props)
	}
	if m.contextUA != "" {
		e.IP, e.UserAgent = "198.51.100.23", m.contextUA
	}
	switch m.typ {
	case "page":
		e.Type, e.URL, e.Path, e.Title = event.PageView, m.url, m.path, m.title
		e.Referrer = "https://www.google.com/"
		if len(m.url) > len("https://www.acme.example")+len(m.path) {
			e.UTMSource, e.UTMMedium, e.UTMCampaign, e.Campaign = "newsletter", "email", "spring-launch", "spring-launch"
		}
	case "identify":
		e.Type, e.Traits = event.Identify, json.RawMessage(m.traits)
	case "group":
		e.Type, e.GroupID, e.Traits = event.Group, m.group, json.RawMessage(m.traits)
	default:
		e.Track = m.name
		switch m.name {
		case "Email Opened":
			e.Type = event.EmailOpen
		case "Email Link Clicked":
			e.Type = event.EmailClick
		case "Form Submitted":
			e.Type = event.FormSubmit
		default:
			e.Type = event.Custom
		}
	}
	return e
}

// mixRecords returns events from .. from+n-1 of the mix as Kafka records,
// as the collector writes them, and their total size.
func mixRecords(runID string, from, n int) ([]stream.Record, int64) {
	recs := make([]stream.Record, n)
	var bytes int64
	now := time.Now()
	for i := range recs {
		m := mixMessage(runID, uint64(from+i), now)
		e := canonical(&m, now)
		v, err := event.Marshal(&e)
		if err != nil {
			panic("BUG: encoding a generated event: " + err.Error())
		}
		recs[i] = stream.Record{Key: []byte(e.Key()), Value: v}
		bytes += int64(len(recs[i].Key) + len(v))
	}
	return recs, bytes
}

// pixelPaths returns n signed email-open pixel paths (/o/{token}.gif) of
// distinct leads, sent a day ago so that no scanner rule fires.
func pixelPaths(n int) ([]string, error) {
	kr, err := pixelKeyring()
	if err != nil {
		return nil, err
	}
	out := make([]string, n)
	sent := time.Now().Add(-24 * time.Hour)
	for i := range out {
		out[i] = pixelPath(kr, uint64(i), sent)
	}
	return out, nil
}

// pixelKeyring signs the bench's email links.
func pixelKeyring() (*token.Keyring, error) {
	return token.NewKeyring(token.Key{ID: benchTokenKID, Secret: []byte(benchTokenKey)})
}

// pixelPath is the pixel path of message i (of one of 10,000 leads), sent at
// sent.
func pixelPath(kr *token.Keyring, i uint64, sent time.Time) string {
	u, err := kr.OpenURL("", token.Claims{Lead: "lead-" + strconv.FormatUint(i%10_000, 10), Campaign: "spring-nurture",
		Message: "msg-" + strconv.FormatUint(i, 10), SentAt: sent})
	if err != nil {
		panic("BUG: signing a pixel token: " + err.Error()) // the claims are always valid
	}
	return u
}
