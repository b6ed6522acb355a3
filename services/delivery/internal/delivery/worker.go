package delivery

import (
	"context"
	"errors"
	"sync"
	"time"
)

// WorkerConfig sizes a Worker.
type WorkerConfig struct {
	// Slots is the number of concurrent attempts (DELIVERY_WORKERS).
	Slots int
	// Batch is the most claimed per queue call (default 100).
	Batch int
	// MaxIdle is the longest sleep between polls of an idle schedule
	// (default 1s). Wake cuts it short.
	MaxIdle time.Duration
}

// Timing of the claimer.
const (
	claimTimeout   = 5 * time.Second
	releaseTimeout = 2 * time.Second
	// drainReserve is kept at the end of a Drain deadline to release the
	// attempts still running.
	drainReserve = 2 * time.Second
	maxBackoff   = 5 * time.Second
)

// Worker claims due deliveries and runs them on a fixed pool of Slots
// goroutines. It claims only as many as there are free slots, so claimed
// work starts at once and leases are never spent waiting.
type Worker struct {
	d   *Dispatcher
	cfg WorkerConfig

	tokens chan struct{} // one per free slot
	jobs   chan Job      // claimed jobs for the pool (capacity Slots)
	wake   chan struct{}

	claimCtx  context.Context // ends: stop claiming
	stopClaim context.CancelFunc
	claimDone chan struct{}
	runCtx    context.Context // ends: abandon running attempts
	abandon   context.CancelFunc
	pool      sync.WaitGroup
	startOnce sync.Once
	drainOnce sync.Once
}

// NewWorker returns a Worker; Start sets it going.
func NewWorker(d *Dispatcher, cfg WorkerConfig) *Worker {
	if cfg.Slots <= 0 {
		cfg.Slots = 256
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = time.Second
	}
	w := &Worker{
		d: d, cfg: cfg,
		tokens:    make(chan struct{}, cfg.Slots),
		jobs:      make(chan Job, cfg.Slots),
		wake:      make(chan struct{}, 1),
		claimDone: make(chan struct{}),
	}
	for range cfg.Slots {
		w.tokens <- struct{}{}
	}
	w.claimCtx, w.stopClaim = context.WithCancel(context.Background())
	w.runCtx, w.abandon = context.WithCancel(context.Background())
	return w
}

// Start launches the claimer and the pool.
func (w *Worker) Start() {
	w.startOnce.Do(func() {
		for range w.cfg.Slots {
			w.pool.Add(1)
			go w.runPool()
		}
		go w.claimLoop()
	})
}

// Wake makes an idle claimer poll now (new work was scheduled).
func (w *Worker) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Drain stops claiming, lets running attempts finish until shortly before
// ctx's deadline, then abandons the rest, which are released (due now) for
// another worker. It returns when every attempt is finished or released.
func (w *Worker) Drain(ctx context.Context) {
	w.drainOnce.Do(func() {
		w.stopClaim()
		w.startOnce.Do(func() { close(w.claimDone) }) // never started: nothing runs
		<-w.claimDone
		close(w.jobs)
		done := make(chan struct{})
		go func() { w.pool.Wait(); close(done) }()
		var grace <-chan time.Time
		if dl, ok := ctx.Deadline(); ok {
			t := time.NewTimer(max(time.Until(dl)-drainReserve, 0))
			defer t.Stop()
			grace = t.C
		}
		select {
		case <-done:
			return
		case <-grace:
		}
		w.d.deps.Logger.Warn("drain deadline near: releasing unfinished attempts")
		w.abandon()
		select {
		case <-done:
		case <-ctx.Done():
		}
	})
}

func (w *Worker) runPool() {
	defer w.pool.Done()
	for job := range w.jobs {
		w.run(job)
		w.tokens <- struct{}{}
	}
}

func (w *Worker) run(job Job) {
	ctx, cancel := context.WithDeadline(w.runCtx, job.LeaseUntil.Add(-w.d.leaseReserve()))
	defer cancel()
	o, err := w.d.Dispatch(ctx, job)
	if !errors.Is(err, errAborted) {
		if err == nil && o.Status == StatusPending {
			w.Wake() // the claimer may be sleeping past the retry's due time
		}
		return
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer rcancel()
	if err := w.d.deps.Queue.Release(rctx, job, w.d.deps.Clock.Now()); err != nil {
		w.d.deps.Logger.Warn("release failed; the lease expires instead", "delivery_id", job.Delivery.ID, "error", err.Error())
	}
}

// claimLoop claims due work whenever slots are free, and otherwise sleeps
// until the earliest item comes due (at most MaxIdle) or Wake is called.
func (w *Worker) claimLoop() {
	defer close(w.claimDone)
	ctx := w.claimCtx
	log := w.d.deps.Logger
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		// Wait for one free slot, then take what else is free, up to Batch.
		select {
		case <-ctx.Done():
			return
		case <-w.tokens:
		}
		n := 1
	take:
		for n < w.cfg.Batch {
			select {
			case <-w.tokens:
				n++
			default:
				break take
			}
		}

		now := w.d.deps.Clock.Now()
		cctx, cancel := context.WithTimeout(ctx, claimTimeout)
		jobs, next, err := w.d.deps.Queue.Claim(cctx, now, w.d.LeaseUntil(now), n)
		cancel()
		for range n - len(jobs) {
			w.tokens <- struct{}{}
		}
		for _, j := range jobs {
			w.jobs <- j // never blocks: a token was taken for it
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Error("claiming due deliveries failed", "error", err.Error(), "retry_in", backoff.String())
			if !w.sleep(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff = 100 * time.Millisecond
		if len(jobs) == n {
			continue // there may be more due
		}
		idle := w.cfg.MaxIdle
		if !next.IsZero() {
			idle = min(max(next.Sub(now), time.Millisecond), w.cfg.MaxIdle)
		}
		if !w.sleep(ctx, idle) {
			return
		}
	}
}

// sleep waits d, or until Wake or ctx ends; false when ctx ended.
func (w *Worker) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-w.wake:
	case <-t.C:
	}
	return true
}
