// Package leadstate keeps every lead's scoring state in Redis: per model the
// decaying behaviour value, fit points and MQL state, the set of event ids
// already applied, the MQL outbox, the profile traits and the links from
// anonymous ids to leads.
//
// The processor writes through Apply, one atomic Lua script per event; the
// collector's lead API reads through Lead. All keys of one lead share its hash
// tag ({lead}), and no script touches two leads, so it runs on Redis Cluster.
//
// Key layout (T = "{lead id}" or "{a:anonymous id}"):
//
//	ls:T:seen       SET   event ids applied (dedup)
//	ls:T:m:<model>  HASH  v, t (behaviour value at ref time t, Unix ms), fit, fitr,
//	                      mql, mql_at, mql_id, r:<rule>/rt:<rule>, c:<rule>:<window>
//	ls:T:outbox     HASH  mql_id -> pending MQL record (until Kafka acknowledged it)
//	ls:T:profile    HASH  traits (JSON object)
//	ls:T:lead       STRING (anonymous subjects only) the lead this id is linked to
package leadstate

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/secretflag"
	"github.com/redis/go-redis/v9"
)

// Config holds the Redis connection settings shared by every role.
type Config struct {
	Addr     string
	Username string // ACL user; empty = the default user
	Password string
	DB       int
	// Cluster connects to a Redis Cluster through Addr even when it is one
	// address (a managed cluster's configuration endpoint).
	Cluster bool
	TLS     bool
	// TLS files: CA bundle to trust (empty = the system's), client
	// certificate and key for servers that require one.
	TLSCAFile, TLSCertFile, TLSKeyFile string
}

// RegisterFlags registers redis.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "redis.addr", "", "Redis host:port; several comma-separated = Redis Cluster; empty in `dev` = start a local redis-server")
	fs.StringVar(&c.Username, "redis.username", "", "Redis ACL user; empty = the default user")
	secretflag.String(fs, &c.Password, "redis.password", "Redis password")
	fs.IntVar(&c.DB, "redis.db", 0, "Redis database number (single node only)")
	fs.BoolVar(&c.Cluster, "redis.cluster", false, "the server is a Redis Cluster, also when redis.addr is one address (a managed cluster's configuration endpoint)")
	fs.BoolVar(&c.TLS, "redis.tls", false, "connect to Redis with TLS")
	fs.StringVar(&c.TLSCAFile, "redis.tls.ca-file", "", "PEM file of the CA(s) that sign the Redis server's certificate; empty = the system's trusted CAs")
	fs.StringVar(&c.TLSCertFile, "redis.tls.cert-file", "", "PEM client certificate, for servers that require one (tls-auth-clients yes)")
	fs.StringVar(&c.TLSKeyFile, "redis.tls.key-file", "", "PEM private key of redis.tls.cert-file")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if strings.TrimSpace(c.Addr) == "" {
		return errors.New("redis.addr is required")
	}
	if c.DB != 0 && (c.Cluster || len(splitAddrs(c.Addr)) > 1) {
		return errors.New("redis.db must be 0 for a Redis Cluster (it has only database 0)")
	}
	if err := c.tlsFiles().Validate(c.TLS); err != nil {
		return err
	}
	if c.TLS {
		if _, err := c.tlsFiles().Config(); err != nil {
			return err
		}
	}
	return nil
}

// Open connects to Redis (a cluster when several addresses are given or
// Cluster is set), with TLS and an ACL user when configured, and pings it.
// A failure names Redis, the address and the likely cause.
func Open(ctx context.Context, c Config) (redis.UniversalClient, error) {
	return open(ctx, c)
}

// Subject is the identity whose state a key holds: a known lead or a not yet
// linked anonymous visitor.
type Subject struct {
	ID        string
	Anonymous bool
}

// Lead returns the subject of a known lead.
func Lead(id string) Subject { return Subject{ID: id} }

// Anon returns the subject of an anonymous visitor.
func Anon(id string) Subject { return Subject{ID: id, Anonymous: true} }

func (s Subject) key(suffix string) string {
	if s.Anonymous {
		return "ls:{a:" + s.ID + "}:" + suffix
	}
	return "ls:{" + s.ID + "}:" + suffix
}

// Hit is points to fold into a model at an event time.
type Hit struct {
	Rule      string
	Points    float64
	TimeMs    int64
	CapCount  int           // 0 = no cap
	CapWindow time.Duration // fixed event-time window of the cap
}

// ModelUpdate is what one event does to one model.
type ModelUpdate struct {
	Name       string
	HalfLife   time.Duration
	Threshold  float64
	RearmBelow float64
	Fit        *float64 // nil = unchanged
	FitReasons []event.Reason
	// FitTimeMs is the event time of a fit change (the identify). The
	// behaviour value is decayed to it, as by a hit of 0 points, before the
	// threshold is checked. 0 = unknown: checked at the current reference time.
	FitTimeMs int64
	Hits      []Hit
}

// Update is one atomic change to a subject's state.
type Update struct {
	Subject        Subject
	DedupID        string   // applied at most once per subject
	TriggerEventID string   // the event an MQL crossing is attributed to
	ExtraSeen      []string // event ids to mark as applied too (merged history)
	Models         []ModelUpdate
}

// Result of Apply.
type Result struct {
	Applied bool        // false: DedupID was already applied
	Outbox  []event.MQL // MQL records not yet acknowledged by Kafka, this update's included
}

//go:embed apply.lua
var applyLua string

var applyScript = redis.NewScript(applyLua)

// Store reads and writes lead state.
type Store struct {
	rdb          redis.UniversalClient
	scriptLoaded atomic.Bool // apply script loaded (ApplyMany pipelines EVALSHA)
}

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

// applyArgs lays out an update as the apply script's KEYS and ARGV.
func applyArgs(u *Update) ([]string, []any, error) {
	keys := make([]string, 0, 2+len(u.Models))
	keys = append(keys, u.Subject.key("seen"), u.Subject.key("outbox"))
	lead := ""
	if !u.Subject.Anonymous {
		lead = u.Subject.ID
	}
	args := make([]any, 0, 8+len(u.ExtraSeen)+len(u.Models)*16)
	args = append(args, u.DedupID, lead, u.TriggerEventID, len(u.ExtraSeen))
	for _, id := range u.ExtraSeen {
		args = append(args, id)
	}
	for i := range u.Models {
		m := &u.Models[i]
		keys = append(keys, u.Subject.key("m:"+m.Name))
		fit, fitReasons := "", ""
		if m.Fit != nil {
			fit = strconv.FormatFloat(*m.Fit, 'g', -1, 64)
			b, err := json.Marshal(nonNil(m.FitReasons))
			if err != nil {
				return nil, nil, fmt.Errorf("encoding fit reasons: %w", err)
			}
			fitReasons = string(b)
		}
		args = append(args, m.Name, m.HalfLife.Milliseconds(), m.Threshold, m.RearmBelow, fit, fitReasons, m.FitTimeMs,
			event.MQLID(lead, m.Name, u.TriggerEventID), len(m.Hits))
		for _, h := range m.Hits {
			args = append(args, h.Rule, h.Points, h.TimeMs, h.CapCount, h.CapWindow.Milliseconds())
		}
	}
	return keys, args, nil
}

func decodeResult(res []any) (Result, error) {
	if len(res) != 2 {
		return Result{}, fmt.Errorf("BUG: apply script returned %d values", len(res))
	}
	applied, _ := res[0].(int64)
	outbox, err := decodeOutbox(res[1])
	if err != nil {
		return Result{}, err
	}
	return Result{Applied: applied == 1, Outbox: outbox}, nil
}

func nonNil(r []event.Reason) []event.Reason {
	if r == nil {
		return []event.Reason{}
	}
	return r
}

// outboxEntry is the record the script stores; numbers are strings to keep
// full float precision through Lua.
type outboxEntry struct {
	MQLID       string          `json:"mql_id"`
	LeadID      string          `json:"lead_id"`
	Model       string          `json:"model"`
	Score       string          `json:"score"`
	Threshold   string          `json:"threshold"`
	CrossedAtMs string          `json:"crossed_at_ms"`
	Trigger     string          `json:"trigger_event_id"`
	Reasons     json.RawMessage `json:"reasons"`
}

func decodeOutbox(v any) ([]event.MQL, error) {
	flat, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("BUG: outbox is %T", v)
	}
	var out []event.MQL
	for i := 1; i < len(flat); i += 2 {
		s, _ := flat[i].(string)
		var e outboxEntry
		if err := json.Unmarshal([]byte(s), &e); err != nil {
			return nil, fmt.Errorf("decoding mql outbox entry: %w", err)
		}
		m := event.MQL{MQLID: e.MQLID, LeadID: e.LeadID, Model: e.Model, TriggerEventID: e.Trigger, Reasons: []event.Reason{}}
		m.Score, _ = strconv.ParseFloat(e.Score, 64)
		m.Threshold, _ = strconv.ParseFloat(e.Threshold, 64)
		ms, _ := strconv.ParseFloat(e.CrossedAtMs, 64)
		m.CrossedAt = time.UnixMilli(int64(ms)).UTC()
		// cjson encodes an empty table as {}.
		if len(e.Reasons) > 0 && e.Reasons[0] == '[' {
			if err := json.Unmarshal(e.Reasons, &m.Reasons); err != nil {
				return nil, fmt.Errorf("decoding mql reasons: %w", err)
			}
		}
		out = append(out, m)
	}
	return out, nil
}
