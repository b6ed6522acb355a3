package redisqueue

import (
	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/auditlog"
)

// Every script touches the keys of ONE delivery shard only; they share the
// hash tag {s<n>}, so each runs on one Redis Cluster node. Keys a script
// derives (delivery hashes named by the ids it reads from the schedule) are
// built from a prefix passed in ARGV that carries the same tag.

// orderedLua defines the steps of ordered delivery, for the scripts that
// make a delivery due or end it (docs/architecture.md, "Ordered
// delivery"). An ordered delivery (hash field okey, its ordering key) is a
// member of its line, the zset wh:line:{s<n>}:<endpoint>|<okey> scored by
// sequence number; the delivery id is placed in the line's shard
// (delivery.DeliveryID), so a line and all its deliveries share one slot.
// Only the line's head is ever in the schedule; the others wait, listed in
// the shard's waiting index W (id -> when it began waiting).
//
// A line some of whose parked work moved to history is closed: its head
// is a sentinel member, '~' (or '~r' while a resume brings that work
// back), scored -(the highest sequence number moved), so it sorts first
// and keeps the numbering above what history holds. Nothing of a closed
// line is released; the resume opens it (linesScript). Every closed line
// is also a field of its endpoint's closed-lines hash in the shard
// (wh:histlines:{s<n>}:<endpoint>: ordering key -> 'c:<mark>', or
// 'r:<mark>' while resumed), and a closed line with nothing left in Redis
// is that field alone: its zset is deleted, and recreated with its
// sentinel when a delivery joins it.
//
//	line(k, lp): the line key of delivery hash k (lp: the shard's line key
//	  prefix), nil when the delivery is unordered; then its endpoint and
//	  ordering key
//	sentinel(m): whether line member m is a sentinel
//	reopenEmpty(l, ep, okey, lp): recreates the sentinel of closed line l
//	  (endpoint ep, ordering key okey) from its closed-lines field when its
//	  zset is gone
//	gate(S, W, k, id, now, lp, E, moveAt, seq): called once the caller
//	  made id due in the schedule S. An ordered delivery not in its line
//	  joins it: at seq when seq > 0 and the line is closed (parked work
//	  coming back from history), else at its tail (highest + 1, and above
//	  the sentinel's mark in a closed line; an empty line starts again at
//	  1); one that is not the head leaves S to wait.
//	  One that waits behind '~' is filed in the ended index E at moveAt
//	  (when E is given): it is parked work, moved to history in turn.
//	  Returns the head it waits behind, or ''.
//	releaseHead(S, W, l, now, dp, lease): makes the head of line l due now
//	  if it waits (dp: the shard's delivery hash prefix), with how long it
//	  waited (field waited, ms); with lease > 0 it is leased until then
//	  instead, as a claim does (to the caller, who sends it next). A head
//	  whose hash is gone (erased) leaves too: nothing can block a line for
//	  good. A sentinel head releases nothing. Returns the id it made due
//	  (or leased), or false.
//	release(S, W, k, id, now, lp, dp, lease): the ended delivery id leaves
//	  its line, and releaseHead releases the next one.
const orderedLua = `
local function line(k, lp)
  local okey = redis.call('HGET', k, 'okey')
  if (not okey) or okey == '' then return nil end
  local ep = redis.call('HGET', k, 'endpoint') or ''
  return lp .. ep .. '|' .. okey, ep, okey
end
local function sentinel(m)
  return m == '~' or m == '~r'
end
local function reopenEmpty(l, ep, okey, lp)
  if redis.call('EXISTS', l) == 1 then return end
  local v = redis.call('HGET', string.gsub(lp, '^` + lineRoot + `', '` + closedLinesRoot + `', 1) .. ep, okey)
  if v then
    redis.call('ZADD', l, -tonumber(string.sub(v, 3)), string.sub(v, 1, 1) == 'r' and '~r' or '~')
  end
end
local function gate(S, W, k, id, now, lp, E, moveAt, seq)
  local l, ep, okey = line(k, lp)
  if not l then return '' end
  if not redis.call('ZSCORE', l, id) then
    reopenEmpty(l, ep, okey, lp)
    local first = redis.call('ZRANGE', l, 0, 0, 'WITHSCORES')
    local closed = sentinel(first[1])
    if seq and seq > 0 and closed then
      redis.call('ZADD', l, seq, id)
    else
      local last = redis.call('ZRANGE', l, -1, -1, 'WITHSCORES')
      local top = math.abs(tonumber(last[2]) or 0)
      if closed then top = math.max(top, -tonumber(first[2])) end
      redis.call('ZADD', l, top + 1, id)
    end
  end
  local head = redis.call('ZRANGE', l, 0, 0)[1]
  if head == id then return '' end
  redis.call('ZREM', S, id)
  if redis.call('ZADD', W, 'NX', now, id) == 1 then
    redis.call('HSET', k, 'next', 0, 'wait', now)
  else
    redis.call('HSET', k, 'next', 0)
  end
  if E and head == '~' then redis.call('ZADD', E, 'NX', moveAt, id) end
  return head
end
local function releaseHead(S, W, l, now, dp, lease)
  while true do
    local head = redis.call('ZRANGE', l, 0, 0)[1]
    if (not head) or sentinel(head) then return false end
    local hk = dp .. head
    local st = redis.call('HGET', hk, 'status')
    if st then
      local since = redis.call('ZSCORE', W, head)
      if since and st == 'pending' then
        redis.call('ZREM', W, head)
        local leased = lease and lease > 0
        redis.call('ZADD', S, leased and lease or now, head)
        redis.call('HSET', hk, 'next', now, 'wait', 0, 'waited', now - tonumber(since), 'updated', now, 'lease', leased and lease or 0)
        redis.call('HINCRBY', hk, 'ver', 1)
        return head
      end
      return false
    end
    redis.call('ZREM', l, head)
    redis.call('ZREM', W, head)
  end
end
local function release(S, W, k, id, now, lp, dp, lease)
  local l = line(k, lp)
  if not l then return false end
  redis.call('ZREM', l, id)
  redis.call('ZREM', W, id)
  return releaseHead(S, W, l, now, dp, lease)
end
`

// scheduleScript creates the deliveries of one shard that do not exist yet
// (an upsert keyed by the derived delivery id), in one call for many. An
// ordered one joins the tail of its line in the same step (its sequence
// number is given by the write that creates it, so it is durable exactly
// when the delivery is, and a failed write leaves no gap), and waits when
// it is not the head.
//
// One that waits behind parked work moved to history is filed in the ended
// index at ARGV[4] (gate).
//
//	KEYS: 1 schedule zset, 2 waiting index, 3 ended index
//	ARGV: 1 delivery hash key prefix, 2 line key prefix, 3 now ms, 4 when
//	      the archiver takes one that waits behind history (ms), then per
//	      delivery: id, due ms, the number n of hash arguments, n
//	      field/value arguments
//	returns per delivery 1 when created, 0 when it already existed
var scheduleScript = redis.NewScript(orderedLua + `
local created, due = {}, {}
local i = 5
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i + 2])
  local k = ARGV[1] .. id
  if redis.call('EXISTS', k) == 1 then
    created[#created + 1] = 0
  else
    redis.call('HSET', k, unpack(ARGV, i + 3, i + 2 + n))
    if redis.call('HEXISTS', k, 'okey') == 1 then
      redis.call('ZADD', KEYS[1], ARGV[i + 1], id)
      gate(KEYS[1], KEYS[2], k, id, tonumber(ARGV[3]), ARGV[2], KEYS[3], ARGV[4])
    else
      due[#due + 1] = ARGV[i + 1] -- unordered: one ZADD for all
      due[#due + 1] = id
    end
    created[#created + 1] = 1
  end
  i = i + 3 + n
end
if #due > 0 then redis.call('ZADD', KEYS[1], unpack(due)) end
return created
`)

// claimScript leases due items: instead of removing them it re-scores them
// to the lease's end, so a crashed worker's items come due again.
//
//	KEYS: 1 schedule zset
//	ARGV: 1 now ms, 2 lease-until ms, 3 limit, 4 delivery hash key prefix
//	returns {{id1, {hash fields...}, id2, ...}, earliest remaining score or ""}
var claimScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local k = ARGV[4] .. id
  local st = redis.call('HGET', k, 'status')
  if st == 'pending' then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    redis.call('HSET', k, 'lease', ARGV[2])
    redis.call('HINCRBY', k, 'ver', 1)
    out[#out + 1] = id
    out[#out + 1] = redis.call('HGETALL', k)
  else
    -- expired or already finished: nothing to send
    redis.call('ZREM', KEYS[1], id)
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {out, first[2] or ''}
`)

// completeScript records a job's outcome if its lease is still held (the
// item's score is still this claim's lease).
//
// An ended (or parked) delivery joins its shard's ended index in the same
// step, due for the archiver at ARGV[13]; the version grows with the write.
//
// Neither the hash nor the attempt list expires (PERSIST: a record written
// with a TTL by an earlier build is adopted here): a live delivery ends by
// its schedule (or PARKED_RETENTION, in history), and an ended or parked
// one leaves Redis only when the archiver deletes it after the history
// commit, however long PostgreSQL is unreachable.
//
// An ordered delivery that ended (succeeded, failed, canceled; not parked
// nor pending) leaves its line and releases the next one, in the same step:
// with a handoff lease (ARGV[16] > 0) the next one is leased to the caller
// until then and returned, saving the claim that would fetch it.
//
// A success can mark its endpoint first (ARGV[17] > 0; raiseOK, whether
// or not the lease is held), so the success and its mark are one write:
// a failing mark (an error) records nothing. Only on a standalone Redis:
// the endpoint stats hash is in the endpoint's shard, not the delivery's.
//
//	KEYS: 1 schedule zset, 2 delivery hash, 3 attempt list, 4 parked set,
//	      5 ended index, 6 waiting index, 7 endpoint stats hash (with
//	      ARGV[17] > 0)
//	ARGV: 1 id, 2 lease ms, 3 status, 4 next ms, 5 now ms,
//	      6 attempts ('' when no attempt was made), 7 status code, 8 error,
//	      9 attempt JSON ('' for none), 10 parked member,
//	      11 attempts kept, 12 attempt start ms (kept as the round's
//	      first attempt when none is recorded yet), 13 when the archiver
//	      takes it (ms; 0 while it stays live), 14 line key prefix,
//	      15 delivery hash key prefix, 16 handoff lease ms (0: none),
//	      17 the endpoint's success time to mark (ms; 0: none), 18 the
//	      endpoint stats' ttl ms
//	returns 1 when recorded, 2 when recorded and the next delivery of its
//	line made due, {2, id, {hash fields...}} when that one was leased to
//	the caller, 0 when the lease was lost
var completeScript = redis.NewScript(orderedLua + raiseOKLua + `
if tonumber(ARGV[17]) > 0 then raiseOK(KEYS[7], ARGV[17], ARGV[18]) end
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not s) or tonumber(s) ~= tonumber(ARGV[2]) then return 0 end
local st = ARGV[3]
-- One HSET with every field that changes.
local f = {'status', st, 'updated', ARGV[5], 'lease', 0}
if st == 'pending' then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
  f[#f + 1] = 'next'; f[#f + 1] = ARGV[4]
else
  redis.call('ZREM', KEYS[1], ARGV[1])
  f[#f + 1] = 'next'; f[#f + 1] = 0
  if st == 'parked' then redis.call('SADD', KEYS[4], ARGV[10]) end
end
if tonumber(ARGV[13]) > 0 then redis.call('ZADD', KEYS[5], ARGV[13], ARGV[1]) end
if ARGV[6] ~= '' then
  f[#f + 1] = 'attempts'; f[#f + 1] = ARGV[6]
  f[#f + 1] = 'code'; f[#f + 1] = ARGV[7]
  f[#f + 1] = 'err'; f[#f + 1] = ARGV[8]
  if (tonumber(redis.call('HGET', KEYS[2], 'first') or '0') or 0) == 0 then
    f[#f + 1] = 'first'; f[#f + 1] = ARGV[12]
  end
elseif ARGV[8] ~= '' then
  f[#f + 1] = 'err'; f[#f + 1] = ARGV[8]
end
redis.call('HSET', KEYS[2], unpack(f))
redis.call('HINCRBY', KEYS[2], 'ver', 1)
redis.call('PERSIST', KEYS[2])
if ARGV[9] ~= '' and redis.call('RPUSH', KEYS[3], ARGV[9]) > tonumber(ARGV[11]) then
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[11]), -1)
end
redis.call('PERSIST', KEYS[3]) -- the log lives as long as the delivery
if st ~= 'pending' and st ~= 'parked' then
  local lease = tonumber(ARGV[16]) or 0
  local nxt = release(KEYS[1], KEYS[6], KEYS[2], ARGV[1], tonumber(ARGV[5]), ARGV[14], ARGV[15], lease)
  if nxt and lease > 0 then return {2, nxt, redis.call('HGETALL', ARGV[15] .. nxt)} end
  if nxt then return 2 end
end
return 1
`)

// releaseScript hands a leased item back, due now, if the lease is held.
//
//	KEYS: 1 schedule zset, 2 delivery hash
//	ARGV: 1 id, 2 lease ms, 3 now ms
var releaseScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not s) or tonumber(s) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], 'lease', 0, 'next', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'ver', 1)
return 1
`)

// requeueScript makes a delivery pending and due now (RetryDelivery),
// unless an attempt of it is in flight (leased), and writes the retry's
// audit entry (pkg/auditlog, per-shard keys of the same slot) in the same
// step: a retry is never made without its entry, and a refused one (in
// flight, missing) writes none. An empty entry id writes no entry. An
// ordered delivery no longer in its line (it ended) joins the tail; one in
// it keeps its place (due now when it is the head).
//
//	KEYS: 1 schedule zset, 2 delivery hash, 3 parked set, 4 ended index,
//	      5 audit index, 6 audit hash (auditlog.ForShard), 7 waiting index
//	ARGV: 1 id, 2 now ms, 3 entry id, 4 entry JSON, 5 account,
//	      6 line key prefix, 7 when the archiver takes it if it waits
//	      behind parked work in history (ms; gate)
//	returns 1 when requeued, 0 when in flight, -1 when missing
var requeueScript = redis.NewScript(orderedLua + `
local st = redis.call('HGET', KEYS[2], 'status')
if not st then return -1 end
local lease = tonumber(redis.call('HGET', KEYS[2], 'lease') or '0') or 0
if st == 'pending' and lease > tonumber(ARGV[2]) and redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
` + auditlog.ShardLua(5, 3) + `
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], 'status', 'pending', 'next', ARGV[2], 'updated', ARGV[2], 'lease', 0)
redis.call('HINCRBY', KEYS[2], 'ver', 1)
redis.call('SREM', KEYS[3], (redis.call('HGET', KEYS[2], 'endpoint') or '') .. '|' .. ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
gate(KEYS[1], KEYS[7], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[6], KEYS[4], ARGV[7])
return 1
`)

var allScripts = []*redis.Script{scheduleScript, claimScript, completeScript, releaseScript, requeueScript,
	restartScript, successScript, disableScript, claimDisablesScript, saveDisableScript, finishDisableScript, eraseScript}
