// Package erasure erases a person (GDPR art. 17, the right to erasure):
// `leadstream erase LEAD_ID` and DELETE /v1/leads/{id} (the collector,
// secret key) call Eraser.Erase.
//
// An erasure covers the lead, the leads merged into it by alias and the
// anonymous visitors linked to any of them (found in ClickHouse's
// identity_links and alias events, warehouse.Linked; and, once retention
// dropped an alias event, from identity_links and the merged lead's state in
// Redis, whose Into proves the merge: Eraser.mergedByState):
//
//   - Redis: each one's scoring state, MQL outbox and dedup sets
//     (leadstate.Store.Erase); a visitor that is now linked to another lead
//     keeps its link (it holds no history, which went to the erased lead,
//     but for the copy of its own audience hits a visitor's link keeps:
//     package scoring, audiences.go; and its dedup, 64-bit fingerprints of
//     the event ids it applied, no personal data: kept so that a
//     redelivery through it stays a duplicate);
//     the leads' entries in their accounts' states (leadstate.ForgetMembers);
//   - ClickHouse: their rows in events, identity_links, mql,
//     account_members and notifications, and their names in
//     mqa.top_members (ALTER TABLE … DELETE/UPDATE mutations, waited for):
//     warehouse.EraseHistory before Redis, warehouse.EraseLinks after it,
//     so that an erasure stopped part-way finds the same subjects when it
//     runs again (what it finds them by goes last);
//   - Kafka: one tombstone on <prefix>erasures (key = the lead id, value =
//     null) for downstream systems to erase what they copied.
//
// It is idempotent: erasing again finds what is left and deletes it. It is an
// erasure as of now: events accepted for the lead afterwards (or still on
// their way through Kafka) are scored and stored as a new history; stop
// sending them first, and erase again once the processor and the sink have
// caught up if some were in flight. Raw records stay on the Kafka topics
// until their retention (kafka.retention) removes them.
//
// Metrics:
//
//	leadstream_collector_erasures_total{result}   done | pending (ClickHouse still deleting) | failed
package erasure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
	"github.com/leadstream/leadstream/warehouse"
)

// ErrNotConfigured means the role has no ClickHouse address: it cannot find
// a lead's visitors nor delete its rows.
var ErrNotConfigured = errors.New("erasure needs clickhouse.addr (and redis.addr)")

// Config says where the erased data lives.
type Config struct {
	Kafka      stream.Config
	ClickHouse warehouse.Config
}

// Eraser erases leads. Its ClickHouse connection and Kafka producer are
// opened on the first erasure, so a collector starts without ClickHouse.
type Eraser struct {
	cfg   Config
	store *leadstate.Store
	log   *slog.Logger
	reg   prometheus.Registerer
	total *prometheus.CounterVec

	mu         sync.Mutex
	conn       driver.Conn
	tombstones *stream.Producer
}

// New returns an Eraser over store (Redis) and cfg (ClickHouse, Kafka).
func New(cfg Config, store *leadstate.Store, log *slog.Logger, reg prometheus.Registerer) *Eraser {
	e := &Eraser{cfg: cfg, store: store, log: log.With("stage", "erasure"), reg: reg,
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leadstream_collector_erasures_total",
			Help: "Erasures of a lead (GDPR art. 17): done, pending (ClickHouse still deleting when answered) or failed."}, []string{"result"})}
	for _, r := range []string{"done", "pending", "failed"} {
		e.total.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(e.total)
	}
	return e
}

// Result is what an erasure did.
type Result struct {
	LeadID string `json:"lead_id"`
	// Leads are the lead ids erased: the lead and those merged into it.
	Leads []string `json:"leads"`
	// AnonymousIDs is how many anonymous ids linked to them were erased;
	// KeptVisitors how many of those now link to another lead in Redis (their
	// link is kept, their anonymous events are deleted).
	AnonymousIDs int `json:"anonymous_ids"`
	KeptVisitors int `json:"kept_visitors,omitempty"`
	// RedisKeys is how many keys were deleted from Redis; AccountEntries
	// how many member entries were removed from account states.
	RedisKeys      int `json:"redis_keys"`
	AccountEntries int `json:"account_entries,omitempty"`
	// MergedInto is the lead this lead had been merged into by alias; it is
	// not erased (erase it too if it is the same person's).
	MergedInto string `json:"merged_into,omitempty"`
	// Done reports that ClickHouse finished deleting the rows; when false the
	// mutations still run (erasing again reports on them).
	Done bool `json:"done"`
}

// Erase erases lead and what is linked to it (see the package comment),
// waiting up to wait for ClickHouse to finish deleting.
func (e *Eraser) Erase(ctx context.Context, lead string, wait time.Duration) (*Result, error) {
	res, err := e.erase(ctx, lead, wait)
	switch {
	case err != nil:
		e.total.WithLabelValues("failed").Inc()
		e.log.Warn("erasure failed", "err", err)
	case res.Done:
		e.total.WithLabelValues("done").Inc()
	default:
		e.total.WithLabelValues("pending").Inc()
	}
	return res, err
}

func (e *Eraser) erase(ctx context.Context, lead string, wait time.Duration) (*Result, error) {
	if lead == "" {
		return nil, errors.New("erasure: empty lead id")
	}
	if e.store == nil || e.cfg.ClickHouse.Addr == "" {
		return nil, ErrNotConfigured
	}
	if err := e.cfg.ClickHouse.SingleServer("erasing a lead's rows"); err != nil {
		return nil, err
	}
	conn, tomb, err := e.open(ctx)
	if err != nil {
		return nil, err
	}
	db := e.cfg.ClickHouse.Database
	leads, anons, err := warehouse.Linked(ctx, conn, db, lead)
	if err != nil {
		return nil, err
	}
	if leads, anons, err = e.mergedByState(ctx, conn, db, leads, anons); err != nil {
		return nil, err
	}
	res := &Result{LeadID: lead, Leads: leads, AnonymousIDs: len(anons)}

	// Redis: the leads, and the visitors not linked to someone else since.
	isLead := map[string]bool{}
	var subjects []scoring.Subject
	for _, l := range leads {
		isLead[l] = true
		subjects = append(subjects, scoring.Lead(l))
	}
	visitors := make([]scoring.Subject, len(anons))
	for i, a := range anons {
		visitors[i] = scoring.Anon(a)
	}
	states, err := e.store.States(ctx, append(subjects, visitors...))
	if err != nil {
		return nil, fmt.Errorf("erasure: %w", err)
	}
	if st := states[scoring.Lead(lead)].State; st != nil && st.Into != "" && !isLead[st.Into] {
		res.MergedInto = st.Into
	}
	for _, v := range visitors {
		if st := states[v].State; st != nil && st.Into != "" && !isLead[st.Into] {
			res.KeptVisitors++
			continue
		}
		subjects = append(subjects, v)
	}
	// The accounts: found from the states about to go, and from ClickHouse
	// (an account the lead left, a member entry of a state that does not
	// decode): the rows of the leads and those of their visitors (a
	// visitor's group call is recorded with its anonymous id alone, and
	// the lead may have forgotten that account since, its tombstone there
	// stored). ForgetMembers removes the erased leads' entries only, so an
	// account of a visitor kept by another lead loses nothing of theirs.
	accts, err := warehouse.Accounts(ctx, conn, db, leads, anons)
	if err != nil {
		return nil, fmt.Errorf("erasure: %w", err)
	}
	for _, l := range leads {
		if st := states[scoring.Lead(l)].State; st != nil {
			if st.MemberOf != "" {
				accts = append(accts, st.MemberOf)
			}
			for _, left := range st.Left {
				accts = append(accts, left.Account)
			}
		}
	}
	// What the erasure finds its subjects by goes last: the leads' states in
	// Redis (the proof of a merge whose alias event retention dropped), then
	// account_members and identity_links. An erasure stopped part-way (a
	// ClickHouse user without ALTER DELETE, a store going away, SIGTERM)
	// then finds the same subjects when it runs again. ClickHouse first:
	// the history.
	if err := warehouse.EraseHistory(ctx, conn, db, leads, anons); err != nil {
		return nil, fmt.Errorf("erasure: %w", err)
	}
	// The states go before the account entries: a processor that handles an
	// event of the lead in between then starts from no state (an event in
	// flight, below), where one handled while the state still existed would
	// put the account entry back from it after the account forgot it.
	if res.RedisKeys, err = e.store.Erase(ctx, subjects); err != nil {
		return nil, fmt.Errorf("erasure: %w", err)
	}
	slices.Sort(accts)
	for _, a := range slices.Compact(accts) {
		n, err := e.store.ForgetMembers(ctx, a, leads)
		if err != nil {
			return nil, fmt.Errorf("erasure: %w", err)
		}
		res.AccountEntries += n
	}

	// The links, then the tombstone: downstream hears of it once
	// leadstream's own deletion is under way.
	if err := warehouse.EraseLinks(ctx, conn, db, leads, anons); err != nil {
		return nil, fmt.Errorf("erasure: %w", err)
	}
	if err := tomb.Produce(ctx, []stream.Record{stream.Tombstone(lead)}); err != nil {
		return nil, fmt.Errorf("erasure: publishing the tombstone: %w", err)
	}
	if res.Done, err = warehouse.WaitMutations(ctx, conn, db, wait); err != nil {
		return nil, fmt.Errorf("erasure: %w", err)
	}
	e.log.Info("lead erased", "leads", len(leads), "anonymous_ids", len(anons), "redis_keys", res.RedisKeys, "clickhouse_done", res.Done)
	return res, nil
}

// maxMergeHops bounds how far mergedByState follows merges: the rounds of
// leads it adds, and the Into links it follows from one lead. The processor
// follows a chain to its end; so does this, up to a bound that only a cycle
// (opposite aliases not broken yet) reaches.
const maxMergeHops = 4096

// mergedByState adds to leads the leads merged into them by alias that
// warehouse.Linked misses once retention dropped the month of the alias
// event: identity_links (kept) still links the merged lead's id as an
// anonymous id of the survivor. An anonymous id a is taken as a lead of the
// erasure only when Redis proves the merge: Lead(a) has a state whose Into
// chain reaches a lead being erased. Any id may be linked as an anonymous id
// (a browser may identify a made-up one, another person's lead id
// included), so being linked alone never makes it a lead of the erasure.
// The visitors of each lead added are added too, and so on, for at most
// maxMergeHops rounds. Both lists are returned sorted.
func (e *Eraser) mergedByState(ctx context.Context, conn driver.Conn, db string, leads, anons []string) ([]string, []string, error) {
	isLead := make(map[string]bool, len(leads))
	for _, l := range leads {
		isLead[l] = true
	}
	known := map[string]*scoring.State{} // Lead(id)'s state, nil: none (or it does not decode)
	read := func(ids []string) error {
		var subjs []scoring.Subject
		for _, id := range ids {
			if _, ok := known[id]; !ok {
				known[id] = nil
				subjs = append(subjs, scoring.Lead(id))
			}
		}
		states, err := e.store.States(ctx, subjs)
		if err != nil {
			return fmt.Errorf("erasure: reading the leads merged into a lead: %w", err)
		}
		for subj, st := range states {
			known[subj.ID] = st.State
		}
		return nil
	}
	// mergedInto reports whether id's Into chain (states read) reaches a
	// lead of the erasure; next is the link to read before it can tell.
	mergedInto := func(id string) (merged bool, next string) {
		for range maxMergeHops {
			st, ok := known[id]
			if !ok {
				return false, id
			}
			if st == nil || st.Into == "" || st.Into == id {
				return false, ""
			}
			if isLead[st.Into] {
				return true, ""
			}
			id = st.Into
		}
		return false, ""
	}
	for range maxMergeHops {
		var cand []string
		for _, a := range anons {
			if !isLead[a] {
				cand = append(cand, a)
			}
		}
		// Read the candidates' states, then the leads they link to, hop by
		// hop, until every chain is known (or too long).
		for frontier, hop := cand, 0; len(frontier) > 0 && hop <= maxMergeHops; hop++ {
			if err := read(frontier); err != nil {
				return nil, nil, err
			}
			frontier = frontier[:0:0]
			for _, a := range cand {
				if _, next := mergedInto(a); next != "" {
					frontier = append(frontier, next)
				}
			}
		}
		var added []string
		for _, a := range cand {
			if ok, _ := mergedInto(a); ok {
				added = append(added, a)
			}
		}
		if len(added) == 0 {
			break
		}
		for _, a := range added {
			isLead[a] = true
		}
		more, err := warehouse.Visitors(ctx, conn, db, added)
		if err != nil {
			return nil, nil, fmt.Errorf("erasure: %w", err)
		}
		leads = append(leads, added...)
		anons = append(anons, more...)
	}
	slices.Sort(leads)
	slices.Sort(anons)
	return leads, slices.Compact(anons), nil
}

// open opens the ClickHouse connection and the tombstone producer once.
func (e *Eraser) open(ctx context.Context) (driver.Conn, *stream.Producer, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		conn, err := warehouse.Open(ctx, e.cfg.ClickHouse)
		if err != nil {
			return nil, nil, fmt.Errorf("erasure: %w", err)
		}
		e.conn = conn
	}
	if e.tombstones == nil {
		var reg prometheus.Registerer
		if e.reg != nil {
			reg = prometheus.WrapRegistererWith(prometheus.Labels{"stage": "erasure"}, e.reg)
		}
		p, err := stream.NewProducer(ctx, e.cfg.Kafka.Producer(stream.TopicErasures), e.log, reg)
		if err != nil {
			return nil, nil, fmt.Errorf("erasure: starting the producer of %s: %w", e.cfg.Kafka.Topic(stream.TopicErasures), err)
		}
		e.tombstones = p
	}
	return e.conn, e.tombstones, nil
}

// Close closes what the erasures opened.
func (e *Eraser) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tombstones != nil {
		e.tombstones.Close()
	}
	if e.conn != nil {
		e.conn.Close()
	}
}
