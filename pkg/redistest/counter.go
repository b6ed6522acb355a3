package redistest

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Counter is a go-redis hook (Client.AddHook) counting what a client
// sends: single commands and pipelines, one round trip each.
type Counter struct {
	Commands, Pipelines atomic.Int64
}

// RoundTrips is how many round trips the client made since the counts
// were last zeroed.
func (c *Counter) RoundTrips() int64 { return c.Commands.Load() + c.Pipelines.Load() }

// DialHook implements redis.Hook.
func (c *Counter) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (c *Counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.Commands.Add(1)
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements redis.Hook.
func (c *Counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.Pipelines.Add(1)
		return next(ctx, cmds)
	}
}
