package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/changefeed"
	"github.com/voxscriber/webhooks/pkg/ratelimit"
	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/pkg/shard"
)

// Erasure (DeleteAccount, services/registry/internal/erasure):
//
//	wh:erasing                 zset  account ids being erased → when the erasure began (ms)
//	wh:{a:<acct>}:erasing      set   the account's endpoint ids, kept for the erasure
//	                                 (the endpoints themselves are deleted at its start)
//
// An account being erased has the field "erasing" in its hash: its keys
// resolve to nothing from the first step on.

// ErasingKey lists the accounts whose erasure began and has not finished.
const ErasingKey = "wh:erasing"

func erasingEndpointsKey(acct string) string { return tag(acct) + ":erasing" }

// beginEraseScript, on the account's slot: keeps the endpoint ids, deletes
// the endpoints and the key records, marks the account, bumps the version.
//
//	KEYS: 1 account, 2 endpoints zset, 3 kept endpoint ids, 4 keys hash,
//	      5 keys used, 6 version
//	ARGV: 1 endpoint key prefix
//	returns {kept endpoint ids, key record values}
var beginEraseScript = redis.NewScript(`
local eps = redis.call('ZRANGE', KEYS[2], 0, -1)
for i = 1, #eps, 500 do
  redis.call('SADD', KEYS[3], unpack(eps, i, math.min(i + 499, #eps)))
end
for _, id in ipairs(eps) do redis.call('DEL', ARGV[1] .. id) end
local keys = redis.call('HVALS', KEYS[4])
redis.call('DEL', KEYS[2], KEYS[4], KEYS[5])
redis.call('HSET', KEYS[1], 'erasing', '1')
redis.call('INCR', KEYS[6])
return {redis.call('SMEMBERS', KEYS[3]), keys}
`)

// BeginErase starts (or, after an interruption, resumes) an account's
// erasure: from its return on, none of the account's API keys resolves and
// its endpoints are gone (fan-out finds none; delivery cancels what it
// holds for them), and every cache was told. It returns the account's
// endpoint ids and when the erasure first began. NotFound for an account
// that does not exist and is not being erased.
func (s *Store) BeginErase(ctx context.Context, acct string) ([]string, time.Time, error) {
	began, err := s.rdb.ZScore(ctx, ErasingKey, acct).Result()
	switch {
	case errors.Is(err, redis.Nil):
		n, err := s.rdb.Exists(ctx, accountKey(acct)).Result()
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("erase account: %w", err)
		}
		if n == 0 {
			return nil, time.Time{}, apierr.NotFound("account", acct)
		}
		now := time.Now()
		if err := s.rdb.ZAddNX(ctx, ErasingKey, redis.Z{Score: float64(now.UnixMilli()), Member: acct}).Err(); err != nil {
			return nil, time.Time{}, fmt.Errorf("erase account: %w", err)
		}
		began = float64(now.UnixMilli())
	case err != nil:
		return nil, time.Time{}, fmt.Errorf("erase account: %w", err)
	}
	res, err := beginEraseScript.Run(ctx, s.rdb,
		[]string{accountKey(acct), endpointsKey(acct), erasingEndpointsKey(acct), keysKey(acct), keysUsedKey(acct), versionKey(acct)},
		tag(acct)+":ep:").Slice()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("erase account: %w", err)
	}
	eps := stringList(res[0])
	// The keys' lookup entries and rate limits live in other slots. A key
	// whose record is already gone (an interrupted run) is found by the
	// sweep in FinishErase.
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, rec := range stringList(res[1]) {
			var r keyRecord
			if json.Unmarshal([]byte(rec), &r) == nil && r.Hash != "" {
				p.Del(ctx, apiKeyKey(r.Hash))
				p.Del(ctx, ratelimit.Key(authn.KeyID(r.Hash)))
			}
		}
		p.Publish(ctx, changefeed.Channel, acct)
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("erase account: revoke keys: %w", err)
	}
	return eps, time.UnixMilli(int64(began)), nil
}

// FinishErase deletes what is left of an erased account in Redis once the
// other services erased theirs: every key under the account's hash tag
// (its record, endpoints' and keys' remains, its event and delivery
// indexes, idempotency markers, credit state, audit entries not moved),
// its audit entries in the delivery shards' slots,
// the lookup entries of keys from before keys were listed, and its place
// in the pending lists. The account is then gone.
func (s *Store) FinishErase(ctx context.Context, acct string) error {
	del := func(ctx context.Context, keys []string) error {
		return s.rdb.Unlink(ctx, keys...).Err() // one slot: the tag
	}
	if err := redisx.ScanKeys(ctx, s.rdb, tag(acct)+":*", del); err != nil {
		return fmt.Errorf("erase account: %w", err)
	}
	// A lookup entry names its account; a key never listed in :keys (one
	// from before keys were listed) is found only by its value.
	err := redisx.ScanKeys(ctx, s.rdb, apiKeyKey("*"), func(ctx context.Context, keys []string) error {
		vals := make([]*redis.StringCmd, len(keys))
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range keys {
				vals[i] = p.Get(ctx, k)
			}
			return nil
		}); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range keys {
				if v, err := vals[i].Result(); err == nil && v == acct {
					p.Del(ctx, k)
					p.Del(ctx, ratelimit.Key(authn.KeyID(k[len(apiKeyKey("")):])))
				}
			}
			return nil
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("erase account: API key lookups: %w", err)
	}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for n := range shard.Count { // delivery's audit entries (retries, replays) not moved yet
			p.Del(ctx, auditlog.ShardKey(n, acct))
			p.SRem(ctx, auditlog.ShardIndexKey(n), acct)
		}
		p.SRem(ctx, auditlog.PendingKey, acct)
		p.ZRem(ctx, ErasingKey, acct)
		p.Publish(ctx, changefeed.Channel, acct)
		return nil
	})
	if err != nil {
		return fmt.Errorf("erase account: %w", err)
	}
	return nil
}

// Erasing lists the accounts whose erasure began and has not finished,
// with when each began.
func (s *Store) Erasing(ctx context.Context) (map[string]time.Time, error) {
	zs, err := s.rdb.ZRangeWithScores(ctx, ErasingKey, 0, -1).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]time.Time, len(zs))
	for _, z := range zs {
		if m, ok := z.Member.(string); ok {
			out[m] = time.UnixMilli(int64(z.Score))
		}
	}
	return out, nil
}

func stringList(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		switch s := x.(type) {
		case string:
			out = append(out, s)
		case int64:
			out = append(out, strconv.FormatInt(s, 10))
		}
	}
	return out
}
