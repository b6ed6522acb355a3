// Package credits keeps ingestion's record of each account's credit balance
// and detects the crossings below the credits.low threshold:
//
//	wh:{a:<acct>}:credits  hash  balance, armed ("0" after a crossing until
//	                             the balance is back at or above the
//	                             threshold), crossings (counter), and per
//	                             crossing n not yet confirmed published:
//	                             p:<n> (JSON [balance, threshold, event id])
//	                             and c:<n> (ms: end of its publisher's claim)
//
// A crossing stays in the hash until its event is confirmed published,
// whatever the balance does meanwhile; re-arming never drops it. Detection
// and claiming are one Lua script, so concurrent reports see one crossing
// and one publisher at a time.
package credits

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

// DefaultLease is how long a publisher holds its claim on a crossing. It
// only bounds how long other reports wait for a publisher that crashed: a
// publisher that fails releases its claim at once, and one whose claim ran
// out while it was still working publishes under the same event id and
// idempotency key as its successor, so at most one event results.
const DefaultLease = 5 * time.Second

// Key is the key of an account's credit record.
func Key(accountID string) string { return "wh:{a:" + accountID + "}:credits" }

// claim: KEYS[1] credits hash; ARGV record (1: store balance and detect a
// crossing first, 0: only claim), balance, threshold, now ms, lease ms,
// event id for a new crossing.
// Returns {busy until ms (0: none), n, claim until, data, n, claim until, data, ...}:
// the unpublished crossings this call now holds the claim of, in order.
var claim = redis.NewScript(`
local k = KEYS[1]
local now = tonumber(ARGV[4])
-- The layout before per-crossing fields: one pending crossing, no data.
local old = redis.call('HGET', k, 'pending')
if old then
  redis.call('HSET', k, 'p:' .. old, '', 'c:' .. old, redis.call('HGET', k, 'pending_until') or '0')
  redis.call('HDEL', k, 'pending', 'pending_until')
end
if ARGV[1] == '1' then
  local balance, threshold = tonumber(ARGV[2]), tonumber(ARGV[3])
  redis.call('HSET', k, 'balance', ARGV[2])
  if threshold <= 0 or balance >= threshold then
    redis.call('HSET', k, 'armed', '1')
  elseif redis.call('HGET', k, 'armed') ~= '0' then
    local n = redis.call('HINCRBY', k, 'crossings', 1)
    redis.call('HSET', k, 'armed', '0', 'p:' .. n, cjson.encode({ARGV[2], ARGV[3], ARGV[6]}))
  end
end
local fields = redis.call('HGETALL', k)
local ns = {}
for i = 1, #fields, 2 do
  local n = string.match(fields[i], '^p:(%d+)$')
  if n then ns[#ns + 1] = tonumber(n) end
end
table.sort(ns)
local out = {0}
for _, n in ipairs(ns) do
  local held = tonumber(redis.call('HGET', k, 'c:' .. n) or '0')
  if held > now then
    if held > out[1] then out[1] = held end
  else
    local till = now + tonumber(ARGV[5])
    redis.call('HSET', k, 'c:' .. n, string.format('%d', till))
    out[#out + 1] = n
    out[#out + 1] = till
    out[#out + 1] = redis.call('HGET', k, 'p:' .. n)
  end
end
return out
`)

// settle: KEYS[1] credits hash; ARGV crossing, claim until, published (1)
// or given up (0). Forgets a published crossing; a given-up claim is
// released only if it is still the caller's, so the next report takes the
// crossing over at once.
var settle = redis.NewScript(`
local n = ARGV[1]
if ARGV[3] == '1' then
  redis.call('HDEL', KEYS[1], 'p:' .. n, 'c:' .. n)
elseif redis.call('HGET', KEYS[1], 'c:' .. n) == ARGV[2] then
  redis.call('HDEL', KEYS[1], 'c:' .. n)
end
return 0
`)

// Redis implements ingest.CreditTracker.
type Redis struct {
	rdb   redis.UniversalClient
	lease time.Duration
	now   func() time.Time
}

var _ ingest.CreditTracker = (*Redis)(nil)

// New returns a tracker (lease DefaultLease when 0).
func New(rdb redis.UniversalClient, lease time.Duration) *Redis {
	if lease <= 0 {
		lease = DefaultLease
	}
	return &Redis{rdb: rdb, lease: lease, now: time.Now}
}

// Record implements ingest.CreditTracker.
func (r *Redis) Record(ctx context.Context, accountID string, balance, threshold float64) (ingest.Claimed, error) {
	now := r.now()
	return r.run(ctx, accountID, now, "1", strconv.FormatFloat(balance, 'g', -1, 64),
		strconv.FormatFloat(threshold, 'g', -1, 64), ids.New(ids.Event, now))
}

// Claim implements ingest.CreditTracker.
func (r *Redis) Claim(ctx context.Context, accountID string) (ingest.Claimed, error) {
	return r.run(ctx, accountID, r.now(), "0", "0", "0", "")
}

func (r *Redis) run(ctx context.Context, accountID string, now time.Time, record, balance, threshold, eventID string) (ingest.Claimed, error) {
	res, err := claim.Run(ctx, r.rdb, []string{Key(accountID)},
		record, balance, threshold, now.UnixMilli(), r.lease.Milliseconds(), eventID).Slice()
	if err != nil {
		return ingest.Claimed{}, fmt.Errorf("credits record: %w", err)
	}
	if len(res) == 0 || (len(res)-1)%3 != 0 {
		return ingest.Claimed{}, fmt.Errorf("credits record: unexpected reply %v", res)
	}
	var out ingest.Claimed
	if busy, _ := res[0].(int64); busy > 0 {
		out.BusyUntil = time.UnixMilli(busy)
	}
	for i := 1; i < len(res); i += 3 {
		n, _ := res[i].(int64)
		till, _ := res[i+1].(int64)
		data, _ := res[i+2].(string)
		c := ingest.Crossing{N: n, Claim: till}
		if data != "" { // "": a crossing recorded before data was kept
			var f [3]string
			if err := json.Unmarshal([]byte(data), &f); err != nil {
				return ingest.Claimed{}, fmt.Errorf("credits record: crossing %d: %w", n, err)
			}
			c.Balance, _ = strconv.ParseFloat(f[0], 64)
			c.Threshold, _ = strconv.ParseFloat(f[1], 64)
			c.EventID = f[2]
		}
		out.Crossings = append(out.Crossings, c)
	}
	return out, nil
}

// Published implements ingest.CreditTracker.
func (r *Redis) Published(ctx context.Context, accountID string, c ingest.Crossing) error {
	if err := settle.Run(ctx, r.rdb, []string{Key(accountID)}, c.N, c.Claim, 1).Err(); err != nil && err != redis.Nil {
		return fmt.Errorf("credits ack: %w", err)
	}
	return nil
}

// Release implements ingest.CreditTracker.
func (r *Redis) Release(ctx context.Context, accountID string, c ingest.Crossing) error {
	if err := settle.Run(ctx, r.rdb, []string{Key(accountID)}, c.N, c.Claim, 0).Err(); err != nil && err != redis.Nil {
		return fmt.Errorf("credits release: %w", err)
	}
	return nil
}
