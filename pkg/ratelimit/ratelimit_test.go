package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/config"
	"github.com/voxscriber/webhooks/pkg/ratelimit"
	"github.com/voxscriber/webhooks/pkg/redistest"
)

// Two limiters on one Redis are two replicas: together they allow the
// burst, then one call per interval; another key is not affected.
func TestReplicasShareOneLimitPerKey(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	rate := ratelimit.Rate{PerSecond: 2, Burst: 3}
	a, b := ratelimit.New(rs.Client, rate), ratelimit.New(rs.Client, rate)
	for i, l := range []interface {
		Allow(context.Context, string) (time.Duration, error)
	}{a, b, a} {
		if wait, err := l.Allow(ctx, "key_1"); err != nil || wait != 0 {
			t.Fatalf("call %d within the burst: wait %v, %v", i+1, wait, err)
		}
	}
	wait, err := b.Allow(ctx, "key_1")
	if err != nil || wait <= 0 || wait > 500*time.Millisecond {
		t.Fatalf("call past the burst: wait %v, %v; want (0, 500ms]", wait, err)
	}
	if wait, err := a.Allow(ctx, "key_2"); err != nil || wait != 0 {
		t.Fatalf("another key: wait %v, %v", wait, err)
	}
	time.Sleep(wait + 20*time.Millisecond)
	if wait, err := a.Allow(ctx, "key_1"); err != nil || wait != 0 {
		t.Fatalf("after waiting: wait %v, %v", wait, err)
	}
	if ttl := rs.Client.PTTL(ctx, ratelimit.Key("key_1")).Val(); ttl <= 0 || ttl > 2*time.Second {
		t.Fatalf("the limiter state expires in %v; want it gone once idle", ttl)
	}
}

func TestRateSettingsHaveDefaultsAndZeroTurnsTheLimitOff(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want ratelimit.Rate
	}{
		{nil, ratelimit.Rate{PerSecond: ratelimit.DefaultPerSecond, Burst: ratelimit.DefaultBurstFactor * ratelimit.DefaultPerSecond}},
		{map[string]string{"API_RATE_LIMIT": "5"}, ratelimit.Rate{PerSecond: 5, Burst: 10}},
		{map[string]string{"API_RATE_LIMIT": "5", "API_RATE_BURST": "1"}, ratelimit.Rate{PerSecond: 5, Burst: 1}},
		{map[string]string{"API_RATE_LIMIT": "0"}, ratelimit.Rate{PerSecond: 0, Burst: 1}},
	} {
		env := config.FromMap(tc.env)
		if got := ratelimit.FromEnv(env); got != tc.want || env.Err() != nil {
			t.Errorf("%v: %+v, %v; want %+v", tc.env, got, env.Err(), tc.want)
		}
	}
	env := config.FromMap(map[string]string{"API_RATE_LIMIT": "-1", "API_RATE_BURST": "0"})
	ratelimit.FromEnv(env)
	if err := env.Err(); err == nil {
		t.Fatal("bad values accepted")
	}
	if ratelimit.New(nil, ratelimit.Rate{}) != nil {
		t.Fatal("a limit of 0 still limits")
	}
}
