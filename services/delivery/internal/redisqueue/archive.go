package redisqueue

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// The archiver's side of the queue (issue #12, "History leaves RAM"):
//
//	wh:ended:{s<n>}     zset   deliveries to move to history → when (ms)
//	wh:evtwait:{s<n>}   zset   events whose deliveries all moved before their
//	                           fan-out was marked done → when noticed (ms)
//	wh:archiver:{s<n>}  string the process archiving shard n (lease)
//
// n is the delivery's shard (for wh:evtwait, the event id's).

func evtWaitKey(n int) string   { return eventstore.WaitKey(n) }
func archLeaseKey(n int) string { return "wh:archiver:{s" + strconv.Itoa(n) + "}" }

// EventWaitShard is the shard of an event id in wh:evtwait.
func EventWaitShard(eventID string) int { return eventstore.WaitShard(eventID) }

// Ended is a delivery the archiver takes: its record at Version and its
// attempts (oldest first).
type Ended struct {
	Delivery delivery.Delivery
	Attempts []delivery.Attempt
}

// leaseScript takes or extends a shard's archiver lease.
//
//	KEYS: 1 lease key
//	ARGV: 1 owner, 2 ttl ms
var leaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// LeaseShard takes (or extends) the archiver lease of shard n for owner.
func (q *Queue) LeaseShard(ctx context.Context, n int, owner string, ttl time.Duration) (bool, error) {
	v, err := leaseScript.Run(ctx, q.rdb, []string{archLeaseKey(n)}, owner, ttl.Milliseconds()).Int()
	return v == 1, err
}

// ReleaseShard gives the lease back if owner still holds it.
func (q *Queue) ReleaseShard(ctx context.Context, n int, owner string) {
	_ = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`).
		Run(ctx, q.rdb, []string{archLeaseKey(n)}, owner).Err()
}

// TakeEnded reads up to limit deliveries of shard n due for history at now
// (ended, or parked long enough), oldest first, with their attempts. It
// changes nothing but drops index entries whose delivery is gone, and
// PERSISTs what it reads: a record that an earlier build wrote with a TTL
// (DELIVERY_RETENTION) no longer expires once the archiver has seen it.
func (q *Queue) TakeEnded(ctx context.Context, n int, now time.Time, limit int) ([]Ended, error) {
	ids, err := q.rdb.ZRangeByScore(ctx, endedKey(n), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: int64(limit),
	}).Result()
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	hs := make([]*redis.MapStringStringCmd, len(ids))
	ls := make([]*redis.StringSliceCmd, len(ids))
	if _, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			hs[i] = p.HGetAll(ctx, dlvPrefix(n)+id)
			ls[i] = p.LRange(ctx, dlvPrefix(n)+id+":att", 0, -1)
			p.Persist(ctx, dlvPrefix(n)+id)
			p.Persist(ctx, dlvPrefix(n)+id+":att")
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]Ended, 0, len(ids))
	var gone []any
	for i, id := range ids {
		m := hs[i].Val()
		if len(m) == 0 || m["account"] == "" {
			gone = append(gone, id)
			continue
		}
		d := parseHash(id, m)
		switch d.Status {
		case delivery.StatusSucceeded, delivery.StatusFailed, delivery.StatusCanceled, delivery.StatusParked:
		default:
			continue // revived; the script that revived it left the index
		}
		e := Ended{Delivery: *d}
		for _, s := range ls[i].Val() {
			if a, err := decodeAttempt([]byte(s)); err == nil {
				e.Attempts = append(e.Attempts, a)
			}
		}
		out = append(out, e)
	}
	if len(gone) > 0 {
		_ = q.rdb.ZRem(ctx, endedKey(n), gone...).Err()
	}
	return out, nil
}

// deleteArchivedScript deletes the deliveries of one shard that history
// holds, each only while it is still at the version archived: a delivery
// revived meanwhile (retry, replay, resume) has a higher version and stays.
//
//	KEYS: 1 ended index, 2 parked set
//	ARGV: 1 delivery hash key prefix, then per delivery: id, version
//	returns per delivery 1 when deleted, 0 when it changed
var deleteArchivedScript = redis.NewScript(`
local out = {}
for i = 2, #ARGV, 2 do
  local id, ver = ARGV[i], ARGV[i + 1]
  local k = ARGV[1] .. id
  local cur = redis.call('HMGET', k, 'ver', 'endpoint')
  if cur[1] == ver then
    redis.call('DEL', k, k .. ':att')
    redis.call('ZREM', KEYS[1], id)
    redis.call('SREM', KEYS[2], (cur[2] or '') .. '|' .. id)
    out[#out + 1] = 1
  elseif not cur[1] then
    redis.call('ZREM', KEYS[1], id)
    out[#out + 1] = 0
  else
    out[#out + 1] = 0
  end
end
return out
`)

// Ref names one version of a delivery.
type Ref struct {
	ID, AccountID string
	Version       int64
}

// DeleteArchived compare-and-deletes deliveries history holds (per shard,
// one script call), then removes the deleted ones from their accounts'
// indexes. It reports which it deleted.
func (q *Queue) DeleteArchived(ctx context.Context, refs []Ref) ([]bool, error) {
	byShard := map[int][]int{}
	for i, r := range refs {
		n := Shard(r.ID)
		byShard[n] = append(byShard[n], i)
	}
	var calls []redisx.ScriptCall
	var order [][]int
	for n, idx := range byShard {
		for len(idx) > 0 {
			part := idx[:min(len(idx), 500)]
			idx = idx[len(part):]
			args := []any{dlvPrefix(n)}
			for _, i := range part {
				args = append(args, refs[i].ID, strconv.FormatInt(refs[i].Version, 10))
			}
			calls = append(calls, redisx.ScriptCall{Script: deleteArchivedScript, Keys: []string{endedKey(n), parkedKey(n)}, Args: args})
			order = append(order, part)
		}
	}
	replies, errs := redisx.RunScripts(ctx, q.rdb, calls, nil)
	deleted := make([]bool, len(refs))
	var firstErr error
	byAccount := map[string][]any{}
	for j, part := range order {
		if errs[j] != nil {
			firstErr = errors.Join(firstErr, errs[j])
			continue
		}
		res, _ := replies[j].([]any)
		for k, i := range part {
			if k < len(res) && res[k] == int64(1) {
				deleted[i] = true
				byAccount[refs[i].AccountID] = append(byAccount[refs[i].AccountID], refs[i].ID)
			}
		}
	}
	if len(byAccount) > 0 {
		// Another slot: a crash before this leaves index entries whose
		// delivery is gone, which List skips and drops.
		if _, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for acct, ids := range byAccount {
				p.ZRem(ctx, accountKey(acct), ids...)
			}
			return nil
		}); err != nil {
			firstErr = errors.Join(firstErr, err)
		}
	}
	return deleted, firstErr
}

// Postponed is an ended delivery the archiver looks at again at Until.
type Postponed struct {
	ID    string
	Until time.Time
}

// PostponeEnded moves deliveries of shard n later in the ended index (only
// those still in it).
func (q *Queue) PostponeEnded(ctx context.Context, n int, ps []Postponed) error {
	if len(ps) == 0 {
		return nil
	}
	zs := make([]redis.Z, len(ps))
	for i, p := range ps {
		zs[i] = redis.Z{Score: float64(p.Until.UnixMilli()), Member: p.ID}
	}
	return q.rdb.ZAddXX(ctx, endedKey(n), zs...).Err()
}

// WaitForFanout files events whose deliveries all moved to history before
// their fan-out was marked done; the archiver looks at them again.
func (q *Queue) WaitForFanout(ctx context.Context, eventIDs []string, now time.Time) error {
	if len(eventIDs) == 0 {
		return nil
	}
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range eventIDs {
			p.ZAddNX(ctx, evtWaitKey(EventWaitShard(id)), redis.Z{Score: float64(now.UnixMilli()), Member: id})
		}
		return nil
	})
	return err
}

// WaitingEvents returns up to limit events of shard n filed by
// WaitForFanout before `before`.
func (q *Queue) WaitingEvents(ctx context.Context, n int, before time.Time, limit int) ([]string, error) {
	return q.rdb.ZRangeByScore(ctx, evtWaitKey(n), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(before.UnixMilli(), 10), Count: int64(limit),
	}).Result()
}

// DoneWaiting removes events from the waiting list.
func (q *Queue) DoneWaiting(ctx context.Context, eventIDs []string) error {
	if len(eventIDs) == 0 {
		return nil
	}
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range eventIDs {
			p.ZRem(ctx, evtWaitKey(EventWaitShard(id)), id)
		}
		return nil
	})
	return err
}

// BacklogStats is the archive backlog: deliveries due for history and not
// yet moved, and the oldest one's due time (zero when none).
func (q *Queue) BacklogStats(ctx context.Context, now time.Time) (int64, time.Time, error) {
	nowS := strconv.FormatInt(now.UnixMilli(), 10)
	counts := make([]*redis.IntCmd, Shards)
	firsts := make([]*redis.ZSliceCmd, Shards)
	if _, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for n := range Shards {
			counts[n] = p.ZCount(ctx, endedKey(n), "-inf", nowS)
			firsts[n] = p.ZRangeWithScores(ctx, endedKey(n), 0, 0)
		}
		return nil
	}); err != nil {
		return 0, time.Time{}, err
	}
	var total int64
	var oldest time.Time
	for n := range Shards {
		total += counts[n].Val()
		if z := firsts[n].Val(); len(z) > 0 && counts[n].Val() > 0 {
			t := time.UnixMilli(int64(z[0].Score))
			if oldest.IsZero() || t.Before(oldest) {
				oldest = t
			}
		}
	}
	return total, oldest, nil
}

// restoreScript brings a delivery back from history, create-only: when
// Redis holds it already (a live copy supersedes history's) it changes
// nothing. The hash continues from the version history held. Neither the
// hash nor the attempt list gets a TTL (see completeScript). A restore
// for a manual retry writes the retry's audit entry (pkg/auditlog,
// per-shard keys of the same slot) in the same step, only when it
// restores, and first (a script failing midway is not rolled back: the
// change must never stand without its entry); an empty entry id writes
// none.
//
// An ordered delivery restored (a manual retry or a replay of one that
// ended and moved) joins the tail of its line: history keeps its ordering
// key.
//
//	KEYS: 1 schedule zset, 2 delivery hash, 3 attempt list, 4 audit index,
//	      5 audit hash (auditlog.ForShard), 6 waiting index
//	ARGV: 1 id, 2 due ms, 3 number n of hash arguments,
//	      4 entry id, 5 entry JSON, 6 account,
//	      7..6+n hash field/values, then attempt JSON entries,
//	      and last the line key prefix
//	returns 1 when restored, 0 when it was live already
var restoreScript = redis.NewScript(orderedLua + `
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
` + auditlog.ShardLua(4, 4) + `
local n = tonumber(ARGV[3])
redis.call('HSET', KEYS[2], unpack(ARGV, 7, 6 + n))
redis.call('DEL', KEYS[3])
if #ARGV > 7 + n then
  redis.call('RPUSH', KEYS[3], unpack(ARGV, 7 + n, #ARGV - 1))
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
gate(KEYS[1], KEYS[6], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[#ARGV])
return 1
`)

// Restore brings deliveries back from history as pending, due at due, with
// their attempts (the last KeepAttempts) and Version continued; those
// Redis holds already are left as they are. It reports which it restored
// and wakes the workers.
func (q *Queue) Restore(ctx context.Context, ds []delivery.Delivery, atts [][]delivery.Attempt, due time.Time) ([]bool, error) {
	return q.RestoreAudited(ctx, ds, atts, due, nil)
}

// RestoreAudited is Restore that writes, with the restore of each delivery
// ents names (by delivery id), that entry in the same script (a manual
// retry of a delivery only history held): only when it restores.
func (q *Queue) RestoreAudited(ctx context.Context, ds []delivery.Delivery, atts [][]delivery.Attempt, due time.Time, ents map[string]auditlog.Entry) ([]bool, error) {
	calls := make([]redisx.ScriptCall, len(ds))
	for i := range ds {
		d := ds[i]
		d.Status, d.NextTime, d.UpdateTime = delivery.StatusPending, due, due
		f := hashFields(&d)
		f = append(f, "base", d.Base, "first", ms(d.FirstAttempt))
		n := Shard(d.ID)
		akeys, aargs := auditlog.NoShardWrite(n)
		if e, ok := ents[d.ID]; ok {
			akeys, aargs = e.ForShard(n)
		}
		args := []any{d.ID, ms(due), len(f)}
		args = append(args, aargs...)
		args = append(args, f...)
		as := atts[i]
		if len(as) > KeepAttempts {
			as = as[len(as)-KeepAttempts:]
		}
		for j := range as {
			b, err := encodeAttempt(&as[j])
			if err != nil {
				return nil, err
			}
			args = append(args, b)
		}
		args = append(args, linePrefix(n))
		keys := append([]string{ScheduleKey(d.ID), DeliveryKey(d.ID), AttemptsKey(d.ID)}, akeys...)
		calls[i] = redisx.ScriptCall{Script: restoreScript, Keys: append(keys, waitingKey(n)), Args: args}
	}
	replies, errs := redisx.RunScripts(ctx, q.rdb, calls, nil)
	out := make([]bool, len(ds))
	byAccount := map[string][]redis.Z{}
	for i := range ds {
		if errs[i] != nil {
			return out, errs[i]
		}
		out[i] = replies[i] == int64(1)
		if out[i] {
			byAccount[ds[i].AccountID] = append(byAccount[ds[i].AccountID], redis.Z{Score: idScore(ds[i].ID, ds[i].CreateTime), Member: ds[i].ID})
		}
	}
	if len(byAccount) > 0 {
		if _, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for acct, zs := range byAccount {
				p.ZAdd(ctx, accountKey(acct), zs...)
				p.PExpire(ctx, accountKey(acct), q.retention)
			}
			p.Publish(ctx, WakeChannel, "1")
			return nil
		}); err != nil {
			return out, err
		}
	}
	return out, nil
}

// parkedEndpointsKey is the set of "<account>|<endpoint>" with parked work
// in history (filed before the archive that moves it, removed once a resume
// found none left).
const parkedEndpointsKey = "wh:parked:history"

// NoteParkedInHistory files endpoints whose parked work moves to history.
func (q *Queue) NoteParkedInHistory(ctx context.Context, members []string) error {
	if len(members) == 0 {
		return nil
	}
	args := make([]any, len(members))
	for i, m := range members {
		args[i] = m
	}
	return q.rdb.SAdd(ctx, parkedEndpointsKey, args...).Err()
}

// ParkedInHistory returns the "<account>|<endpoint>" filed by NoteParkedInHistory.
func (q *Queue) ParkedInHistory(ctx context.Context) ([]string, error) {
	return q.rdb.SMembers(ctx, parkedEndpointsKey).Result()
}

// ForgetParkedInHistory removes an endpoint from that set.
func (q *Queue) ForgetParkedInHistory(ctx context.Context, member string) error {
	return q.rdb.SRem(ctx, parkedEndpointsKey, member).Err()
}

// expireOrderedScript ends ordered parked deliveries kept for
// PARKED_RETENTION (ExpireOrderedParked), each only while it is still
// parked at the version the archiver read. Each leaves its line, and so do
// the deliveries behind it that were created before the cutoff (they have
// been kept as long): every one ends failed with the reason and joins the
// ended index to move to history. The first one created after the cutoff
// is released (due now): claimed while its endpoint is still disabled, it
// parks with its own deadline. At most ARGV[6] end per delivery named;
// past that the released one is due for expiry at once and a later pass
// goes on.
//
//	KEYS: 1 schedule zset, 2 parked set, 3 ended index, 4 waiting index
//	ARGV: 1 delivery hash key prefix, 2 line key prefix, 3 now ms,
//	      4 created cutoff ms, 5 reason, 6 limit, then per delivery: id,
//	      version
//	returns per delivery how many ended (0 when it changed meanwhile)
var expireOrderedScript = redis.NewScript(orderedLua + `
local now, cutoff, limit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[6])
local function fail(k, id)
  redis.call('HSET', k, 'status', 'failed', 'err', ARGV[5], 'updated', now, 'next', 0, 'lease', 0)
  redis.call('HINCRBY', k, 'ver', 1)
  redis.call('ZADD', KEYS[3], now, id)
end
local out = {}
for i = 7, #ARGV, 2 do
  local id, k = ARGV[i], ARGV[1] .. ARGV[i]
  local cur = redis.call('HMGET', k, 'ver', 'status', 'endpoint')
  if cur[1] ~= ARGV[i + 1] or cur[2] ~= 'parked' then
    out[#out + 1] = 0
  else
    redis.call('SREM', KEYS[2], (cur[3] or '') .. '|' .. id)
    fail(k, id)
    local n = 1
    while true do
      local nxt = release(KEYS[1], KEYS[4], k, id, now, ARGV[2], ARGV[1])
      if not nxt or n >= limit then break end
      local nk = ARGV[1] .. nxt
      if (tonumber(redis.call('HGET', nk, 'created') or '0') or 0) >= cutoff then break end
      redis.call('ZREM', KEYS[1], nxt)
      fail(nk, nxt)
      n, id, k = n + 1, nxt, nk
    end
    out[#out + 1] = n
  end
end
return out
`)

// expireLimit bounds how many deliveries of one line one expiry ends.
const expireLimit = 500

// ExpireOrderedParked ends, as failed with reason, the ordered parked
// deliveries of shard n that TakeEnded handed out at PARKED_RETENTION (an
// ordered parked delivery stays in Redis, heading its line; the unordered
// ones expire in history), and the deliveries of their lines created more
// than PARKED_RETENTION before now. It returns how many ended; they move
// to history with the next passes.
func (q *Queue) ExpireOrderedParked(ctx context.Context, n int, ds []delivery.Delivery, now time.Time, reason string) (int, error) {
	if len(ds) == 0 {
		return 0, nil
	}
	args := []any{dlvPrefix(n), linePrefix(n), ms(now), ms(now.Add(-q.parkedRetention)), reason, expireLimit}
	for _, d := range ds {
		args = append(args, d.ID, strconv.FormatInt(d.Version, 10))
	}
	res, err := q.runScript(ctx, expireOrderedScript, []string{schedKey(n), parkedKey(n), endedKey(n), waitingKey(n)}, args...)
	if err != nil {
		return 0, err
	}
	vs, _ := res.([]any)
	total := 0
	for _, v := range vs {
		c, _ := v.(int64)
		total += int(c)
	}
	return total, nil
}
