package redisqueue

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/pkg/redisx"
)

// eraseScript deletes deliveries of one shard: each leaves the schedule
// (so no worker claims it again, and the Complete of an attempt in flight
// finds its lease gone and records nothing), the parked set and the ended
// index, and its hash and attempt log are deleted. An ordered one leaves its
// line and the waiting index too (every delivery of a line is the
// account's: nothing is released).
//
//	KEYS: 1 schedule zset, 2 parked set, 3 ended index, 4 waiting index
//	ARGV: 1 delivery hash key prefix, 2 line key prefix, 3.. delivery ids
//	returns the event ids of the deliveries it found
var eraseScript = redis.NewScript(orderedLua + `
local evs = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local k = ARGV[1] .. id
  local f = redis.call('HMGET', k, 'endpoint', 'event')
  local l = line(k, ARGV[2])
  if l then redis.call('ZREM', l, id) end
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[3], id)
  if f[1] then redis.call('SREM', KEYS[2], f[1] .. '|' .. id) end
  if f[2] then evs[#evs + 1] = f[2] end
  redis.call('DEL', k, k .. ':att')
end
return evs
`)

// eraseChunk bounds the deliveries one erase script call deletes.
const eraseChunk = 200

// EraseAccount deletes what the delivery service keeps in Redis of an
// account outside the account's own hash tag: its deliveries (found in the
// account's index and, for any the index missed, in the parked sets by
// endpoint) with their attempt logs and schedule entries, and the
// per-endpoint state of endpoints (stats, limits, pending disables and
// operational events, watches, the parked-in-history list, the lines
// closed by parked work in history). Keys under
// wh:{a:<acct>} (the index itself) are left to the caller, which deletes
// the account's whole slot last. Idempotent; returns how many deliveries
// it deleted.
func (q *Queue) EraseAccount(ctx context.Context, accountID string, endpointIDs []string) (int, error) {
	ids, err := q.accountDeliveries(ctx, accountID, endpointIDs)
	if err != nil {
		return 0, err
	}
	chunks := chunkByShard(len(ids), func(i int) string { return ids[i] }, eraseChunk)
	calls := make([]redisx.ScriptCall, len(chunks))
	for j, c := range chunks {
		n := c.shard
		args := []any{dlvPrefix(n), linePrefix(n)}
		for _, i := range c.idx {
			args = append(args, ids[i])
		}
		calls[j] = redisx.ScriptCall{Script: eraseScript, Keys: []string{schedKey(n), parkedKey(n), endedKey(n), waitingKey(n)}, Args: args}
	}
	replies, errs := redisx.RunScripts(ctx, q.rdb, calls, nil)
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	// The events those deliveries belonged to leave the archiver's waiting
	// lists (the events themselves are ingestion's to delete).
	waiting := map[int][]any{}
	found := 0
	for _, r := range replies {
		evs, _ := r.([]any)
		found += len(evs)
		for _, e := range evs {
			if s, ok := e.(string); ok {
				n := EventWaitShard(s)
				waiting[n] = append(waiting[n], s)
			}
		}
	}
	_, err = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for n, evs := range waiting {
			p.ZRem(ctx, evtWaitKey(n), evs...)
		}
		for _, ep := range endpointIDs {
			n := Shard(ep)
			p.Del(ctx, epStatKey(ep), concKey(ep), rateKey(ep), legacyEpStatKey(ep), disableJobKey(ep))
			p.ZRem(ctx, disablesKey(n), ep)
			for _, t := range events.Catalogue() {
				if !t.Operational {
					continue
				}
				m := opMember(t.Name, ep)
				p.ZRem(ctx, opEventsKey(n), m)
				p.Del(ctx, opEventPrefix(n)+m, opEventPrefix(n)+m+":seen")
			}
			p.ZRem(ctx, opWatchKey(n), accountID+"|"+ep)
			p.SRem(ctx, parkedEndpointsKey, accountID+"|"+ep)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, ep := range endpointIDs { // lines closed by parked work in history
		if _, err := q.lines(ctx, "erase", ep, time.Time{}); err != nil {
			return 0, err
		}
	}
	return found, nil
}

// accountDeliveries lists an account's deliveries in Redis: its index, and
// the parked sets' entries of its endpoints (a delivery is parked by
// endpoint, and the index is written beside the delivery, not with it).
func (q *Queue) accountDeliveries(ctx context.Context, accountID string, endpointIDs []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	if err := redisx.ZMembers(ctx, q.rdb, accountKey(accountID), 1000, func(_ context.Context, list []string) error {
		for _, id := range list {
			add(id)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if len(endpointIDs) == 0 {
		return out, nil
	}
	mine := make(map[string]bool, len(endpointIDs))
	for _, ep := range endpointIDs {
		mine[ep] = true
	}
	for n := range Shards {
		if err := redisx.SMembers(ctx, q.rdb, parkedKey(n), 1000, func(_ context.Context, members []string) error {
			for _, m := range members {
				if ep, id, ok := strings.Cut(m, "|"); ok && mine[ep] {
					add(id)
				}
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}
