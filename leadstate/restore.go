package leadstate

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/leadstream/leadstream/scoring"
)

// Restore replaces a subject's state with a replayed one (`rescore
// -apply`) with the ids it applied beyond those its state keeps (spilled,
// each with its dedup bucket) whose bucket has not expired as of now, so events
// the processor has not reached yet are not counted again. One MULTI/EXEC
// on the subject's hash slot: readers see the old state or the new one. A
// visitor's state expires expireAt (Unix ms; 0 = never).
func (s *Store) Restore(ctx context.Context, st *scoring.State, spilled []scoring.Seen, c *scoring.Core, now, expireAt int64) error {
	k := keysOf(st.Subject)
	byBucket := map[int64][]any{}
	for _, id := range spilled {
		if c.BucketExpiry(id.Bucket) > now {
			byBucket[id.Bucket] = append(byBucket[id.Bucket], member(id.FP))
		}
	}
	_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Set(ctx, k.state(), value(newVersion(), st), 0)
		if expireAt > 0 {
			pipe.PExpireAt(ctx, k.state(), msTime(expireAt))
		}
		for b, ids := range byBucket {
			for i := 0; i < len(ids); i += 1000 {
				pipe.SAdd(ctx, k.bucket(b), ids[i:min(i+1000, len(ids))]...)
			}
			pipe.PExpireAt(ctx, k.bucket(b), msTime(c.BucketExpiry(b)))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing the rescored state of %v: %w", st.Subject, err)
	}
	return nil
}

// DeleteFirstLayout deletes the keys of leadstream's first Redis layout
// (ls:{lead}:…, ls:{a:visitor}:…), which Restore's rebuild replaces, on
// every master. It returns how many keys it deleted.
func (s *Store) DeleteFirstLayout(ctx context.Context) (int, error) {
	var n int
	del := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, "ls:{*", 1000).Iterator()
		var batch []string
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			// One key per DEL: on a cluster node the keys of a batch
			// may belong to different slots.
			pipe := c.Pipeline()
			for _, k := range batch {
				pipe.Del(ctx, k)
			}
			_, err := pipe.Exec(ctx)
			n += len(batch)
			batch = batch[:0]
			return err
		}
		for iter.Next(ctx) {
			if batch = append(batch, iter.Val()); len(batch) == 1000 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return flush()
	}
	var err error
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		var mu = make(chan struct{}, 1)
		err = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			mu <- struct{}{}
			defer func() { <-mu }()
			return del(ctx, m)
		})
	case *redis.Client:
		err = del(ctx, c)
	default:
		return 0, fmt.Errorf("BUG: unexpected redis client %T", s.rdb)
	}
	if err != nil {
		return n, fmt.Errorf("deleting keys of the first layout: %w", err)
	}
	return n, nil
}
