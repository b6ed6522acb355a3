package redisx

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The suite keeps what is live (the schedule, deliveries, events) in Redis
// and nowhere else, so a key Redis evicts under memory pressure is work lost
// without a trace: a delivery whose hash is gone looks finished to the claim
// script. Every primary must therefore run with maxmemory-policy noeviction,
// where a full Redis refuses writes (which callers see and retry) instead of
// dropping keys. The policy is read from INFO memory, not CONFIG GET, which
// managed Redis (ElastiCache, MemoryDB, …) blocks.

// NoEviction is the only maxmemory-policy the suite runs on.
const NoEviction = "noeviction"

// ErrEvictionPolicy is wrapped by the error of a server that may evict keys
// (or does not say whether it does).
var ErrEvictionPolicy = errors.New("redis may evict keys")

// CheckNoEviction reads maxmemory_policy from INFO memory on every primary
// (each master of a Redis Cluster, the server of a standalone client) and
// returns an error naming the server and its policy unless all of them run
// with noeviction. A primary that does not answer is an error too.
func CheckNoEviction(ctx context.Context, c redis.UniversalClient) error {
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return checkNode(ctx, node, node.Options().Addr)
		})
	}
	addr := ""
	if sc, ok := c.(*redis.Client); ok {
		addr = sc.Options().Addr
	}
	return checkNode(ctx, c, addr)
}

func checkNode(ctx context.Context, c redis.Cmdable, addr string) error {
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return fmt.Errorf("redis %s: INFO memory: %w", addr, err)
	}
	policy, ok := infoField(info, "maxmemory_policy")
	switch {
	case !ok:
		return fmt.Errorf("redis %s: INFO memory has no maxmemory_policy, so whether it evicts keys is unknown; "+
			"the suite needs maxmemory-policy %s: %w", addr, NoEviction, ErrEvictionPolicy)
	case policy != NoEviction:
		return fmt.Errorf("redis %s runs with maxmemory-policy %s: it may evict keys, and an evicted key is a lost delivery; "+
			"set maxmemory-policy %s (on managed Redis, in its parameter group): %w", addr, policy, NoEviction, ErrEvictionPolicy)
	}
	return nil
}

// Ready is a readiness check for serve.Service.Ready: every primary
// answers and runs with noeviction. Called periodically, it turns a service
// unhealthy when a primary's policy is changed at runtime or a new primary
// without noeviction joins the cluster.
func Ready(c redis.UniversalClient) func(context.Context) error {
	return func(ctx context.Context) error { return CheckNoEviction(ctx, c) }
}

// infoField returns the value of field in an INFO reply ("name:value"
// lines).
func infoField(info, field string) (string, bool) {
	for line := range strings.Lines(info) {
		name, value, ok := strings.Cut(strings.TrimRight(line, "\r\n"), ":")
		if ok && name == field {
			return value, true
		}
	}
	return "", false
}
