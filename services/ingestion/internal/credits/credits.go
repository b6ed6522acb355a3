// Package credits keeps ingestion's record of each account's credit balance
// and detects the crossings below the credits.low threshold:
//
//	wh:{a:<acct>}:credits  hash  balance, armed ("0" after a crossing until
//	                             the balance is back at or above the
//	                             threshold), crossings (counter), pending
//	                             (crossing not yet confirmed published),
//	                             pending_until (ms: its claim lease)
//
// Detection is one Lua script, so concurrent reports see one crossing.
package credits

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

// DefaultLease is how long a crossing's emitter has to publish it before a
// later report below the threshold publishes it again (under the same
// idempotency key, so at most one event results).
const DefaultLease = 30 * time.Second

// Key is the key of an account's credit record.
func Key(accountID string) string { return "wh:{a:" + accountID + "}:credits" }

// record: KEYS[1] credits hash; ARGV balance, threshold, now ms, lease ms.
// Returns {emit (0/1), crossing}.
var record = redis.NewScript(`
local k = KEYS[1]
local balance = tonumber(ARGV[1])
local threshold = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
redis.call('HSET', k, 'balance', ARGV[1])
if threshold <= 0 then
  redis.call('HSET', k, 'armed', '1')
  redis.call('HDEL', k, 'pending', 'pending_until')
  return {0, 0}
end
if balance >= threshold then
  redis.call('HSET', k, 'armed', '1')
  redis.call('HDEL', k, 'pending', 'pending_until')
  return {0, 0}
end
if redis.call('HGET', k, 'armed') ~= '0' then
  local n = redis.call('HINCRBY', k, 'crossings', 1)
  redis.call('HSET', k, 'armed', '0', 'pending', n, 'pending_until', now + tonumber(ARGV[4]))
  return {1, n}
end
local p = redis.call('HGET', k, 'pending')
if p then
  local until_ms = tonumber(redis.call('HGET', k, 'pending_until') or '0')
  if until_ms <= now then
    redis.call('HSET', k, 'pending_until', now + tonumber(ARGV[4]))
    return {1, tonumber(p)}
  end
end
return {0, 0}
`)

// ack: KEYS[1] credits hash; ARGV crossing. Forgets the pending crossing.
var ack = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'pending') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'pending', 'pending_until')
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
func (r *Redis) Record(ctx context.Context, accountID string, balance, threshold float64) (int64, error) {
	res, err := record.Run(ctx, r.rdb, []string{Key(accountID)},
		strconv.FormatFloat(balance, 'g', -1, 64), strconv.FormatFloat(threshold, 'g', -1, 64),
		r.now().UnixMilli(), r.lease.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, fmt.Errorf("credits record: %w", err)
	}
	if len(res) != 2 || res[0] == 0 {
		return 0, nil
	}
	return res[1], nil
}

// Published implements ingest.CreditTracker.
func (r *Redis) Published(ctx context.Context, accountID string, crossing int64) error {
	if err := ack.Run(ctx, r.rdb, []string{Key(accountID)}, crossing).Err(); err != nil && err != redis.Nil {
		return fmt.Errorf("credits ack: %w", err)
	}
	return nil
}
