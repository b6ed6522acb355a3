package redisqueue

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// Keys of operational events, tagged with the shard of the endpoint id
// (n = Shard(endpoint)) like the failure rules' keys, so one script folds
// an occurrence on one Redis Cluster slot. m = "<type>|<endpoint>".
//
//	wh:opevt:{s<n>}             zset  pending operational events: m → due
//	                                  (or lease-until) ms
//	wh:opevt:{s<n>}:<m>         hash  account, data (JSON, latest
//	                                  occurrence), tp (its traceparent),
//	                                  n (occurrences not yet published),
//	                                  seq + opened (the pending event's
//	                                  identity), last (ms of the last
//	                                  publication), tries; while claimed: cn,
//	                                  cdata, ctp (count and data fixed at the
//	                                  first claim)
//	wh:opevt:{s<n>}:<m>:seen    set   occurrence keys counted (a repeat
//	                                  counts nothing)
//	wh:opwatch:{s<n>}           zset  "<account>|<endpoint>" → ms the system
//	                                  disabled it: watched for re-enabling
//
// All expire after DELIVERY_RETENTION (re-armed by every fold).

func opEventsKey(n int) string                     { return "wh:opevt:{s" + strconv.Itoa(n) + "}" }
func opEventPrefix(n int) string                   { return opEventsKey(n) + ":" }
func opMember(eventType, endpointID string) string { return eventType + "|" + endpointID }
func opWatchKey(n int) string                      { return "wh:opwatch:{s" + strconv.Itoa(n) + "}" }

var _ delivery.OpEvents = (*Queue)(nil)

// foldScript counts an occurrence into the pending event of its endpoint
// and type, once per occurrence key; the first one opens the pending event,
// due at max(now + delay, last publication + window).
//
//	KEYS: 1 pending zset, 2 pending hash, 3 seen set
//	ARGV: 1 member, 2 occurrence key, 3 now ms, 4 delay ms, 5 window ms,
//	      6 ttl ms, 7 account, 8 data JSON, 9 traceparent
//	returns 1 when counted, 0 for a repeat
var foldScript = redis.NewScript(`
if redis.call('SADD', KEYS[3], ARGV[2]) == 0 then return 0 end
redis.call('PEXPIRE', KEYS[3], ARGV[6])
local n = redis.call('HINCRBY', KEYS[2], 'n', 1)
redis.call('HSET', KEYS[2], 'account', ARGV[7], 'data', ARGV[8], 'tp', ARGV[9])
if n == 1 then
  local last = tonumber(redis.call('HGET', KEYS[2], 'last') or '0') or 0
  local due = math.max(tonumber(ARGV[3]) + tonumber(ARGV[4]), last + tonumber(ARGV[5]))
  redis.call('HINCRBY', KEYS[2], 'seq', 1)
  redis.call('HSET', KEYS[2], 'opened', ARGV[3], 'tries', 0)
  redis.call('ZADD', KEYS[1], due, ARGV[1])
end
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 1
`)

// claimOpEventsScript leases the due pending events of one shard, as
// claimScript does deliveries, fixing each one's count and data at its
// first claim. Entries whose hash expired or that hold nothing are dropped.
//
//	KEYS: 1 pending zset
//	ARGV: 1 now ms, 2 lease-until ms, 3 limit, 4 hash prefix
//	returns {member1, {hash fields...}, member2, ...}
var claimOpEventsScript = redis.NewScript(`
local ms = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, m in ipairs(ms) do
  local k = ARGV[4] .. m
  if (tonumber(redis.call('HGET', k, 'n') or '0') or 0) > 0 then
    if not redis.call('HGET', k, 'cn') then
      local f = redis.call('HMGET', k, 'n', 'data', 'tp')
      redis.call('HSET', k, 'cn', f[1], 'cdata', f[2] or '{}', 'ctp', f[3] or '')
    end
    redis.call('ZADD', KEYS[1], ARGV[2], m)
    out[#out + 1] = m
    out[#out + 1] = redis.call('HGETALL', k)
  else
    redis.call('ZREM', KEYS[1], m)
  end
end
return out
`)

// opPublishedScript marks a claimed pending event published, if the lease
// is still held and it is still that event: occurrences counted since its
// claim open the next one, due a window later.
//
//	KEYS: 1 pending zset, 2 pending hash
//	ARGV: 1 member, 2 lease ms, 3 seq, 4 now ms, 5 window ms
//	returns 1 when marked, 0 when the lease was lost
var opPublishedScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not s) or tonumber(s) ~= tonumber(ARGV[2]) or redis.call('HGET', KEYS[2], 'seq') ~= ARGV[3] then return 0 end
local left = (tonumber(redis.call('HGET', KEYS[2], 'n') or '0') or 0) - (tonumber(redis.call('HGET', KEYS[2], 'cn') or '0') or 0)
if left < 0 then left = 0 end
redis.call('HDEL', KEYS[2], 'cn', 'cdata', 'ctp')
redis.call('HSET', KEYS[2], 'last', ARGV[4], 'n', left, 'tries', 0)
if left > 0 then
  redis.call('HINCRBY', KEYS[2], 'seq', 1)
  redis.call('HSET', KEYS[2], 'opened', ARGV[4])
  redis.call('ZADD', KEYS[1], tonumber(ARGV[4]) + tonumber(ARGV[5]), ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
`)

// opRetryScript makes a claimed pending event due again at ARGV[4], if the
// lease is still held and it is still that event.
//
//	KEYS: 1 pending zset, 2 pending hash
//	ARGV: 1 member, 2 lease ms, 3 seq, 4 next ms, 5 tries
var opRetryScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not s) or tonumber(s) ~= tonumber(ARGV[2]) or redis.call('HGET', KEYS[2], 'seq') ~= ARGV[3] then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('HSET', KEYS[2], 'tries', ARGV[5])
return 1
`)

// unwatchScript forgets a watched endpoint unless it was disabled again
// since (another score).
//
//	KEYS: 1 watch zset
//	ARGV: 1 member, 2 disabled ms
var unwatchScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
`)

// Fold implements delivery.OpEvents.
func (q *Queue) Fold(ctx context.Context, o delivery.Occurrence, now time.Time, delay, window time.Duration) error {
	data, err := json.Marshal(o.Data)
	if err != nil {
		return fmt.Errorf("operational event data: %w", err)
	}
	n, m := Shard(o.EndpointID), opMember(o.Type, o.EndpointID)
	h := opEventPrefix(n) + m
	return foldScript.Run(ctx, q.rdb, []string{opEventsKey(n), h, h + ":seen"},
		m, o.Key, now.UnixMilli(), delay.Milliseconds(), window.Milliseconds(), q.retention.Milliseconds(),
		o.AccountID, string(data), o.TraceParent).Err()
}

// ClaimOpEvents implements delivery.OpEvents: one claim script per shard,
// in one pipeline.
func (q *Queue) ClaimOpEvents(ctx context.Context, now, leaseUntil time.Time, limit int) ([]delivery.PendingOpEvent, error) {
	calls := make([]redisx.ScriptCall, Shards)
	for n := range Shards {
		calls[n] = redisx.ScriptCall{Script: claimOpEventsScript, Keys: []string{opEventsKey(n)},
			Args: []any{now.UnixMilli(), leaseUntil.UnixMilli(), limit, opEventPrefix(n)}}
	}
	replies, errs := redisx.RunScripts(ctx, q.rdb, calls, nil)
	var out []delivery.PendingOpEvent
	var firstErr error
	for n := range Shards {
		if errs[n] != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("claim operational events of shard %d: %w", n, errs[n])
			}
			continue
		}
		items, _ := replies[n].([]any)
		for j := 0; j+1 < len(items); j += 2 {
			member, _ := items[j].(string)
			typ, ep, _ := strings.Cut(member, "|")
			fields, _ := items[j+1].([]any)
			f := make(map[string]string, len(fields)/2)
			for k := 0; k+1 < len(fields); k += 2 {
				ks, _ := fields[k].(string)
				vs, _ := fields[k+1].(string)
				f[ks] = vs
			}
			var data map[string]any
			if err := json.Unmarshal([]byte(f["cdata"]), &data); err != nil || data == nil {
				data = map[string]any{}
			}
			count, _ := strconv.Atoi(f["cn"])
			tries, _ := strconv.Atoi(f["tries"])
			seq, _ := strconv.ParseInt(f["seq"], 10, 64)
			opened, _ := strconv.ParseInt(f["opened"], 10, 64)
			out = append(out, delivery.PendingOpEvent{
				AccountID: f["account"], EndpointID: ep, Type: typ, Data: data, Count: count,
				Seq: seq, Opened: opened, TraceParent: f["ctp"], Tries: tries,
				LeaseUntil: time.UnixMilli(leaseUntil.UnixMilli()),
			})
		}
	}
	return out, firstErr
}

// OpEventPublished implements delivery.OpEvents.
func (q *Queue) OpEventPublished(ctx context.Context, p delivery.PendingOpEvent, now time.Time, window time.Duration) (bool, error) {
	n, m := Shard(p.EndpointID), opMember(p.Type, p.EndpointID)
	r, err := opPublishedScript.Run(ctx, q.rdb, []string{opEventsKey(n), opEventPrefix(n) + m},
		m, p.LeaseUntil.UnixMilli(), p.Seq, now.UnixMilli(), window.Milliseconds()).Int()
	return r == 1, err
}

// RetryOpEvent implements delivery.OpEvents.
func (q *Queue) RetryOpEvent(ctx context.Context, p delivery.PendingOpEvent, next time.Time) (bool, error) {
	n, m := Shard(p.EndpointID), opMember(p.Type, p.EndpointID)
	r, err := opRetryScript.Run(ctx, q.rdb, []string{opEventsKey(n), opEventPrefix(n) + m},
		m, p.LeaseUntil.UnixMilli(), p.Seq, next.UnixMilli(), p.Tries).Int()
	return r == 1, err
}

// WatchDisabled implements delivery.OpEvents.
func (q *Queue) WatchDisabled(ctx context.Context, w delivery.WatchedEndpoint) error {
	key := opWatchKey(Shard(w.EndpointID))
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, redis.Z{Score: float64(w.DisabledAt.UnixMilli()), Member: w.AccountID + "|" + w.EndpointID})
		p.PExpire(ctx, key, q.retention)
		return nil
	})
	return err
}

// Watched implements delivery.OpEvents.
func (q *Queue) Watched(ctx context.Context, limit int) ([]delivery.WatchedEndpoint, error) {
	cmds := make([]*redis.ZSliceCmd, Shards)
	if _, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for n := range Shards {
			cmds[n] = p.ZRangeWithScores(ctx, opWatchKey(n), 0, int64(limit)-1)
		}
		return nil
	}); err != nil && err != redis.Nil {
		return nil, err
	}
	var out []delivery.WatchedEndpoint
	for n := range Shards {
		for _, z := range cmds[n].Val() {
			m, _ := z.Member.(string)
			acct, ep, ok := strings.Cut(m, "|")
			if ok && len(out) < limit {
				out = append(out, delivery.WatchedEndpoint{AccountID: acct, EndpointID: ep, DisabledAt: time.UnixMilli(int64(z.Score))})
			}
		}
	}
	return out, nil
}

// Unwatch implements delivery.OpEvents.
func (q *Queue) Unwatch(ctx context.Context, w delivery.WatchedEndpoint) error {
	return unwatchScript.Run(ctx, q.rdb, []string{opWatchKey(Shard(w.EndpointID))},
		w.AccountID+"|"+w.EndpointID, w.DisabledAt.UnixMilli()).Err()
}
