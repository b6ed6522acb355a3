package redisqueue

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/autobatch"
	"github.com/voxscriber/webhooks/pkg/redisx"
)

type batcher = autobatch.Batcher[redisx.ScriptCall, any]

// newBatcher returns the batcher of Complete: script calls made by many
// attempts at about the same time share pipelines, so under load Redis
// writes, and with appendfsync always fsyncs, once per batch instead of
// once per attempt. Each batch runs by redisx.RunScripts, which handles
// NOSCRIPT (an empty script cache).
func newBatcher(rdb redis.UniversalClient) *batcher {
	return autobatch.New(autobatch.DefaultMax, autobatch.DefaultSenders, autobatch.DefaultTimeout, func(ctx context.Context, calls []redisx.ScriptCall) ([]any, []error) {
		return redisx.RunScripts(ctx, rdb, calls, nil)
	})
}

// runScript evaluates one script call in the next shared pipeline.
func (q *Queue) runScript(ctx context.Context, script *redis.Script, keys []string, args ...any) (any, error) {
	return q.batch.Do(ctx, redisx.ScriptCall{Script: script, Keys: keys, Args: args})
}
