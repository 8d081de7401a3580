package leadstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/leadstream/leadstream/event"
	"github.com/redis/go-redis/v9"
)

// ApplyMany runs updates in one pipeline (per Redis node on a cluster), in
// order, each still one atomic script. It returns one Result per update.
func (s *Store) ApplyMany(ctx context.Context, us []Update) ([]Result, error) {
	if len(us) == 0 {
		return nil, nil
	}
	// The pipeline uses EVALSHA; the script is loaded once per store, and
	// again for the commands a server answered NOSCRIPT (restart, failover,
	// a new cluster node). A NOSCRIPT command did not run, so retrying it
	// applies it once.
	if !s.scriptLoaded.Load() {
		if err := applyScript.Load(ctx, s.rdb).Err(); err != nil {
			return nil, fmt.Errorf("loading apply script: %w", err)
		}
		s.scriptLoaded.Store(true)
	}
	keys := make([][]string, len(us))
	args := make([][]any, len(us))
	for i := range us {
		var err error
		if keys[i], args[i], err = applyArgs(&us[i]); err != nil {
			return nil, err
		}
	}
	cmds := make([]*redis.Cmd, len(us))
	todo := make([]int, len(us))
	for i := range todo {
		todo[i] = i
	}
	for attempt := 0; len(todo) > 0; attempt++ {
		pipe := s.rdb.Pipeline()
		for _, i := range todo {
			cmds[i] = applyScript.EvalSha(ctx, pipe, keys[i], args[i]...)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) && !redis.HasErrorPrefix(err, "NOSCRIPT") {
			return nil, fmt.Errorf("applying %d events in redis: %w", len(us), err)
		}
		var again []int
		for _, i := range todo {
			if redis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
				again = append(again, i)
			}
		}
		if len(again) > 0 {
			if attempt > 0 {
				return nil, fmt.Errorf("applying events in redis: script still missing after loading it: %w", cmds[again[0]].Err())
			}
			if err := applyScript.Load(ctx, s.rdb).Err(); err != nil {
				return nil, fmt.Errorf("loading apply script: %w", err)
			}
		}
		todo = again
	}
	out := make([]Result, len(us))
	for i, c := range cmds {
		res, err := c.Slice()
		if err != nil {
			return nil, fmt.Errorf("applying event %s in redis: %w", us[i].DedupID, err)
		}
		if out[i], err = decodeResult(res); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// LinkedLeads returns the leads linked to anonymous ids ("" when not linked),
// in one pipeline.
func (s *Store) LinkedLeads(ctx context.Context, anons []string) (map[string]string, error) {
	out := make(map[string]string, len(anons))
	if len(anons) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make(map[string]*redis.StringCmd, len(anons))
	for _, a := range anons {
		if _, ok := cmds[a]; !ok {
			cmds[a] = pipe.Get(ctx, Anon(a).key("lead"))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("reading identity links: %w", err)
	}
	for a, c := range cmds {
		v, err := c.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("reading identity link: %w", err)
		}
		out[a] = v
	}
	return out, nil
}

// History is an anonymous visitor's state, as a merge into a lead reads it:
// per model the decayed per-rule values as hits to fold into the lead, and
// the event ids it applied.
type History struct {
	Hits map[string][]Hit // per model
	Seen []string         // event ids it applied
}

// AnonymousHistories reads the History of many visitors in one pipeline.
func (s *Store) AnonymousHistories(ctx context.Context, anons []string, models []string) ([]History, error) {
	if len(anons) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	hashes := make([][]*redis.MapStringStringCmd, len(anons))
	seen := make([]*redis.StringSliceCmd, len(anons))
	for a, anon := range anons {
		subj := Anon(anon)
		hashes[a] = make([]*redis.MapStringStringCmd, len(models))
		for i, m := range models {
			hashes[a][i] = pipe.HGetAll(ctx, subj.key("m:"+m))
		}
		seen[a] = pipe.SMembers(ctx, subj.key("seen"))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("reading anonymous history: %w", err)
	}
	out := make([]History, len(anons))
	for a := range anons {
		out[a] = History{Hits: historyHits(hashes[a], models), Seen: seen[a].Val()}
	}
	return out, nil
}

// historyHits turns a visitor's model hashes into per-model hits, sorted by rule.
func historyHits(cmds []*redis.MapStringStringCmd, models []string) map[string][]Hit {
	hits := make(map[string][]Hit, len(models))
	for i, m := range models {
		h := cmds[i].Val()
		for f, val := range h {
			if rule, ok := strings.CutPrefix(f, "r:"); ok {
				hits[m] = append(hits[m], Hit{Rule: rule, Points: parseF(val), TimeMs: int64(parseF(h["rt:"+rule]))})
			}
		}
		// Map order is random; a fixed order keeps float sums reproducible.
		sort.Slice(hits[m], func(a, b int) bool { return hits[m][a].Rule < hits[m][b].Rule })
	}
	return hits
}

// Merged is an anonymous visitor whose history was applied to a lead.
type Merged struct {
	Anon, Lead string
}

// LinkMerged records each visitor's link to its lead and then deletes the
// visitor's merged state (the link key stays; all of a visitor's keys share
// its hash tag, so each DEL is cluster-safe), all in one
// pipeline. The steps of one visitor run in order on its hash slot; visitors
// are handled in the given order, so the last link of a visitor wins.
func (s *Store) LinkMerged(ctx context.Context, ms []Merged, models []string) error {
	if len(ms) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	for _, m := range ms {
		pipe.Set(ctx, Anon(m.Anon).key("lead"), m.Lead, 0)
		pipe.Del(ctx, anonStateKeys(m.Anon, models)...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("linking and dropping %d merged visitors: %w", len(ms), err)
	}
	return nil
}

// TraitsMany reads the stored traits of many leads in one pipeline; leads
// without traits are missing from the result.
func (s *Store) TraitsMany(ctx context.Context, leads []string) (map[string]map[string]any, error) {
	out := make(map[string]map[string]any, len(leads))
	if len(leads) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make(map[string]*redis.StringCmd, len(leads))
	for _, l := range leads {
		if _, ok := cmds[l]; !ok {
			cmds[l] = pipe.HGet(ctx, Lead(l).key("profile"), "traits")
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("reading traits: %w", err)
	}
	for l, c := range cmds {
		raw, err := c.Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading traits: %w", err)
		}
		var t map[string]any
		if err := json.Unmarshal([]byte(raw), &t); err != nil {
			return nil, fmt.Errorf("decoding stored traits: %w", err)
		}
		if t != nil {
			out[l] = t
		}
	}
	return out, nil
}

// SetTraitsMany stores the merged traits of many leads in one pipeline.
func (s *Store) SetTraitsMany(ctx context.Context, traits map[string]map[string]any) error {
	if len(traits) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	for l, t := range traits {
		b, err := json.Marshal(t)
		if err != nil {
			return fmt.Errorf("encoding traits: %w", err)
		}
		pipe.HSet(ctx, Lead(l).key("profile"), "traits", b)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("writing traits of %d leads: %w", len(traits), err)
	}
	return nil
}

// AckOutboxMany removes MQL records that Kafka acknowledged, of any leads, in one pipeline.
func (s *Store) AckOutboxMany(ctx context.Context, ms []event.MQL) error {
	if len(ms) == 0 {
		return nil
	}
	byLead := make(map[string][]string, len(ms))
	var leads []string
	for _, m := range ms {
		if _, ok := byLead[m.LeadID]; !ok {
			leads = append(leads, m.LeadID)
		}
		byLead[m.LeadID] = append(byLead[m.LeadID], m.MQLID)
	}
	pipe := s.rdb.Pipeline()
	for _, l := range leads {
		pipe.HDel(ctx, Lead(l).key("outbox"), byLead[l]...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("clearing mql outboxes of %d leads: %w", len(leads), err)
	}
	return nil
}
