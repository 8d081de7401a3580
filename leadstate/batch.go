package leadstate

import (
	"context"
	"errors"
	"fmt"

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
