// Package ratelimit is the per-API-key limit of the public API: one
// limiter for the whole deployment, however many replicas of each service
// run, kept in Redis (GCRA: one key per API key holding its theoretical
// arrival time, changed by one Lua script that reads Redis's clock, so the
// processes' clocks need not agree). It implements authn.Limiter, which the
// authentication interceptor of every service consults on customer calls.
package ratelimit

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/config"
)

// Defaults of API_RATE_LIMIT and API_RATE_BURST.
const (
	DefaultPerSecond = 100
	// DefaultBurstFactor: without API_RATE_BURST a key may send this many
	// seconds' worth of calls at once.
	DefaultBurstFactor = 2
)

// Timeout bounds one check.
const Timeout = time.Second

// Rate is a per-key limit: PerSecond calls a second on average, up to
// Burst at once. PerSecond 0 turns the limit off.
type Rate struct {
	PerSecond int
	Burst     int
}

// FromEnv reads API_RATE_LIMIT (calls per second per key; 0 = off) and
// API_RATE_BURST (default twice the limit). Every service must use the
// same values: they share one limiter.
func FromEnv(env *config.Env) Rate {
	r := Rate{PerSecond: env.Int("API_RATE_LIMIT", DefaultPerSecond, 0)}
	r.Burst = env.Int("API_RATE_BURST", max(1, DefaultBurstFactor*r.PerSecond), 1)
	return r
}

func (r Rate) String() string {
	if r.PerSecond == 0 {
		return "off"
	}
	return fmt.Sprintf("%d/s burst %d", r.PerSecond, r.Burst)
}

// Limiter is the Redis limiter.
type Limiter struct {
	rdb      redis.UniversalClient
	interval int64 // µs between calls at the limit
	burst    int
}

var _ authn.Limiter = (*Limiter)(nil)

// New returns the limiter for r, or nil (no limit: leave authn.Config's
// Limiter unset) when r is off.
func New(rdb redis.UniversalClient, r Rate) authn.Limiter {
	if r.PerSecond <= 0 {
		return nil
	}
	return &Limiter{rdb: rdb, interval: max(1, int64(math.Round(1e6/float64(r.PerSecond)))), burst: max(1, r.Burst)}
}

// Key is the Redis key of an API key's limiter state (one key: no hash
// tag needed on Redis Cluster).
func Key(keyID string) string { return "wh:apirate:" + keyID }

// gcra takes one call. KEYS[1]: theoretical arrival time (µs of Redis
// time); ARGV[1]: emission interval (µs); ARGV[2]: burst. Returns 0 when
// the call may go, else µs until it may. The state expires once idle.
var gcra = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local nxt = tat + interval
if nxt - now > tolerance then
  return nxt - now - tolerance
end
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1)
return 0`)

// Allow implements authn.Limiter.
func (l *Limiter) Allow(ctx context.Context, keyID string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	wait, err := gcra.Run(ctx, l.rdb, []string{Key(keyID)}, l.interval, l.burst).Int64()
	if err != nil {
		return 0, fmt.Errorf("rate limit of %s: %w", keyID, err)
	}
	return time.Duration(wait) * time.Microsecond, nil
}
