package redisx

import (
	"context"
	"errors"
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

// SMembers calls fn with the members of the set key, a page of about page
// members at a time (SSCAN: a member present throughout is met at least
// once, possibly twice), until fn fails or the set is read to its end. fn
// may add or remove members. ErrStop from fn ends the scan without error.
func SMembers(ctx context.Context, rdb redis.Cmdable, key string, page int64, fn func(ctx context.Context, members []string) error) error {
	var cur uint64
	for {
		members, next, err := rdb.SScan(ctx, key, cur, "", page).Result()
		if err != nil {
			return err
		}
		if len(members) > 0 {
			if err := fn(ctx, members); errors.Is(err, ErrStop) {
				return nil
			} else if err != nil {
				return err
			}
		}
		if cur = next; cur == 0 {
			return nil
		}
	}
}

// ErrStop, returned by SMembers' fn, ends the scan early without error.
var ErrStop = errors.New("redisx: stop the scan")
