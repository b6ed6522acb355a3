package redisqueue

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/redisx"
)

// The upgrade from the build before the history tier (issue #12 item 4).
// That build wrote delivery hashes without `ver`, no wh:ended index, and
// kept ended and parked deliveries (and their attempt lists) in Redis with
// a TTL of DELIVERY_RETENTION, indexed per account by create time. Nothing
// of this build's would ever archive them: the archiver only reads
// wh:ended, so they would sit in Redis until their TTL and then be gone
// from both tiers.
//
// AdoptLegacy files them the way this build's scripts would have: each
// hash without `ver` gets ver 1; an ended one (succeeded, failed,
// canceled) joins its shard's ended index due at its end, a parked one due
// PARKED_MOVE_AFTER after it was parked (and its parked-set entry); every
// one, live ones included, stops expiring; its account-index entry is
// rescored by the time part of its id. It is idempotent (a hash that has a
// `ver` is this build's and left alone; ZADD NX keeps an index entry this
// build wrote), works in bounded batches, and several delivery processes
// may run it at once.

// legacyDoneKey marks that a full sweep found no record of the old layout:
// later processes skip the sweep.
const legacyDoneKey = "wh:legacy:prehistory:done"

// adoptScript adopts the old-layout deliveries of one shard.
//
//	KEYS: 1 ended index, 2 parked set
//	ARGV: 1 delivery hash key prefix, 2 parked move-after ms, then ids
//	returns the account of each adopted delivery, '' for one left alone
var adoptScript = redis.NewScript(`
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local k = ARGV[1] .. id
  local f = redis.call('HMGET', k, 'ver', 'status', 'updated', 'endpoint', 'account')
  if f[1] or not f[5] then
    out[#out + 1] = ''
  else
    redis.call('HSET', k, 'ver', 1)
    redis.call('PERSIST', k)
    redis.call('PERSIST', k .. ':att')
    local st, upd = f[2], math.max(tonumber(f[3] or '0') or 0, 1)
    if st == 'succeeded' or st == 'failed' or st == 'canceled' then
      redis.call('ZADD', KEYS[1], 'NX', upd, id)
    elseif st == 'parked' then
      redis.call('SADD', KEYS[2], (f[4] or '') .. '|' .. id)
      redis.call('ZADD', KEYS[1], 'NX', upd + tonumber(ARGV[2]), id)
    end
    out[#out + 1] = f[5]
  end
end
return out
`)

// AdoptLegacy sweeps every delivery hash once (SCAN on every primary) and
// adopts those of the old layout (see above). It returns how many it
// adopted; when a full sweep adopted none it records that, and later calls
// return at once.
func (q *Queue) AdoptLegacy(ctx context.Context) (int, error) {
	return q.sweepOnce(ctx, legacyDoneKey, func() (int, error) {
		adopted := 0 // ScanKeys never calls back from two goroutines at once
		err := redisx.ScanKeys(ctx, q.rdb, "wh:dlv:{s*}:*", func(ctx context.Context, keys []string) error {
			n, err := q.adopt(ctx, keys)
			adopted += n
			return err
		})
		return adopted, err
	})
}

// sweepOnce runs an upgrade sweep unless doneKey records that one found
// nothing to do, and records that when this one found nothing (and did
// not fail); it returns what the sweep did.
func (q *Queue) sweepOnce(ctx context.Context, doneKey string, sweep func() (int, error)) (int, error) {
	if n, err := q.rdb.Exists(ctx, doneKey).Result(); err != nil || n == 1 {
		return 0, err
	}
	done, err := sweep()
	if err == nil && done == 0 {
		err = q.rdb.Set(ctx, doneKey, time.Now().UTC().Format(time.RFC3339), 0).Err()
	}
	return done, err
}

// adopt runs adoptScript on the delivery hashes among keys, per shard,
// then rescores the adopted ones' account-index entries (another slot: a
// crash before it leaves create-time scores, which the next sweep cannot
// see again; they differ from the id's time by milliseconds).
func (q *Queue) adopt(ctx context.Context, keys []string) (int, error) {
	var ids []string
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, "wh:dlv:{s")
		if !ok || strings.HasSuffix(k, ":att") {
			continue
		}
		sn, id, ok := strings.Cut(rest, "}:")
		n, err := strconv.Atoi(sn)
		if !ok || err != nil || strings.Contains(id, ":") || Shard(id) != n {
			continue
		}
		ids = append(ids, id)
	}
	adopted := 0
	byAccount := map[string][]redis.Z{}
	for _, c := range chunkByShard(len(ids), func(i int) string { return ids[i] }, 0) {
		n := c.shard
		args := []any{dlvPrefix(n), q.parkedMoveAfter.Milliseconds()}
		for _, i := range c.idx {
			args = append(args, ids[i])
		}
		res, err := q.runScript(ctx, adoptScript, []string{endedKey(n), parkedKey(n)}, args...)
		if err != nil {
			return adopted, err
		}
		accts, _ := res.([]any)
		for k, a := range accts {
			acct, _ := a.(string)
			if acct == "" || k >= len(c.idx) {
				continue
			}
			adopted++
			id := ids[c.idx[k]]
			byAccount[acct] = append(byAccount[acct], redis.Z{Score: idScore(id, time.Now()), Member: id})
		}
	}
	if len(byAccount) > 0 {
		if _, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for acct, zs := range byAccount {
				p.ZAddXX(ctx, accountKey(acct), zs...)
			}
			return nil
		}); err != nil {
			return adopted, err
		}
	}
	return adopted, nil
}

// The upgrade from the build before ordered parked work moved to history:
// that build filed an ordered parked delivery in the ended index at
// PARKED_RETENTION (it stayed in Redis heading its line until it expired
// there). RefileOrderedParked files each such delivery at parked +
// PARKED_MOVE_AFTER, as this build's complete script does, so that it and
// its line move to history in turn instead of holding RAM for the
// retention.

// refiledDoneKey marks that a full sweep found none to refile.
const refiledDoneKey = "wh:legacy:orderedparked:done"

// refileScript refiles the ordered parked deliveries among ids (one shard).
//
//	KEYS: 1 ended index
//	ARGV: 1 delivery hash key prefix, 2 parked move-after ms, then ids
//	returns how many it refiled
var refileScript = redis.NewScript(`
local n = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local f = redis.call('HMGET', ARGV[1] .. id, 'status', 'okey', 'updated')
  if f[1] == 'parked' and f[2] and f[2] ~= '' then
    local at = math.max(tonumber(f[3] or '0') or 0, 1) + tonumber(ARGV[2])
    local cur = redis.call('ZSCORE', KEYS[1], id)
    if cur and tonumber(cur) > at then
      redis.call('ZADD', KEYS[1], 'XX', at, id)
      n = n + 1
    end
  end
end
return n
`)

// RefileOrderedParked sweeps the parked sets once and refiles (see above);
// it returns how many it refiled, and when a full sweep refiled none it
// records that, and later calls return at once.
func (q *Queue) RefileOrderedParked(ctx context.Context) (int, error) {
	return q.sweepOnce(ctx, refiledDoneKey, func() (int, error) {
		total := 0
		for n := range Shards {
			if err := redisx.SMembers(ctx, q.rdb, parkedKey(n), 500, func(ctx context.Context, members []string) error {
				args := []any{dlvPrefix(n), q.parkedMoveAfter.Milliseconds()}
				for _, m := range members {
					if _, id, ok := strings.Cut(m, "|"); ok {
						args = append(args, id)
					}
				}
				res, err := q.runScript(ctx, refileScript, []string{endedKey(n)}, args...)
				c, _ := res.(int64)
				total += int(c)
				return err
			}); err != nil {
				return total, err
			}
		}
		return total, nil
	})
}
