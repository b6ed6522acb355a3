package redisqueue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/autobatch"
	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// Keys of the failure rules, all tagged with the shard of the endpoint id
// (n = Shard(endpoint)), so that one script decides and records the
// pending work together, on one Redis Cluster slot:
//
//	wh:epstat:{s<n>}:<endpoint>    hash  ok: last success (ms); dis: when the
//	                                     system last decided to disable it (ms)
//	wh:disabling:{s<n>}            zset  pending disables: endpoint → due (or
//	                                     lease-until) ms
//	wh:disabling:{s<n>}:<endpoint> hash  a pending disable: account, url,
//	                                     reason, lasterr, decided (ms), notify
//	                                     ('1' once the registry confirmed),
//	                                     tries, err
//
// The parked sets wh:parked:{s<n>} (see queue.go) hold "<endpoint>|<id>";
// Parked sweeps them, Restart empties them.

func epStatKey(endpointID string) string {
	return "wh:epstat:{s" + strconv.Itoa(Shard(endpointID)) + "}:" + endpointID
}

// EndpointStatsKey is the hash of an endpoint's stats (its success mark
// and disable decision), as DeliveryKey names a delivery's.
func EndpointStatsKey(endpointID string) string { return epStatKey(endpointID) }
func disablesKey(n int) string                  { return "wh:disabling:{s" + strconv.Itoa(n) + "}" }
func disablePrefix(n int) string                { return disablesKey(n) + ":" }
func disableJobKey(endpointID string) string    { return disablePrefix(Shard(endpointID)) + endpointID }

// legacyEpStatKey is where endpoint stats lived before they moved to the
// endpoint's shard. ClaimDisable still reads it (never writes it), so the
// marks and decisions made before an upgrade count; it can go once one
// DELIVERY_RETENTION has passed since the upgrade (the keys expire).
func legacyEpStatKey(endpointID string) string { return "wh:epstat:{e:" + endpointID + "}" }

var _ delivery.EndpointStats = (*Queue)(nil)

// restartScript makes a delivery pending, due now, with a fresh round of
// the schedule (base = attempts so far, first attempt unset), if its status
// is one of ARGV[3..] and it is not a test delivery (Send Test: it has no
// event to send again, and is never retried). Its parked-set entry goes
// either way unless it stays parked. An ordered delivery joins the tail of
// its line unless it is in it (a parked head keeps its place).
//
//	KEYS: 1 schedule zset, 2 delivery hash, 3 parked set, 4 ended index,
//	      5 waiting index
//	ARGV: 1 id, 2 now ms, 3 line key prefix, 4 when the archiver takes it
//	      if it waits behind parked work in history (ms; gate), 5..
//	      statuses accepted
//	returns 1 when restarted, 0 when in another status or a test, -1 when missing
var restartScript = redis.NewScript(orderedLua + `
local st = redis.call('HGET', KEYS[2], 'status')
if not st then return -1 end
local member = (redis.call('HGET', KEYS[2], 'endpoint') or '') .. '|' .. ARGV[1]
local ok = redis.call('HGET', KEYS[2], 'test') ~= '1'
local wanted = false
for i = 5, #ARGV do
  if ARGV[i] == st then wanted = true end
end
ok = ok and wanted
if not ok then
  if st ~= 'parked' then redis.call('SREM', KEYS[3], member) end
  return 0
end
local att = redis.call('HGET', KEYS[2], 'attempts') or '0'
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], 'status', 'pending', 'next', ARGV[2], 'updated', ARGV[2], 'lease', 0, 'base', att, 'first', 0)
redis.call('HINCRBY', KEYS[2], 'ver', 1)
redis.call('SREM', KEYS[3], member)
redis.call('ZREM', KEYS[4], ARGV[1])
gate(KEYS[1], KEYS[5], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[3], KEYS[4], ARGV[4])
return 1
`)

// successScript raises an endpoint's last-success time.
//
//	KEYS: 1 endpoint stats hash
//	ARGV: 1 time ms, 2 ttl ms
var successScript = redis.NewScript(raiseOKLua + `
raiseOK(KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// raiseOKLua defines raiseOK(k, t, ttl): endpoint stats hash k's
// last-success time (field ok, ms) becomes t unless it is later already;
// k expires ttl ms from now, give or take a minute: the expiry is renewed
// only once less than that is left (at most once a minute for a busy
// endpoint, which spares a write, and its AOF record, per success).
// successScript and completeScript share it.
const raiseOKLua = `
local function raiseOK(k, t, ttl)
  local ok = tonumber(redis.call('HGET', k, 'ok') or '0') or 0
  if ok < tonumber(t) then redis.call('HSET', k, 'ok', t) end
  ttl = tonumber(ttl)
  if redis.call('PTTL', k) < math.max(ttl - 60000, ttl / 2) then redis.call('PEXPIRE', k, ttl) end
end
`

// disableScript decides, once, that an endpoint is to be disabled: not
// when the system already decided so since ARGV[1], nor (unless forced)
// when it succeeded since then. A decision is recorded together with the
// work it implies: the pending disable (its hash, and its entry in the
// shard's pending set, due now). A pending disable the registry has not
// confirmed yet is kept as it is (it does the same); one that only waits
// for its notice is replaced (a new disable, a new notice).
//
//	KEYS: 1 endpoint stats hash, 2 pending disables zset, 3 pending disable hash
//	ARGV: 1 since ms, 2 now ms, 3 force ('1'), 4 ttl ms, 5 legacy ok ms,
//	      6 legacy dis ms, 7 endpoint, 8 account, 9 url, 10 reason, 11 last error
//	returns 1 when the endpoint is to be disabled
var disableScript = redis.NewScript(`
local ok = math.max(tonumber(redis.call('HGET', KEYS[1], 'ok') or '0') or 0, tonumber(ARGV[5]) or 0)
local dis = math.max(tonumber(redis.call('HGET', KEYS[1], 'dis') or '0') or 0, tonumber(ARGV[6]) or 0)
local since = tonumber(ARGV[1])
if dis >= since then return 0 end
if ARGV[3] ~= '1' and ok >= since then return 0 end
redis.call('HSET', KEYS[1], 'dis', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if redis.call('HGET', KEYS[3], 'notify') ~= '0' then
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[3], 'account', ARGV[8], 'url', ARGV[9], 'reason', ARGV[10], 'lasterr', ARGV[11],
    'decided', ARGV[2], 'notify', '0', 'tries', 0, 'err', '')
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[7])
end
return 1
`)

// claimDisablesScript leases the due pending disables of one shard, as
// claimScript does deliveries: re-scored to the lease's end, so a crashed
// process's work comes due again. Entries whose hash expired are dropped.
//
//	KEYS: 1 pending disables zset
//	ARGV: 1 now ms, 2 lease-until ms, 3 limit, 4 pending disable hash prefix
//	returns {endpoint1, {hash fields...}, endpoint2, ...}
var claimDisablesScript = redis.NewScript(`
local eps = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, ep in ipairs(eps) do
  local k = ARGV[4] .. ep
  if redis.call('EXISTS', k) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[2], ep)
    out[#out + 1] = ep
    out[#out + 1] = redis.call('HGETALL', k)
  else
    redis.call('ZREM', KEYS[1], ep)
  end
end
return out
`)

// saveDisableScript records the progress of a claimed pending disable and
// makes it due at ARGV[4] (its lease's end keeps holding it), if the lease
// is still held and the entry is still that decision.
//
//	KEYS: 1 pending disables zset, 2 pending disable hash
//	ARGV: 1 endpoint, 2 lease ms, 3 decided ms, 4 next ms, 5 notify ('1'),
//	      6 tries, 7 error of the last try
//	returns 1 when saved, 0 when the lease was lost
var saveDisableScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not s) or tonumber(s) ~= tonumber(ARGV[2]) or redis.call('HGET', KEYS[2], 'decided') ~= ARGV[3] then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('HSET', KEYS[2], 'notify', ARGV[5], 'tries', ARGV[6], 'err', ARGV[7])
return 1
`)

// finishDisableScript removes a claimed pending disable that is done, if
// the lease is still held and the entry is still that decision.
//
//	KEYS: 1 pending disables zset, 2 pending disable hash
//	ARGV: 1 endpoint, 2 lease ms, 3 decided ms
//	returns 1 when removed, 0 when the lease was lost
var finishDisableScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not s) or tonumber(s) ~= tonumber(ARGV[2]) or redis.call('HGET', KEYS[2], 'decided') ~= ARGV[3] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
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
// batch rather than one per delivery. Every mark gets its endpoint's
// error: a mark is reported written only when it was.
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
		calls := make([]redisx.ScriptCall, len(order))
		for i, ep := range order {
			calls[i] = redisx.ScriptCall{Script: successScript, Keys: []string{epStatKey(ep)}, Args: []any{latest[ep], retention.Milliseconds()}}
		}
		_, errs := redisx.RunScripts(ctx, rdb, calls, nil)
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

// MarkSuccess raises an endpoint's last-success time to at (the mark
// ClaimDisable reads); Complete does it for an outcome with MarkEndpoint,
// in the same script where the keys allow. Marks made at about the same
// time share a pipeline.
func (q *Queue) MarkSuccess(ctx context.Context, endpointID string, at time.Time) error {
	_, err := q.successes.Do(ctx, successMark{endpointID, at.UnixMilli()})
	return err
}

// ClaimDisable implements delivery.EndpointStats.
func (q *Queue) ClaimDisable(ctx context.Context, p delivery.PendingDisable, since time.Time, force bool) (bool, error) {
	legacy, err := q.rdb.HMGet(ctx, legacyEpStatKey(p.EndpointID), "ok", "dis").Result()
	if err != nil {
		return false, err
	}
	field := func(i int) string { s, _ := legacy[i].(string); return s }
	ep := p.EndpointID
	n, err := disableScript.Run(ctx, q.rdb, []string{epStatKey(ep), disablesKey(Shard(ep)), disableJobKey(ep)},
		since.UnixMilli(), p.DecidedAt.UnixMilli(), boolField(force), q.retention.Milliseconds(), field(0), field(1),
		ep, p.AccountID, p.URL, p.Reason, p.LastError).Int()
	return n == 1, err
}

// ClaimDisables implements delivery.EndpointStats: one claim script per
// shard, in one pipeline.
func (q *Queue) ClaimDisables(ctx context.Context, now, leaseUntil time.Time, limit int) ([]delivery.PendingDisable, error) {
	calls := make([]redisx.ScriptCall, Shards)
	for n := range Shards {
		calls[n] = redisx.ScriptCall{Script: claimDisablesScript, Keys: []string{disablesKey(n)},
			Args: []any{now.UnixMilli(), leaseUntil.UnixMilli(), limit, disablePrefix(n)}}
	}
	replies, errs := redisx.RunScripts(ctx, q.rdb, calls, nil)
	var out []delivery.PendingDisable
	var firstErr error
	for n := range Shards {
		if errs[n] != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("claim pending disables of shard %d: %w", n, errs[n])
			}
			continue
		}
		items, _ := replies[n].([]any)
		for j := 0; j+1 < len(items); j += 2 {
			ep, _ := items[j].(string)
			fields, _ := items[j+1].([]any)
			m := make(map[string]string, len(fields)/2)
			for k := 0; k+1 < len(fields); k += 2 {
				ks, _ := fields[k].(string)
				vs, _ := fields[k+1].(string)
				m[ks] = vs
			}
			tries, _ := strconv.Atoi(m["tries"])
			out = append(out, delivery.PendingDisable{
				AccountID: m["account"], EndpointID: ep, URL: m["url"], Reason: m["reason"], LastError: m["lasterr"],
				DecidedAt: fromMS(m["decided"]), Notify: m["notify"] == "1", Tries: tries, LeaseUntil: time.UnixMilli(leaseUntil.UnixMilli()),
			})
		}
	}
	return out, firstErr
}

// SaveDisable implements delivery.EndpointStats.
func (q *Queue) SaveDisable(ctx context.Context, p delivery.PendingDisable, next time.Time, lastErr string) (bool, error) {
	ep := p.EndpointID
	n, err := saveDisableScript.Run(ctx, q.rdb, []string{disablesKey(Shard(ep)), disableJobKey(ep)},
		ep, p.LeaseUntil.UnixMilli(), p.DecidedAt.UnixMilli(), next.UnixMilli(), boolField(p.Notify), p.Tries, lastErr).Int()
	return n == 1, err
}

// FinishDisable implements delivery.EndpointStats.
func (q *Queue) FinishDisable(ctx context.Context, p delivery.PendingDisable) (bool, error) {
	ep := p.EndpointID
	n, err := finishDisableScript.Run(ctx, q.rdb, []string{disablesKey(Shard(ep)), disableJobKey(ep)},
		ep, p.LeaseUntil.UnixMilli(), p.DecidedAt.UnixMilli()).Int()
	return n == 1, err
}

// Restart restarts the deliveries whose status is one of from (see
// restartScript) and returns how many it restarted.
func (q *Queue) Restart(ctx context.Context, ids []string, from []delivery.Status, now time.Time) (int, error) {
	res, err := q.RestartEach(ctx, ids, from, now)
	total := 0
	for _, r := range res {
		if r == 1 {
			total++
		}
	}
	return total, err
}

// RestartEach is Restart reporting per id: 1 restarted, 0 in another
// status (or a test delivery), -1 not in Redis.
func (q *Queue) RestartEach(ctx context.Context, ids []string, from []delivery.Status, now time.Time) ([]int, error) {
	out := make([]int, 0, len(ids))
	total := 0
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 500)]
		ids = ids[len(batch):]
		calls := make([]redisx.ScriptCall, len(batch))
		for i, id := range batch {
			n := Shard(id)
			args := []any{id, now.UnixMilli(), linePrefix(n), q.parkedMoveAt(ms(now))}
			for _, s := range from {
				args = append(args, string(s))
			}
			calls[i] = redisx.ScriptCall{Script: restartScript, Keys: []string{schedKey(n), dlvPrefix(n) + id, parkedKey(n), endedKey(n), waitingKey(n)}, Args: args}
		}
		replies, errs := redisx.RunScripts(ctx, q.rdb, calls, nil)
		for i, err := range errs {
			if err != nil {
				return out, err
			}
			r, _ := replies[i].(int64)
			out = append(out, int(r))
			if r == 1 {
				total++
			}
		}
	}
	if total > 0 {
		_ = q.rdb.Publish(ctx, WakeChannel, "1").Err()
	}
	return out, nil
}

// Parked reads up to limit entries of the
// parked sets, dropping those whose delivery has expired.
func (q *Queue) Parked(ctx context.Context, limit int) ([]delivery.ParkedEndpoint, error) {
	groups := map[string]*delivery.ParkedEndpoint{}
	var order []string
	seen := 0
	for n := 0; n < Shards && seen < limit; n++ {
		if err := redisx.SMembers(ctx, q.rdb, parkedKey(n), 1000, func(ctx context.Context, members []string) error {
			accts := make([]*redis.StringCmd, len(members))
			if _, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i, m := range members {
					_, id, _ := strings.Cut(m, "|")
					accts[i] = p.HGet(ctx, dlvPrefix(n)+id, "account")
				}
				return nil
			}); err != nil && err != redis.Nil {
				return err
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
			if seen >= limit {
				return redisx.ErrStop
			}
			return nil
		}); err != nil {
			return nil, err
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

// Find returns the ids of the account's deliveries to
// endpointID created at or after since whose status is one of statuses,
// oldest first, at most limit. Test deliveries (Send Test) are never
// found: nothing restarts them.
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
				vals[i] = p.HMGet(ctx, DeliveryKey(id), "endpoint", "status", "test", "account")
			}
			return nil
		}); err != nil {
			return nil, err
		}
		for i, id := range ids {
			v := vals[i].Val()
			if len(v) != 4 {
				continue
			}
			ep, _ := v[0].(string)
			st, _ := v[1].(string)
			test, _ := v[2].(string)
			acct, _ := v[3].(string)
			if ep == endpointID && want[st] && test != "1" && acct == accountID { // the index files ids; the record says whose
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
