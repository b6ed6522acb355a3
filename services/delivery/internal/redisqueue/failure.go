package redisqueue

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/autobatch"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// Keys of the failure rules:
//
//	wh:epstat:{e:<endpoint>}   hash  ok: last success (ms); dis: when the
//	                                 system last decided to disable it (ms)
//
// The parked sets wh:parked:{s<n>} (see queue.go) hold "<endpoint>|<id>";
// Parked sweeps them, Restart empties them.

func epStatKey(endpointID string) string { return "wh:epstat:{e:" + endpointID + "}" }

var _ delivery.EndpointStats = (*Queue)(nil)

// restartScript makes a delivery pending, due now, with a fresh round of
// the schedule (base = attempts so far, first attempt unset), if its status
// is one of ARGV[3..]. Its parked-set entry goes either way unless it stays
// parked.
//
//	KEYS: 1 schedule zset, 2 delivery hash, 3 parked set
//	ARGV: 1 id, 2 now ms, 3.. statuses accepted
//	returns 1 when restarted, 0 when in another status, -1 when missing
var restartScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[2], 'status')
if not st then return -1 end
local member = (redis.call('HGET', KEYS[2], 'endpoint') or '') .. '|' .. ARGV[1]
local ok = false
for i = 3, #ARGV do
  if ARGV[i] == st then ok = true end
end
if not ok then
  if st ~= 'parked' then redis.call('SREM', KEYS[3], member) end
  return 0
end
local att = redis.call('HGET', KEYS[2], 'attempts') or '0'
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], 'status', 'pending', 'next', ARGV[2], 'updated', ARGV[2], 'lease', 0, 'base', att, 'first', 0)
redis.call('SREM', KEYS[3], member)
return 1
`)

// successScript raises an endpoint's last-success time.
//
//	KEYS: 1 endpoint stats hash
//	ARGV: 1 time ms, 2 ttl ms
var successScript = redis.NewScript(`
local ok = tonumber(redis.call('HGET', KEYS[1], 'ok') or '0') or 0
if ok < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'ok', ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// disableScript decides, once, that an endpoint is to be disabled: not
// when the system already decided so since ARGV[1], nor (unless forced)
// when it succeeded since then.
//
//	KEYS: 1 endpoint stats hash
//	ARGV: 1 since ms, 2 now ms, 3 force ('1'), 4 ttl ms
//	returns 1 when the caller is to disable the endpoint
var disableScript = redis.NewScript(`
local ok = tonumber(redis.call('HGET', KEYS[1], 'ok') or '0') or 0
local dis = tonumber(redis.call('HGET', KEYS[1], 'dis') or '0') or 0
local since = tonumber(ARGV[1])
if dis >= since then return 0 end
if ARGV[3] ~= '1' and ok >= since then return 0 end
redis.call('HSET', KEYS[1], 'dis', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`)

// successMark is one success of an endpoint (ms).
type successMark struct {
	endpointID string
	at         int64
}

// newSuccessBatcher returns the batcher of MarkSuccess: the marks of one
// endpoint in a batch become one script call with the latest time (the
// script keeps the maximum anyway), so a busy endpoint costs one call per
// batch rather than one per delivery.
func newSuccessBatcher(rdb redis.UniversalClient, retention time.Duration) *autobatch.Batcher[successMark, struct{}] {
	return autobatch.New(autobatch.DefaultMax, autobatch.DefaultSenders, autobatch.DefaultTimeout, func(ctx context.Context, marks []successMark) ([]struct{}, []error) {
		latest := map[string]int64{}
		var order []string
		for _, m := range marks {
			if _, ok := latest[m.endpointID]; !ok {
				order = append(order, m.endpointID)
			}
			latest[m.endpointID] = max(latest[m.endpointID], m.at)
		}
		calls := make([]scriptCall, len(order))
		for i, ep := range order {
			calls[i] = scriptCall{successScript, []string{epStatKey(ep)}, []any{latest[ep], retention.Milliseconds()}}
		}
		_, errs := runScripts(ctx, rdb, calls, nil)
		byEndpoint := make(map[string]error, len(order))
		for i, ep := range order {
			if !errors.Is(errs[i], redis.Nil) {
				byEndpoint[ep] = errs[i]
			}
		}
		out := make([]error, len(marks))
		for i, m := range marks {
			out[i] = byEndpoint[m.endpointID]
		}
		return make([]struct{}, len(marks)), out
	})
}

// MarkSuccess implements delivery.EndpointStats.
func (q *Queue) MarkSuccess(ctx context.Context, endpointID string, at time.Time) error {
	_, err := q.successes.Do(ctx, successMark{endpointID, at.UnixMilli()})
	return err
}

// ClaimDisable implements delivery.EndpointStats.
func (q *Queue) ClaimDisable(ctx context.Context, endpointID string, since, now time.Time, force bool) (bool, error) {
	n, err := disableScript.Run(ctx, q.rdb, []string{epStatKey(endpointID)},
		since.UnixMilli(), now.UnixMilli(), boolField(force), q.retention.Milliseconds()).Int()
	return n == 1, err
}

// Restart implements delivery.Log.
func (q *Queue) Restart(ctx context.Context, ids []string, from []delivery.Status, now time.Time) (int, error) {
	total := 0
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 500)]
		ids = ids[len(batch):]
		calls := make([]scriptCall, len(batch))
		for i, id := range batch {
			n := Shard(id)
			args := []any{id, now.UnixMilli()}
			for _, s := range from {
				args = append(args, string(s))
			}
			calls[i] = scriptCall{restartScript, []string{schedKey(n), dlvPrefix(n) + id, parkedKey(n)}, args}
		}
		replies, errs := runScripts(ctx, q.rdb, calls, nil)
		for i, err := range errs {
			if err != nil {
				return total, err
			}
			if replies[i] == int64(1) {
				total++
			}
		}
	}
	if total > 0 {
		_ = q.rdb.Publish(ctx, WakeChannel, "1").Err()
	}
	return total, nil
}

// Parked implements delivery.Log: it reads up to limit entries of the
// parked sets, dropping those whose delivery has expired.
func (q *Queue) Parked(ctx context.Context, limit int) ([]delivery.ParkedEndpoint, error) {
	groups := map[string]*delivery.ParkedEndpoint{}
	var order []string
	seen := 0
	for n := 0; n < Shards && seen < limit; n++ {
		var cur uint64
		for {
			members, next, err := q.rdb.SScan(ctx, parkedKey(n), cur, "", 1000).Result()
			if err != nil {
				return nil, err
			}
			accts := make([]*redis.StringCmd, len(members))
			if _, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i, m := range members {
					_, id, _ := strings.Cut(m, "|")
					accts[i] = p.HGet(ctx, dlvPrefix(n)+id, "account")
				}
				return nil
			}); err != nil && err != redis.Nil {
				return nil, err
			}
			var gone []any
			for i, m := range members {
				ep, id, _ := strings.Cut(m, "|")
				acct := accts[i].Val()
				if acct == "" {
					gone = append(gone, m)
					continue
				}
				k := acct + "|" + ep
				g := groups[k]
				if g == nil {
					g = &delivery.ParkedEndpoint{AccountID: acct, EndpointID: ep}
					groups[k] = g
					order = append(order, k)
				}
				g.IDs = append(g.IDs, id)
				seen++
			}
			if len(gone) > 0 {
				_ = q.rdb.SRem(ctx, parkedKey(n), gone...).Err()
			}
			cur = next
			if cur == 0 || seen >= limit {
				break
			}
		}
	}
	out := make([]delivery.ParkedEndpoint, len(order))
	for i, k := range order {
		out[i] = *groups[k]
	}
	return out, nil
}

// maxFindScan bounds the index entries one Find reads.
const maxFindScan = 500_000

// Find implements delivery.Log: ids of the account's deliveries to
// endpointID created at or after since whose status is one of statuses,
// oldest first, at most limit.
func (q *Queue) Find(ctx context.Context, accountID, endpointID string, statuses []delivery.Status, since time.Time, limit int) ([]string, error) {
	key := accountKey(accountID)
	want := map[string]bool{}
	for _, s := range statuses {
		want[string(s)] = true
	}
	var out []string
	const chunk = 1000
	for off := int64(0); off < maxFindScan && len(out) < limit; off += chunk {
		ids, err := q.rdb.ZRangeByScore(ctx, key, &redis.ZRangeBy{
			Min: strconv.FormatInt(since.UnixMilli(), 10), Max: "+inf", Offset: off, Count: chunk,
		}).Result()
		if err != nil {
			return nil, err
		}
		vals := make([]*redis.SliceCmd, len(ids))
		if _, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				vals[i] = p.HMGet(ctx, DeliveryKey(id), "endpoint", "status", "account")
			}
			return nil
		}); err != nil {
			return nil, err
		}
		for i, id := range ids {
			v := vals[i].Val()
			if len(v) != 3 {
				continue
			}
			ep, _ := v[0].(string)
			st, _ := v[1].(string)
			acct, _ := v[2].(string)
			if ep == endpointID && want[st] && acct == accountID { // the index files ids; the record says whose
				out = append(out, id)
				if len(out) == limit {
					break
				}
			}
		}
		if len(ids) < chunk {
			break
		}
	}
	return out, nil
}
