package redisqueue

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/autobatch"
)

// scriptCall is one script evaluation.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
}

type batcher = autobatch.Batcher[scriptCall, any]

// newBatcher returns the batcher of Complete: script calls made by many
// attempts at about the same time share pipelines, so under load Redis
// writes, and with appendfsync always fsyncs, once per batch instead of
// once per attempt.
func newBatcher(rdb redis.UniversalClient) *batcher {
	return autobatch.New(autobatch.DefaultMax, autobatch.DefaultSenders, autobatch.DefaultTimeout, func(ctx context.Context, calls []scriptCall) ([]any, []error) {
		return runScripts(ctx, rdb, calls, nil)
	})
}

// runScript evaluates one script call in the next shared pipeline.
func (q *Queue) runScript(ctx context.Context, script *redis.Script, keys []string, args ...any) (any, error) {
	return q.batch.Do(ctx, scriptCall{script: script, keys: keys, args: args})
}

// runScripts sends script calls in one pipeline by hash, and the source of
// those that met an empty script cache (a restarted Redis) in a second.
// This is the one place that handles NOSCRIPT. after (may be nil) adds
// commands behind the scripts in each pipeline sent, so they must be
// idempotent; an error of theirs is every call's error.
func runScripts(ctx context.Context, rdb redis.UniversalClient, calls []scriptCall, after func(redis.Pipeliner)) ([]any, []error) {
	res, errs := make([]any, len(calls)), make([]error, len(calls))
	pending := make([]int, len(calls))
	for i := range pending {
		pending[i] = i
	}
	for try := 0; try < 2 && len(pending) > 0; try++ {
		cmds := make([]*redis.Cmd, len(pending))
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j, i := range pending {
				c := calls[i]
				if try == 0 {
					cmds[j] = c.script.EvalSha(ctx, p, c.keys, c.args...)
				} else {
					cmds[j] = c.script.Eval(ctx, p, c.keys, c.args...)
				}
			}
			if after != nil {
				after(p)
			}
			return nil
		})
		var again []int
		for j, i := range pending {
			cerr := cmds[j].Err()
			if cerr == nil && err != nil && !isNoScript(err) {
				cerr = err
			}
			if try == 0 && isNoScript(cerr) {
				again = append(again, i)
				continue
			}
			res[i], errs[i] = cmds[j].Val(), cerr
		}
		pending = again
	}
	return res, errs
}
