// Package changefeed delivers the registry's change announcements to the
// caches of the other services. The registry PUBLISHes an account id on
// Channel after every committed change of its endpoints, settings or API
// keys; a cache drops that account's entries. Pub/sub may lose messages
// (while the subscription reconnects, or when Redis drops a slow
// subscriber), so caches also keep a short TTL that bounds a miss, and
// caches that must not outlive a lost message by more than their TTL
// (API keys) are also flushed whenever the subscription is made again
// (Follow).
package changefeed

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Channel is the Redis pub/sub channel of registry changes; the payload is
// the account id.
const Channel = "wh:registry:changed"

// Cache is what Follow keeps fresh.
type Cache interface {
	// Invalidate drops what is cached about an account: it changed.
	Invalidate(account string)
	// InvalidateAll drops everything: announcements may have been missed
	// (called each time the subscription is confirmed, the first time
	// included, and after every reconnect).
	InvalidateAll()
}

// Watch subscribes to Channel and calls onChange with each account id until
// ctx ends. It returns once the subscription is confirmed (or after a few
// seconds when Redis is unreachable: go-redis keeps retrying in the
// background, and the caches' TTL covers the gap). onChange must be quick.
func Watch(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger, onChange func(account string)) {
	watch(ctx, rdb, log, onChange, nil)
}

// Follow is Watch for caches that are also flushed whenever the
// subscription is (re)made, so a message lost while it was down costs no
// more than the time to reconnect. Their methods must be quick.
func Follow(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger, caches ...Cache) {
	watch(ctx, rdb, log,
		func(account string) {
			for _, c := range caches {
				c.Invalidate(account)
			}
		},
		func() {
			for _, c := range caches {
				c.InvalidateAll()
			}
		})
}

func watch(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger, onChange func(string), onSubscribed func()) {
	ps := rdb.Subscribe(ctx, Channel)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := ps.Receive(rctx); err != nil && log != nil {
		log.Warn("registry change feed not subscribed yet; caches rely on their TTL", "err", err)
	}
	cancel()
	// The first confirmation was read above; later ones (after a
	// reconnect: go-redis subscribes again) arrive on this channel.
	ch := ps.ChannelWithSubscriptions()
	if onSubscribed != nil {
		onSubscribed()
	}
	go func() {
		defer ps.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				switch m := m.(type) {
				case *redis.Message:
					onChange(m.Payload)
				case *redis.Subscription:
					if m.Kind == "subscribe" && onSubscribed != nil {
						if log != nil {
							log.Debug("registry change feed subscribed again; caches flushed")
						}
						onSubscribed()
					}
				}
			}
		}
	}()
}
