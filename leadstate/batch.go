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
	// Load the script once so the pipeline can use EVALSHA throughout.
	if err := applyScript.Load(ctx, s.rdb).Err(); err != nil {
		return nil, fmt.Errorf("loading apply script: %w", err)
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(us))
	for i := range us {
		keys, args, err := applyArgs(&us[i])
		if err != nil {
			return nil, err
		}
		cmds[i] = applyScript.EvalSha(ctx, pipe, keys, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("applying %d events in redis: %w", len(us), err)
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
