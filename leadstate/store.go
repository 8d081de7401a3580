package leadstate

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/scoring"
)

// Store reads and writes scoring states.
type Store struct {
	rdb redis.UniversalClient
}

// NewStore returns a Store on rdb.
func NewStore(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

// Keys of one subject (see the package comment).
type keys struct{ prefix string }

func keysOf(s scoring.Subject) keys {
	h := sha256.Sum256([]byte(s.ID))
	ns := "l:"
	switch {
	case s.Anonymous:
		ns = "a:"
	case s.Account:
		ns = "c:"
	}
	return keys{prefix: "ls2:{" + ns + hex.EncodeToString(h[:16]) + "}:"}
}

func (k keys) state() string  { return k.prefix + "s" }
func (k keys) outbox() string { return k.prefix + "o" }
func (k keys) bucket(b int64) string {
	return k.prefix + "d:" + strconv.FormatInt(b, 10)
}

// member is how an id's fingerprint is stored in a dedup set: in decimal,
// so Redis keeps sets of up to set-max-intset-entries (512) members as a
// compact intset (8 bytes each).
func member(fp uint64) string { return strconv.FormatInt(int64(fp), 10) }

// Record is a subject's stored state and its version ("" when it has none).
type Record struct {
	State   *scoring.State
	Version string
}

// value is a record's stored form.
func value(version string, st *scoring.State) []byte {
	b := make([]byte, 0, 256)
	b = append(b, version...)
	return encodeState(b, st)
}

func decodeValue(s scoring.Subject, v string) (Record, error) {
	if len(v) < 9 {
		return Record{}, fmt.Errorf("%w: %v: %d bytes", ErrCorruptState, s, len(v))
	}
	st, err := decodeState([]byte(v[8:]))
	if err != nil {
		return Record{}, fmt.Errorf("%v: %w", s, err)
	}
	if st.ID != s.ID || st.Anonymous != s.Anonymous || st.Account != s.Account {
		// Two ids whose hashes share 128 bits: never seen, but never
		// scored on the wrong subject either.
		return Record{}, fmt.Errorf("%w: %v holds the state of %v", ErrCorruptState, s, st.Subject)
	}
	return Record{State: st, Version: v[:8]}, nil
}

// wrongType turns a server's WRONGTYPE answer about a key of subject s into
// ErrCorruptState naming s: a key of leadstream's that holds another Redis
// type was written by something else, and no retry reads or writes it. Other
// errors are returned as they are.
func wrongType(s scoring.Subject, err error) error {
	if redis.HasErrorPrefix(err, "WRONGTYPE") {
		return fmt.Errorf("%w: %v: a key of it holds another Redis type than leadstream writes there: %v", ErrCorruptState, s, err)
	}
	return err
}

// execErr is the error of a pipeline's Exec that fails the whole call: nil
// when it is the answer of one command (no key, a key of another type),
// which the caller looks at command by command.
func execErr(err error) error {
	if err == nil || errors.Is(err, redis.Nil) || redis.HasErrorPrefix(err, "WRONGTYPE") {
		return nil
	}
	return err
}

// newVersion is a random version: a state that expired and was written
// again never gets the version a stale writer expects.
func newVersion() string {
	var b [8]byte
	for {
		binary.LittleEndian.PutUint64(b[:], rand.Uint64())
		if b != [8]byte{} {
			return string(b[:])
		}
	}
}

// Read returns the stored records of subjects (absent ones with no state),
// in one pipeline.
func (s *Store) Read(ctx context.Context, subjects []scoring.Subject) (map[scoring.Subject]Record, error) {
	out := make(map[scoring.Subject]Record, len(subjects))
	if len(subjects) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(subjects))
	for i, subj := range subjects {
		cmds[i] = pipe.Get(ctx, keysOf(subj).state())
	}
	if _, err := pipe.Exec(ctx); execErr(err) != nil {
		return nil, fmt.Errorf("reading %d lead states: %w", len(subjects), err)
	}
	for i, subj := range subjects {
		v, err := cmds[i].Result()
		if errors.Is(err, redis.Nil) {
			out[subj] = Record{}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading the state of a lead: %w", wrongType(subj, err))
		}
		rec, err := decodeValue(subj, v)
		if err != nil {
			return nil, err
		}
		out[subj] = rec
	}
	return out, nil
}

// Applied reports, for each question, whether its subject's dedup set of the
// bucket holds the id.
func (s *Store) Applied(ctx context.Context, qs []scoring.AppliedQuery) ([]bool, error) {
	if len(qs) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.BoolCmd, len(qs))
	for i, q := range qs {
		cmds[i] = pipe.SIsMember(ctx, keysOf(q.Subject).bucket(q.Bucket), member(q.FP))
	}
	if _, err := pipe.Exec(ctx); execErr(err) != nil {
		return nil, fmt.Errorf("reading %d dedup entries: %w", len(qs), err)
	}
	out := make([]bool, len(qs))
	for i := range cmds {
		if err := cmds[i].Err(); err != nil {
			return nil, fmt.Errorf("reading the dedup entries of a lead: %w", wrongType(qs[i].Subject, err))
		}
		out[i] = cmds[i].Val()
	}
	return out, nil
}

// Seen is an applied id (its fingerprint) to record in a dedup set.
type Seen struct {
	FP       uint64
	Bucket   int64
	ExpireAt int64 // Unix ms
}

// Commit is one compare-and-set of a subject's state.
type Commit struct {
	Subject  scoring.Subject
	Expect   string // the version the state was read at ("" = had none)
	State    *scoring.State
	ExpireAt int64 // Unix ms; 0 = never (leads)
	Seen     []Seen
	MQLs     []event.MQL
	MQAs     []event.MQA // an account's crossings (its outbox holds MQA records)
}

// Status is a commit's outcome.
type Status uint8

// Commit outcomes.
const (
	// Stored: the state, its ids and its MQL records are stored.
	Stored Status = iota + 1
	// Conflict: the state changed since it was read; Current is what it is now.
	Conflict
	// Duplicate: some of the ids were applied already (Dups); nothing was stored.
	Duplicate
)

// CommitResult is one commit's outcome.
type CommitResult struct {
	Status  Status
	Version string   // Stored: the new version
	Current Record   // Conflict
	Dups    []uint64 // Duplicate: the fingerprints applied already
}

//go:embed commit.lua
var commitLua string

var commitScript = redis.NewScript(commitLua)

// Commit runs each commit as one atomic script, all in one pipeline. A
// stored commit's MQL records wait in the subject's outbox until AckOutbox;
// records a crashed processor left there are read with Outbox. A commit that
// creates a state (none was read) and records nothing beside it is a SET NX
// instead, in the same pipeline: a new visitor's or lead's first write is
// most writes, and Redis spends a fraction of the script's time on it.
func (s *Store) Commit(ctx context.Context, cs []Commit) ([]CommitResult, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	var keys [][]string
	var args [][]any
	var scripted, created []int // cs index of each script call, of each SET NX
	versions := make([]string, len(cs))
	creates := make([]*redis.Cmd, len(cs))
	first := func(pipe redis.Pipeliner) {
		for _, i := range created {
			c := &cs[i]
			k := keysOf(c.Subject).state()
			if c.ExpireAt > 0 {
				creates[i] = pipe.Do(ctx, "set", k, value(versions[i], c.State), "pxat", c.ExpireAt, "nx")
			} else {
				creates[i] = pipe.Do(ctx, "set", k, value(versions[i], c.State), "nx")
			}
		}
	}
	for i := range cs {
		versions[i] = newVersion()
		if isCreate(&cs[i]) {
			created = append(created, i)
			continue
		}
		k, a, err := commitArgs(&cs[i], versions[i])
		if err != nil {
			return nil, err
		}
		keys, args, scripted = append(keys, k), append(args, a), append(scripted, i)
	}
	cmds, err := s.evalMany(ctx, keys, args, first)
	if err != nil {
		return nil, fmt.Errorf("storing %d lead states: %w", len(cs), err)
	}
	out := make([]CommitResult, len(cs))
	for j, c := range cmds {
		i := scripted[j]
		res, err := c.Slice()
		if err != nil {
			return nil, fmt.Errorf("storing the state of a lead: %w", wrongType(cs[i].Subject, err))
		}
		if out[i], err = commitResult(cs[i].Subject, versions[i], res); err != nil {
			return nil, err
		}
		if out[i].Status == Conflict && out[i].Current.Version == versions[i] {
			// The state holds this very commit: the client sent the script
			// again after its answer was lost (a connection reset), and the
			// second run found the first one's version.
			out[i] = CommitResult{Status: Stored, Version: versions[i]}
		}
	}
	var lost []scoring.Subject // creates that found a state: read it for the caller
	for i, c := range creates {
		if c == nil {
			continue
		}
		switch err := c.Err(); {
		case err == nil:
			out[i] = CommitResult{Status: Stored, Version: versions[i]}
		case errors.Is(err, redis.Nil):
			out[i] = CommitResult{Status: Conflict}
			lost = append(lost, cs[i].Subject)
		default:
			return nil, fmt.Errorf("storing the state of a lead: %w", wrongType(cs[i].Subject, err))
		}
	}
	if len(lost) > 0 {
		cur, err := s.Read(ctx, lost)
		if err != nil {
			return nil, err
		}
		for i := range out {
			if creates[i] != nil && out[i].Status == Conflict {
				out[i].Current = cur[cs[i].Subject] // absent again (expired meanwhile): the next create may win
				if out[i].Current.Version == versions[i] {
					// This very create, sent again after its answer was lost.
					out[i] = CommitResult{Status: Stored, Version: versions[i]}
				}
			}
		}
	}
	return out, nil
}

// isCreate reports whether a commit only creates a state: none was read, and
// it records no ids and no crossings beside it.
func isCreate(c *Commit) bool {
	return c.Expect == "" && len(c.Seen) == 0 && len(c.MQLs) == 0 && len(c.MQAs) == 0
}

func commitArgs(c *Commit, version string) ([]string, []any, error) {
	k := keysOf(c.Subject)
	ks := []string{k.state(), k.outbox()}
	args := []any{c.Expect, value(version, c.State), c.ExpireAt}
	// Group the ids by bucket, in order of first use.
	var buckets []int64
	byBucket := map[int64][]Seen{}
	for _, s := range c.Seen {
		if _, ok := byBucket[s.Bucket]; !ok {
			buckets = append(buckets, s.Bucket)
		}
		byBucket[s.Bucket] = append(byBucket[s.Bucket], s)
	}
	for _, b := range buckets {
		ks = append(ks, k.bucket(b))
		ids := byBucket[b]
		args = append(args, ids[0].ExpireAt, len(ids))
		for _, s := range ids {
			args = append(args, member(s.FP))
		}
	}
	args = append(args, len(c.MQLs)+len(c.MQAs))
	for i := range c.MQLs {
		rec, err := json.Marshal(&c.MQLs[i])
		if err != nil {
			return nil, nil, fmt.Errorf("encoding mql record: %w", err)
		}
		args = append(args, c.MQLs[i].MQLID, rec)
	}
	for i := range c.MQAs {
		rec, err := json.Marshal(&c.MQAs[i])
		if err != nil {
			return nil, nil, fmt.Errorf("encoding mqa record: %w", err)
		}
		args = append(args, c.MQAs[i].MQAID, rec)
	}
	return ks, args, nil
}

func commitResult(subj scoring.Subject, version string, res []any) (CommitResult, error) {
	if len(res) == 0 || (res[0] != int64(1) && len(res) != 2) {
		return CommitResult{}, fmt.Errorf("BUG: commit script returned %v", res)
	}
	switch code, _ := res[0].(int64); code {
	case 1:
		return CommitResult{Status: Stored, Version: version}, nil
	case 0:
		r := CommitResult{Status: Conflict}
		if v, ok := res[1].(string); ok {
			rec, err := decodeValue(subj, v)
			if err != nil {
				return CommitResult{}, err
			}
			r.Current = rec
		}
		return r, nil
	case 2:
		dups, _ := res[1].([]any)
		r := CommitResult{Status: Duplicate}
		for _, m := range dups {
			s, _ := m.(string)
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return CommitResult{}, fmt.Errorf("BUG: commit script returned dedup member %q", s)
			}
			r.Dups = append(r.Dups, uint64(v))
		}
		return r, nil
	default:
		return CommitResult{}, fmt.Errorf("BUG: commit script returned status %v", res[0])
	}
}

// evalMany runs the commit script once per (keys, args) in one pipeline
// with EVALSHA. The commands a server answered NOSCRIPT (its script cache is
// empty: the first use, a restart, a failover, a new cluster node, SCRIPT
// FLUSH) did not run: they are sent again, in a second pipeline, as EVAL,
// which caches the script on the node that runs it. Nothing is loaded on
// every node beforehand, so a cluster node that is down (its slots
// unserved) does not keep the leads of the others from being stored.
// first, when set, adds other commands to the first pipeline sent.
func (s *Store) evalMany(ctx context.Context, keys [][]string, args [][]any, first func(redis.Pipeliner)) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(keys))
	pipe := s.rdb.Pipeline()
	if first != nil {
		first(pipe)
	}
	for i := range keys {
		cmds[i] = commitScript.EvalSha(ctx, pipe, keys[i], args[i]...)
	}
	if _, err := pipe.Exec(ctx); execErr(err) != nil && !redis.HasErrorPrefix(err, "NOSCRIPT") {
		return nil, err
	}
	var again []int
	for i, c := range cmds {
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return cmds, nil
	}
	pipe = s.rdb.Pipeline()
	for _, i := range again {
		cmds[i] = commitScript.Eval(ctx, pipe, keys[i], args[i]...)
	}
	if _, err := pipe.Exec(ctx); execErr(err) != nil {
		return nil, err
	}
	return cmds, nil
}

// Outbox returns the MQL records pending in leads' outboxes, in one pipeline.
func (s *Store) Outbox(ctx context.Context, leads []string) ([]event.MQL, error) {
	if len(leads) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(leads))
	for i, l := range leads {
		cmds[i] = pipe.HGetAll(ctx, keysOf(scoring.Lead(l)).outbox())
	}
	if _, err := pipe.Exec(ctx); execErr(err) != nil {
		return nil, fmt.Errorf("reading the mql outboxes of %d leads: %w", len(leads), err)
	}
	var out []event.MQL
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			return nil, fmt.Errorf("reading the mql outbox of a lead: %w", wrongType(scoring.Lead(leads[i]), err))
		}
		for _, v := range c.Val() {
			var m event.MQL
			if err := json.Unmarshal([]byte(v), &m); err != nil {
				return nil, fmt.Errorf("decoding mql outbox entry: %w", err)
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// AckOutbox removes MQL records that Kafka acknowledged, in one pipeline.
func (s *Store) AckOutbox(ctx context.Context, ms []event.MQL) error {
	if len(ms) == 0 {
		return nil
	}
	byLead := map[string][]string{}
	var leads []string
	for _, m := range ms {
		if _, ok := byLead[m.LeadID]; !ok {
			leads = append(leads, m.LeadID)
		}
		byLead[m.LeadID] = append(byLead[m.LeadID], m.MQLID)
	}
	pipe := s.rdb.Pipeline()
	for _, l := range leads {
		pipe.HDel(ctx, keysOf(scoring.Lead(l)).outbox(), byLead[l]...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("clearing the mql outboxes of %d leads: %w", len(leads), err)
	}
	return nil
}

// Touch restarts the expiry of visitors' states (visitors whose events
// scored on the lead they were merged into).
func (s *Store) Touch(ctx context.Context, subjects []scoring.Subject, expireAt int64) error {
	if len(subjects) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	for _, subj := range subjects {
		pipe.PExpireAt(ctx, keysOf(subj).state(), msTime(expireAt))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("renewing %d visitor links: %w", len(subjects), err)
	}
	return nil
}

// OutboxMQA returns the MQA records pending in accounts' outboxes, in one pipeline.
func (s *Store) OutboxMQA(ctx context.Context, accounts []string) ([]event.MQA, error) {
	if len(accounts) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(accounts))
	for i, a := range accounts {
		cmds[i] = pipe.HGetAll(ctx, keysOf(scoring.Account(a)).outbox())
	}
	if _, err := pipe.Exec(ctx); execErr(err) != nil {
		return nil, fmt.Errorf("reading the mqa outboxes of %d accounts: %w", len(accounts), err)
	}
	var out []event.MQA
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			return nil, fmt.Errorf("reading the mqa outbox of an account: %w", wrongType(scoring.Account(accounts[i]), err))
		}
		for _, v := range c.Val() {
			var m event.MQA
			if err := json.Unmarshal([]byte(v), &m); err != nil {
				return nil, fmt.Errorf("decoding mqa outbox entry: %w", err)
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// AckOutboxMQA removes MQA records that Kafka acknowledged, in one pipeline.
func (s *Store) AckOutboxMQA(ctx context.Context, ms []event.MQA) error {
	if len(ms) == 0 {
		return nil
	}
	byAcct := map[string][]string{}
	var accts []string
	for _, m := range ms {
		if _, ok := byAcct[m.AccountID]; !ok {
			accts = append(accts, m.AccountID)
		}
		byAcct[m.AccountID] = append(byAcct[m.AccountID], m.MQAID)
	}
	pipe := s.rdb.Pipeline()
	for _, a := range accts {
		pipe.HDel(ctx, keysOf(scoring.Account(a)).outbox(), byAcct[a]...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("clearing the mqa outboxes of %d accounts: %w", len(accts), err)
	}
	return nil
}

// Eviction is what a Redis server (a cluster's master) does when it runs out
// of memory, from its INFO.
type Eviction struct {
	Addr      string
	Policy    string // maxmemory-policy
	MaxMemory int64  // bytes; 0 = no limit
}

// Evicts reports whether the server may delete keys to make room: any
// policy but noeviction, with a memory limit set. leadstream's keys must
// never be evicted: a lost dedup set counts a redelivered event again, a
// lost visitor state its link, a lost outbox its crossings.
func (e Eviction) Evicts() bool { return e.MaxMemory > 0 && e.Policy != "noeviction" }

// Evictions reads the eviction settings of the server, or of every master
// of a cluster (INFO memory; an ACL user needs +info for it).
func (s *Store) Evictions(ctx context.Context) ([]Eviction, error) {
	var (
		mu  sync.Mutex
		out []Eviction
	)
	one := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "memory").Result()
		if err != nil {
			return fmt.Errorf("reading the memory settings of redis at %s: %w", c.Options().Addr, err)
		}
		e := Eviction{Addr: c.Options().Addr}
		for _, line := range strings.Split(info, "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
			switch k {
			case "maxmemory_policy":
				e.Policy = v
			case "maxmemory":
				e.MaxMemory, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		mu.Lock()
		out = append(out, e)
		mu.Unlock()
		return nil
	}
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		if err := c.ForEachMaster(ctx, one); err != nil {
			return nil, err
		}
	case *redis.Client:
		if err := one(ctx, c); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("reading the memory settings of redis: a %T is not supported", s.rdb)
	}
	return out, nil
}
