package redisx

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// ScanKeys calls fn with the keys matching pattern, a page at a time, on
// every primary of a Redis Cluster (a SCAN reaches one node only) or on
// the one server. fn may delete the keys it is given; it is never called
// by two goroutines at once (the primaries are scanned concurrently).
func ScanKeys(ctx context.Context, rdb redis.UniversalClient, pattern string, fn func(ctx context.Context, keys []string) error) error {
	scan := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				if err := fn(ctx, keys); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		call := fn
		fn = func(ctx context.Context, keys []string) error {
			mu.Lock()
			defer mu.Unlock()
			return call(ctx, keys)
		}
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	}
	return scan(ctx, rdb)
}

// ZMembers calls fn with the members of the sorted set key in rank order,
// a page of at most page members at a time, until fn fails or the set is
// read to its end. fn must not add or remove members of key (ranks would
// shift under the pages).
func ZMembers(ctx context.Context, rdb redis.Cmdable, key string, page int64, fn func(ctx context.Context, members []string) error) error {
	for start := int64(0); ; start += page {
		list, err := rdb.ZRange(ctx, key, start, start+page-1).Result()
		if err != nil {
			return err
		}
		if len(list) > 0 {
			if err := fn(ctx, list); err != nil {
				return err
			}
		}
		if int64(len(list)) < page {
			return nil
		}
	}
}
