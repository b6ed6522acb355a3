// Package autobatch gathers the calls that many goroutines make at about
// the same time into batches for one function, typically one Redis
// pipeline: while a batch is on the wire the next calls gather, so under
// load a call costs a fraction of a round trip, and a lone call still goes
// out at once (nothing waits on purpose).
package autobatch

import (
	"context"
	"sync"
	"time"
)

// The bounds the suite's batchers use: batches of up to DefaultMax calls,
// DefaultSenders batches (pipelines) in flight at once, each within
// DefaultTimeout.
const (
	DefaultMax     = 256
	DefaultSenders = 4
	DefaultTimeout = 5 * time.Second
)

// Func runs a batch and returns one result and one error per request, in
// order.
type Func[Req, Res any] func(ctx context.Context, reqs []Req) ([]Res, []error)

// Batcher sends calls through a Func in batches.
type Batcher[Req, Res any] struct {
	fn      Func[Req, Res]
	max     int
	senders int
	timeout time.Duration
	calls   chan *call[Req, Res]
	once    sync.Once
}

type call[Req, Res any] struct {
	req  Req
	res  Res
	err  error
	done chan struct{}
}

// New returns a Batcher sending batches of up to max requests, at most
// senders batches at a time, each under its own timeout (a batch serves
// many callers, so it does not run under any one caller's context). The
// sending goroutines start with the first call and live as long as the
// process.
func New[Req, Res any](max, senders int, timeout time.Duration, fn Func[Req, Res]) *Batcher[Req, Res] {
	return &Batcher[Req, Res]{fn: fn, max: max, senders: senders, timeout: timeout,
		calls: make(chan *call[Req, Res], max*senders)}
}

// Do runs req in the next batch and returns its result. When ctx ends first
// it returns ctx's error, and the request may still be carried out.
func (b *Batcher[Req, Res]) Do(ctx context.Context, req Req) (Res, error) {
	b.once.Do(func() {
		for range b.senders {
			go b.send()
		}
	})
	c := &call[Req, Res]{req: req, done: make(chan struct{})}
	var zero Res
	select {
	case b.calls <- c:
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

func (b *Batcher[Req, Res]) send() {
	batch := make([]*call[Req, Res], 0, b.max)
	reqs := make([]Req, 0, b.max)
	for c := range b.calls {
		batch = append(batch[:0], c)
	gather:
		for len(batch) < b.max {
			select {
			case c := <-b.calls:
				batch = append(batch, c)
			default:
				break gather
			}
		}
		reqs = reqs[:0]
		for _, c := range batch {
			reqs = append(reqs, c.req)
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		res, errs := b.fn(ctx, reqs)
		cancel()
		for i, c := range batch {
			if i < len(res) {
				c.res = res[i]
			}
			if i < len(errs) {
				c.err = errs[i]
			}
			close(c.done)
		}
		clear(batch) // no references kept to finished calls
	}
}
