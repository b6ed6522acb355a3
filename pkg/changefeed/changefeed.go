// Package changefeed delivers the registry's change announcements to the
// caches of the other services. The registry PUBLISHes an account id on
// Channel after every committed endpoint or settings change; a cache drops
// that account's entries. Caches also keep a short TTL, so that a message
// missed (for example while the subscription reconnects) is bounded.
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

// Watch subscribes to Channel and calls onChange with each account id until
// ctx ends. It returns once the subscription is confirmed (or after a few
// seconds when Redis is unreachable: go-redis keeps retrying in the
// background, and the caches' TTL covers the gap). onChange must be quick.
func Watch(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger, onChange func(account string)) {
	ps := rdb.Subscribe(ctx, Channel)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := ps.Receive(rctx); err != nil && log != nil {
		log.Warn("registry change feed not subscribed yet; caches rely on their TTL", "err", err)
	}
	cancel()
	ch := ps.Channel()
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
				onChange(m.Payload)
			}
		}
	}()
}
