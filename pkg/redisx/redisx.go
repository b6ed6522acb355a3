// Package redisx opens the suite's Redis connection from REDIS_URL.
package redisx

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultOpenWait is how long a service waits at start-up for Redis to
// answer PING (Open's wait) before it gives up, so a service may start
// alongside its Redis (docker compose, make run, a rolling restart).
const DefaultOpenWait = 30 * time.Second

// Open connects to REDIS_URL. Forms:
//
//	redis://[user:pass@]host:port/db    a standalone server
//	rediss://…                          the same over TLS
//	redis-cluster://[user:pass@]host:port,host:port[?opts]
//	                                    a Redis Cluster (seed nodes)
//	rediss-cluster://…                  the same over TLS
//
// It waits up to wait for the server to answer PING, then refuses (at once,
// without waiting) a Redis any of whose primaries may evict keys: see
// CheckNoEviction.
func Open(ctx context.Context, rawURL string, wait time.Duration) (redis.UniversalClient, error) {
	c, err := NewClient(rawURL)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err = c.Ping(pctx).Err()
		if err == nil {
			err = CheckNoEviction(pctx, c)
		}
		cancel()
		if err == nil {
			return c, nil
		}
		if errors.Is(err, ErrEvictionPolicy) {
			_ = c.Close()
			return nil, fmt.Errorf("refusing to start: %w", err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = c.Close()
			return nil, fmt.Errorf("redis %s: %w", Redact(rawURL), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// NewClient builds a client for REDIS_URL without connecting.
func NewClient(rawURL string) (redis.UniversalClient, error) {
	if scheme, rest, ok := clusterURL(rawURL); ok {
		// ParseClusterURL's form: the first seed in the host, the others as
		// addr parameters, options (dial_timeout, …) as further parameters.
		seeds, query, _ := strings.Cut(rest, "?")
		userinfo, hosts := "", seeds
		if at := strings.LastIndex(seeds, "@"); at >= 0 {
			userinfo, hosts = seeds[:at+1], seeds[at+1:]
		}
		hosts = strings.TrimSuffix(hosts, "/")
		addrs := strings.Split(hosts, ",")
		q := url.Values{}
		if query != "" {
			var err error
			if q, err = url.ParseQuery(query); err != nil {
				return nil, fmt.Errorf("REDIS_URL %s: %w", Redact(rawURL), err)
			}
		}
		for _, a := range addrs[1:] {
			q.Add("addr", a)
		}
		opt, err := redis.ParseClusterURL(scheme + "://" + userinfo + addrs[0] + "?" + q.Encode())
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL %s: %w", Redact(rawURL), err)
		}
		c := redis.NewClusterClient(opt)
		c.AddHook(newErrorHook())
		return c, nil
	}
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL %s: %w", Redact(rawURL), err)
	}
	opt.PoolSize = 64
	c := redis.NewClient(opt)
	c.AddHook(newErrorHook())
	return c, nil
}

// clusterURL splits a redis-cluster:// or rediss-cluster:// URL into the
// scheme of one node ("redis" or "rediss") and the rest.
func clusterURL(rawURL string) (scheme, rest string, ok bool) {
	if rest, ok := strings.CutPrefix(rawURL, "redis-cluster://"); ok {
		return "redis", rest, true
	}
	if rest, ok := strings.CutPrefix(rawURL, "rediss-cluster://"); ok {
		return "rediss", rest, true
	}
	return "", "", false
}

// Redact hides a password in a Redis URL for logs and errors.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return rawURL
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
