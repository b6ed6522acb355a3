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
// changes nothing but drops index entries whose delivery is gone or not
// due for history after all (dropEndedScript: each only while the delivery
// is still at the version read), and
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
	var gone []Ref // entries to drop, each only while its delivery is at the version read
	for i, id := range ids {
		m := hs[i].Val()
		if len(m) == 0 || m["account"] == "" {
			ver, _ := strconv.ParseInt(m["ver"], 10, 64) // 0: no record
			gone = append(gone, Ref{ID: id, Version: ver})
			continue
		}
		d := parseHash(id, m)
		switch d.Status {
		case delivery.StatusSucceeded, delivery.StatusFailed, delivery.StatusCanceled, delivery.StatusParked:
		case delivery.StatusPending:
			if d.OrderingKey == "" {
				continue // revived; the script that revived it left the index
			}
			// Ordered and pending: filed as parked work waiting behind
			// a closed line (lineSpots decides).
		default:
			continue
		}
		e := Ended{Delivery: *d}
		for _, s := range ls[i].Val() {
			if a, err := decodeAttempt(s); err == nil {
				e.Attempts = append(e.Attempts, a)
			}
		}
		out = append(out, e)
	}
	out, stale, err := q.lineSpots(ctx, out)
	if err != nil {
		return nil, err
	}
	gone = append(gone, stale...)
	if len(gone) > 0 {
		args := []any{dlvPrefix(n)}
		for _, g := range gone {
			args = append(args, g.ID, g.Version)
		}
		_, _ = q.runScript(ctx, dropEndedScript, []string{endedKey(n)}, args...)
	}
	return out, nil
}

// dropEndedScript removes entries of a shard's ended index that TakeEnded
// found to be no longer due for history, each only while its delivery is
// still at the version TakeEnded read (0: no record): TakeEnded reads in
// more than one step, and a delivery that changed in between (an ordered
// one released, sent and ended, filed again by its end) keeps its entry.
//
//	KEYS: 1 ended index
//	ARGV: 1 delivery hash key prefix, then per entry: id, version
var dropEndedScript = redis.NewScript(`
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local ver = redis.call('HGET', ARGV[1] .. id, 'ver') or '0'
  if ver == ARGV[i + 1] then redis.call('ZREM', KEYS[1], id) end
end
return 1
`)

// lineSpots gives each ordered delivery among es that is still in its line
// (parked work) its sequence number (LineSeq, kept by history). A pending
// one is parked work only while it waits behind '~' (its line is closed:
// parked work of it moved to history): it is handed out as parked. One
// that no longer does (the line was opened) is dropped, returned (at the
// version read) to leave the ended index.
func (q *Queue) lineSpots(ctx context.Context, es []Ended) ([]Ended, []Ref, error) {
	seqs := make([]*redis.FloatCmd, len(es))
	heads := make([]*redis.StringSliceCmd, len(es))
	if _, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range es {
			if d := &es[i].Delivery; d.OrderingKey != "" {
				seqs[i] = p.ZScore(ctx, lineKey(d), d.ID)
				heads[i] = p.ZRange(ctx, lineKey(d), 0, 0)
			}
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, err
	}
	var stale []Ref
	kept := es[:0]
	for i := range es {
		d := &es[i].Delivery
		if seqs[i] != nil && seqs[i].Err() == nil {
			d.LineSeq = int64(seqs[i].Val())
		}
		if d.Status == delivery.StatusPending {
			if h := heads[i].Val(); d.LineSeq == 0 || len(h) == 0 || h[0] != "~" {
				stale = append(stale, Ref{ID: d.ID, Version: d.Version})
				continue
			}
			d.Status = delivery.StatusParked
		}
		kept = append(kept, es[i])
	}
	return kept, stale, nil
}

// deleteArchivedScript deletes the deliveries of one shard that history
// holds, each only while it is still at the version archived: a delivery
// revived meanwhile (retry, replay, resume) has a higher version and stays.
//
// An ordered delivery still in its line is parked work (the parked head,
// or one waiting behind parked work already moved): it leaves its line,
// which is closed by the sentinel '~' scored -(the highest sequence number
// moved; orderedLua), and the line's field in the endpoint's closed-lines
// hash records that mark (the resume opens them); a line left with
// nothing else is deleted, its field standing for it. The line that
// closes here files every delivery waiting in it in the ended index, due
// now: they are parked work too. Parked work moves only from the head of
// its line or from behind '~', never while a resume brings the line's
// work back ('~r'); refused, it leaves the ended index and stays live.
//
//	KEYS: 1 ended index, 2 parked set, 3 waiting index
//	ARGV: 1 delivery hash key prefix, 2 line key prefix, 3 closed-lines
//	      hash key prefix, 4 now ms, then per delivery: id, version
//	returns per delivery 1 when deleted, 0 when it changed (or stays)
var deleteArchivedScript = redis.NewScript(`
local out = {}
for i = 5, #ARGV, 2 do
  local id, ver = ARGV[i], ARGV[i + 1]
  local k = ARGV[1] .. id
  local cur = redis.call('HMGET', k, 'ver', 'endpoint', 'okey')
  local ep = cur[2] or ''
  local ok = cur[1] == ver
  local l, seq
  if ok and cur[3] and cur[3] ~= '' then
    l = ARGV[2] .. ep .. '|' .. cur[3]
    seq = redis.call('ZSCORE', l, id)
    if seq then
      local head = redis.call('ZRANGE', l, 0, 0)[1]
      ok = head == id or head == '~'
      if not ok then redis.call('ZREM', KEYS[1], id) end
    end
  end
  if ok then
    redis.call('DEL', k, k .. ':att')
    redis.call('ZREM', KEYS[1], id)
    redis.call('SREM', KEYS[2], ep .. '|' .. id)
    if seq then
      redis.call('ZREM', l, id)
      redis.call('ZREM', KEYS[3], id)
      local top = redis.call('ZSCORE', l, '~')
      local mark = math.max(tonumber(seq), top and -tonumber(top) or 0)
      redis.call('HSET', ARGV[3] .. ep, cur[3], 'c:' .. mark)
      if redis.call('ZCARD', l) == (top and 1 or 0) then
        redis.call('DEL', l) -- nothing of it left in Redis: the field alone
      else
        redis.call('ZADD', l, -mark, '~')
        if not top then
          for _, m in ipairs(redis.call('ZRANGE', l, 1, -1)) do
            redis.call('ZADD', KEYS[1], 'NX', ARGV[4], m)
          end
        end
      end
    end
    out[#out + 1] = 1
  else
    if not cur[1] then redis.call('ZREM', KEYS[1], id) end
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
// one script call; the deliveries a line closing now files are due at
// now), then removes the deleted ones from their accounts'
// indexes. It reports which it deleted.
func (q *Queue) DeleteArchived(ctx context.Context, refs []Ref, now time.Time) ([]bool, error) {
	chunks := chunkByShard(len(refs), func(i int) string { return refs[i].ID }, 500)
	calls := make([]redisx.ScriptCall, len(chunks))
	for j, c := range chunks {
		n := c.shard
		args := []any{dlvPrefix(n), linePrefix(n), closedLinesPrefix(n), ms(now)}
		for _, i := range c.idx {
			args = append(args, refs[i].ID, strconv.FormatInt(refs[i].Version, 10))
		}
		calls[j] = redisx.ScriptCall{Script: deleteArchivedScript, Keys: []string{endedKey(n), parkedKey(n), waitingKey(n)}, Args: args}
	}
	replies, errs := redisx.RunScripts(ctx, q.rdb, calls, nil)
	deleted := make([]bool, len(refs))
	var firstErr error
	byAccount := map[string][]any{}
	for j, c := range chunks {
		if errs[j] != nil {
			firstErr = errors.Join(firstErr, errs[j])
			continue
		}
		res, _ := replies[j].([]any)
		for k, i := range c.idx {
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
// key. One that joins behind parked work in history (its endpoint is
// disabled) is parked work too, filed in the ended index at the move time
// given. Parked work coming back (its sequence number given) rejoins its
// closed line at its place (gate).
//
//	KEYS: 1 schedule zset, 2 delivery hash, 3 attempt list, 4 audit index,
//	      5 audit hash (auditlog.ForShard), 6 waiting index, 7 ended index
//	ARGV: 1 id, 2 due ms, 3 number n of hash arguments,
//	      4 entry id, 5 entry JSON, 6 account,
//	      7..6+n hash field/values, then attempt JSON entries,
//	      and last the move time (ms; gate), the line sequence number (0:
//	      none) and the line key prefix
//	returns 1 when restored, 0 when it was live already
var restoreScript = redis.NewScript(orderedLua + `
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
` + auditlog.ShardLua(4, 4) + `
local n = tonumber(ARGV[3])
redis.call('HSET', KEYS[2], unpack(ARGV, 7, 6 + n))
redis.call('DEL', KEYS[3])
if #ARGV > 9 + n then
  redis.call('RPUSH', KEYS[3], unpack(ARGV, 7 + n, #ARGV - 3))
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
gate(KEYS[1], KEYS[6], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[#ARGV], KEYS[7], ARGV[#ARGV - 2], tonumber(ARGV[#ARGV - 1]))
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
			args = append(args, encodeAttempt(&as[j]))
		}
		args = append(args, q.parkedMoveAt(ms(due)), d.LineSeq, linePrefix(n))
		keys := append([]string{ScheduleKey(d.ID), DeliveryKey(d.ID), AttemptsKey(d.ID)}, akeys...)
		calls[i] = redisx.ScriptCall{Script: restoreScript, Keys: append(keys, waitingKey(n), endedKey(n)), Args: args}
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

// linesScript closes or opens, for a resume, the lines of one endpoint in
// one shard that are closed by parked work in history (orderedLua). Close
// marks each closed-lines field resumed ('r:') and turns its '~' into
// '~r': the archiver moves nothing more out of that line, and the work the
// resume restores waits at its place. Open removes the resumed lines'
// '~r' and fields and releases each one's head; a line closed after the
// close (a 'c:' field: parked work moved meanwhile) stays closed for the
// next resume. Erase (EraseAccount, after the account's
// deliveries are gone) deletes the lines and the set.
//
//	KEYS: 1 the endpoint's closed-lines hash, 2 schedule zset, 3 waiting
//	      index
//	ARGV: 1 'close', 'open' or 'erase', 2 the endpoint's line key prefix, 3
//	      delivery hash key prefix, 4 now ms
//	returns how many lines it opened
var linesScript = redis.NewScript(orderedLua + `
local opened = 0
local f = redis.call('HGETALL', KEYS[1])
for i = 1, #f, 2 do
  local okey, state, mark = f[i], string.sub(f[i + 1], 1, 1), string.sub(f[i + 1], 3)
  local l = ARGV[2] .. okey
  if ARGV[1] == 'erase' then
    redis.call('DEL', l)
  elseif ARGV[1] == 'close' then
    redis.call('HSET', KEYS[1], okey, 'r:' .. mark)
    local s = redis.call('ZSCORE', l, '~')
    if s then
      redis.call('ZREM', l, '~')
      redis.call('ZADD', l, s, '~r')
    end
  elseif state == 'r' then
    redis.call('ZREM', l, '~r')
    redis.call('HDEL', KEYS[1], okey)
    releaseHead(KEYS[2], KEYS[3], l, tonumber(ARGV[4]), ARGV[3], 0)
    opened = opened + 1
  end
end
if ARGV[1] == 'erase' then redis.call('DEL', KEYS[1]) end
return opened
`)

// CloseLines and OpenLines bracket a resume of an endpoint's parked work
// in history (linesScript): closed, its lines take restored work back at
// its place and release nothing; opened, each releases its head.
func (q *Queue) CloseLines(ctx context.Context, endpointID string) error {
	_, err := q.lines(ctx, "close", endpointID, time.Time{})
	return err
}

// OpenLines opens the lines CloseLines closed and returns how many.
func (q *Queue) OpenLines(ctx context.Context, endpointID string, now time.Time) (int, error) {
	return q.lines(ctx, "open", endpointID, now)
}

func (q *Queue) lines(ctx context.Context, op, endpointID string, now time.Time) (int, error) {
	calls := make([]redisx.ScriptCall, Shards)
	for n := range Shards {
		calls[n] = redisx.ScriptCall{Script: linesScript,
			Keys: []string{closedLinesPrefix(n) + endpointID, schedKey(n), waitingKey(n)},
			Args: []any{op, linePrefix(n) + endpointID + "|", dlvPrefix(n), ms(now)}}
	}
	replies, errs := redisx.RunScripts(ctx, q.rdb, calls, nil)
	total := 0
	for n := range replies {
		if errs[n] != nil {
			return total, errs[n]
		}
		c, _ := replies[n].(int64)
		total += int(c)
	}
	if total > 0 {
		_ = q.rdb.Publish(ctx, WakeChannel, "1").Err()
	}
	return total, nil
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

// renumberScript raises the versions of deliveries of one shard whose
// copy history holds is another one, with a higher version (history's
// Archived.Newer), each only while it is still at the version archived:
// to history's version + 1, so that its next archive (it stays in the
// ended index, due now) supersedes the other copy instead of being
// skipped as stale.
//
//	KEYS: 1 ended index
//	ARGV: 1 delivery hash key prefix, 2 now ms, then per delivery: id,
//	      version archived, history's version
//	returns how many it renumbered
var renumberScript = redis.NewScript(`
local n = 0
for i = 3, #ARGV, 3 do
  local k = ARGV[1] .. ARGV[i]
  if redis.call('HGET', k, 'ver') == ARGV[i + 1] then
    redis.call('HSET', k, 'ver', tonumber(ARGV[i + 2]) + 1)
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
    n = n + 1
  end
end
return n
`)

// Renumbered is a delivery archived at Version whose copy in history is
// another one, at Newer.
type Renumbered struct {
	ID             string
	Version, Newer int64
}

// Renumber raises each delivery of rs still at Version to Newer + 1
// (renumberScript), one script call per shard, and returns how many.
func (q *Queue) Renumber(ctx context.Context, rs []Renumbered, now time.Time) (int, error) {
	chunks := chunkByShard(len(rs), func(i int) string { return rs[i].ID }, 0)
	calls := make([]redisx.ScriptCall, len(chunks))
	for j, c := range chunks {
		args := []any{dlvPrefix(c.shard), ms(now)}
		for _, i := range c.idx {
			args = append(args, rs[i].ID, rs[i].Version, rs[i].Newer)
		}
		calls[j] = redisx.ScriptCall{Script: renumberScript, Keys: []string{endedKey(c.shard)}, Args: args}
	}
	replies, errs := redisx.RunScripts(ctx, q.rdb, calls, nil)
	total := 0
	var err error
	for i := range replies {
		err = errors.Join(err, errs[i])
		c, _ := replies[i].(int64)
		total += int(c)
	}
	return total, err
}
