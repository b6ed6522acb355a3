// Package redisx opens the suite's Redis connection from REDIS_URL.
package redisx

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Open connects to REDIS_URL. Forms:
//
//	redis://[user:pass@]host:port/db    a standalone server
//	rediss://…                          the same over TLS
//	redis-cluster://host:port,host:port a Redis Cluster (seed nodes)
//
// It waits up to wait for the server to answer PING.
func Open(ctx context.Context, rawURL string, wait time.Duration) (redis.UniversalClient, error) {
	c, err := NewClient(rawURL)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err = c.Ping(pctx).Err()
		cancel()
		if err == nil {
			return c, nil
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
	if rest, ok := strings.CutPrefix(rawURL, "redis-cluster://"); ok {
		u, err := url.Parse("redis://" + rest)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		opt := &redis.ClusterOptions{Addrs: strings.Split(u.Host, ",")}
		if u.User != nil {
			opt.Username = u.User.Username()
			opt.Password, _ = u.User.Password()
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
