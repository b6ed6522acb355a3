package redisqueue

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// Keys of the deployment-wide endpoint limits, in the slot of the
// endpoint's stats hash (epStatKey: its shard's hash tag {s<n>}):
//
//	wh:epstat:{s<n>}:<endpoint>:conc  hash    per delivery process holding
//	                                          concurrency places of the
//	                                          endpoint: "<places>:<lease end ms>"
//	wh:epstat:{s<n>}:<endpoint>:rate  string  the rate limit's theoretical
//	                                          arrival time (µs, GCRA)
//
// Both scripts read the time from Redis (TIME), so the processes' clocks
// need not agree.

func concKey(endpointID string) string { return epStatKey(endpointID) + ":conc" }
func rateKey(endpointID string) string { return epStatKey(endpointID) + ":rate" }

// holdScript sets how many places of an endpoint one holder holds: what it
// wants, as far as the limit minus what the other holders hold allows.
// Holders whose lease ended are dropped first (a crashed process's places
// come back).
//
//	KEYS: 1 holders hash
//	ARGV: 1 holder, 2 places wanted, 3 limit, 4 lease ms
//	returns the places the holder now holds
var holdScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local want, limit, lease = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local others = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] then
    local n, till = string.match(all[i + 1], '^(%d+):(%d+)$')
    if n == nil or tonumber(till) <= now then
      redis.call('HDEL', KEYS[1], all[i])
    else
      others = others + tonumber(n)
    end
  end
end
local mine = math.max(0, math.min(want, limit - others))
if mine > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], string.format('%d:%d', mine, now + lease))
  redis.call('PEXPIRE', KEYS[1], 2 * lease)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return mine
`)

// takeScript takes up to n tokens of an endpoint's rate limit (GCRA: one
// token per interval, a burst of tolerance/interval + 1).
//
//	KEYS: 1 rate key
//	ARGV: 1 interval µs, 2 tolerance µs, 3 tokens wanted
//	returns {tokens taken, µs until the next one is free when none was}
var takeScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, tolerance, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local ahead = tat - now
if ahead > tolerance then
  return {0, ahead - tolerance}
end
local k = math.min(n, math.floor((tolerance - ahead) / interval) + 1)
tat = tat + k * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
return {k, 0}
`)

// Limits keeps per-endpoint concurrency places and rate tokens in Redis
// for every delivery process of the deployment.
type Limits struct {
	rdb redis.UniversalClient
}

var _ delivery.EndpointLimits = (*Limits)(nil)

// NewLimits returns the Redis ledger of endpoint limits.
func NewLimits(rdb redis.UniversalClient) *Limits { return &Limits{rdb: rdb} }

// Hold implements delivery.EndpointLimits: one pipeline for all endpoints.
func (l *Limits) Hold(ctx context.Context, holder string, lease time.Duration, wants []delivery.PlaceWant) ([]int, error) {
	calls := make([]redisx.ScriptCall, len(wants))
	for i, w := range wants {
		calls[i] = redisx.ScriptCall{Script: holdScript, Keys: []string{concKey(w.EndpointID)},
			Args: []any{holder, max(w.Want, 0), w.Limit, lease.Milliseconds()}}
	}
	res, errs := redisx.RunScripts(ctx, l.rdb, calls, nil)
	out := make([]int, len(wants))
	for i := range wants {
		if errs[i] != nil {
			return nil, fmt.Errorf("holding places of endpoint %s: %w", wants[i].EndpointID, errs[i])
		}
		n, _ := res[i].(int64)
		out[i] = int(n)
	}
	return out, nil
}

// Take implements delivery.EndpointLimits.
func (l *Limits) Take(ctx context.Context, endpointID string, rate, n int) (int, time.Duration, error) {
	if rate <= 0 {
		return n, 0, nil
	}
	interval := max(int64(math.Round(1e6/float64(rate))), 1)
	tolerance := interval * int64(rate-1) // a burst of one second's worth
	res, errs := redisx.RunScripts(ctx, l.rdb, []redisx.ScriptCall{{Script: takeScript, Keys: []string{rateKey(endpointID)},
		Args: []any{interval, tolerance, max(n, 1)}}}, nil)
	if errs[0] != nil {
		return 0, 0, fmt.Errorf("taking rate tokens of endpoint %s: %w", endpointID, errs[0])
	}
	v, ok := res[0].([]any)
	if !ok || len(v) != 2 {
		return 0, 0, errors.New("taking rate tokens: unexpected reply")
	}
	got, _ := v[0].(int64)
	wait, _ := v[1].(int64)
	return int(got), time.Duration(wait) * time.Microsecond, nil
}
