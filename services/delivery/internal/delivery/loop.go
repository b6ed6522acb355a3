package delivery

import (
	"context"
	"time"
)

// pollLoop is a background loop of the dispatcher (pending disables,
// operational events): it runs at start, when kicked, and after every
// pause (pause()), each time claiming up to batch due items with claim and
// handling each one with handle until fewer than batch come back. A failed
// claim is logged as "claiming <what> failed".
type pollLoop[T any] struct {
	what   string
	batch  int
	kick   <-chan struct{}
	pause  func() time.Duration
	claim  func(ctx context.Context, now time.Time, max int) ([]T, error)
	handle func(ctx context.Context, item T)
}

// start runs the loop (when on) until ctx ends or the returned stop is
// called; stop waits, within its ctx, for the item in progress.
func (l pollLoop[T]) start(ctx context.Context, d *Dispatcher, on bool) (stop func(context.Context)) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	if !on {
		close(done)
	} else {
		go func() {
			defer close(done)
			l.run(ctx, d)
		}()
	}
	return func(wctx context.Context) {
		cancel()
		select {
		case <-done:
		case <-wctx.Done():
		}
	}
}

func (l pollLoop[T]) run(ctx context.Context, d *Dispatcher) {
	tick := time.NewTimer(0)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-tick.C:
		}
		for ctx.Err() == nil {
			cctx, cancel := context.WithTimeout(ctx, lookupTimeout)
			due, err := l.claim(cctx, d.deps.Clock.Now(), l.batch)
			cancel()
			if err != nil && ctx.Err() == nil {
				d.deps.Logger.ErrorContext(ctx, "claiming "+l.what+" failed", "error", err.Error())
			}
			for _, it := range due {
				l.handle(ctx, it)
			}
			if len(due) < l.batch {
				break
			}
		}
		tick.Reset(l.pause())
	}
}
