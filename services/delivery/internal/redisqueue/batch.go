package redisqueue

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// batcher sends the script calls that many goroutines make at about the
// same time (one per finished attempt) in shared pipelines: while one
// pipeline is on the wire the next calls gather, so under load a delivery
// costs a fraction of a round trip and Redis writes (and, with appendfsync
// always, fsyncs) once per batch instead of once per attempt. Nothing
// waits on purpose: a lone call goes out at once.
type batcher struct {
	rdb   redis.UniversalClient
	calls chan *scriptCall
	once  sync.Once
}

// Batching bounds.
const (
	maxBatch     = 256
	batchSenders = 4 // pipelines in flight at once
	batchTimeout = 5 * time.Second
)

type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
	res    any
	err    error
	done   chan struct{}
}

func newBatcher(rdb redis.UniversalClient) *batcher {
	return &batcher{rdb: rdb, calls: make(chan *scriptCall, maxBatch*batchSenders)}
}

// run evaluates script in the next pipeline and returns its reply. When
// ctx ends first the call may still be carried out.
func (b *batcher) run(ctx context.Context, script *redis.Script, keys []string, args ...any) (any, error) {
	b.once.Do(func() {
		for range batchSenders {
			go b.send()
		}
	})
	c := &scriptCall{script: script, keys: keys, args: args, done: make(chan struct{})}
	select {
	case b.calls <- c:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// send takes one call, gathers what else is waiting, and sends it all in
// one pipeline, for ever (the goroutines live as long as the process).
func (b *batcher) send() {
	batch := make([]*scriptCall, 0, maxBatch)
	for c := range b.calls {
		batch = append(batch[:0], c)
	gather:
		for len(batch) < maxBatch {
			select {
			case c := <-b.calls:
				batch = append(batch, c)
			default:
				break gather
			}
		}
		b.exec(batch)
	}
}

func (b *batcher) exec(batch []*scriptCall) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	pending := batch
	for try := 0; try < 2 && len(pending) > 0; try++ {
		cmds := make([]*redis.Cmd, len(pending))
		_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, c := range pending {
				if try == 0 {
					cmds[i] = c.script.EvalSha(ctx, p, c.keys, c.args...)
				} else {
					cmds[i] = c.script.Eval(ctx, p, c.keys, c.args...)
				}
			}
			return nil
		})
		var again []*scriptCall
		for i, c := range pending {
			cerr := cmds[i].Err()
			if cerr == nil && err != nil && !isNoScript(err) {
				cerr = err
			}
			if isNoScript(cerr) && try == 0 {
				again = append(again, c) // script cache flushed (Redis restarted): send the source
				continue
			}
			c.res, c.err = cmds[i].Val(), cerr
			close(c.done)
		}
		pending = again
	}
}
