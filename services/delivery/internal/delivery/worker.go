package delivery

import (
	"context"
	"errors"
	"sync"
	"time"
)

// WorkerConfig sizes a Worker.
type WorkerConfig struct {
	// Slots is the number of concurrent attempts (DELIVERY_WORKERS,
	// default DefaultWorkerSlots).
	Slots int
	// Batch is the most claimed per queue call (default 100).
	Batch int
	// MaxIdle is the longest sleep between polls of an idle schedule
	// (default 1s). Wake cuts it short.
	MaxIdle time.Duration
	// EndpointConcurrency is the most concurrent attempts to one endpoint
	// in this process (DELIVERY_ENDPOINT_CONCURRENCY, default 32). A claimed
	// delivery whose endpoint is at the limit waits in an in-memory line
	// and runs as soon as one of the endpoint's requests ends; the line
	// holds what the endpoint gets through in about a second (at least the
	// limit, at most half the slots; see lineLimit). Past that line it is
	// handed back, due when a place should be free (see busyDelay;
	// BusyDelay, default 500ms, stands for the attempt time until one is
	// known). So a slow endpoint holds at most twice its limit of slots and
	// never holds up the others, and a fast one's backlog does not bounce
	// through Redis.
	EndpointConcurrency int
	BusyDelay           time.Duration
}

// Defaults of WorkerConfig (and of DELIVERY_WORKERS and
// DELIVERY_ENDPOINT_CONCURRENCY).
const (
	// DefaultWorkerSlots is the default number of concurrent attempts.
	DefaultWorkerSlots = 512
	// DefaultEndpointConcurrency is the default per-endpoint limit.
	DefaultEndpointConcurrency = 32
)

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
	busyMu sync.Mutex
	busy   map[string]int // attempts running per endpoint
	// waiting holds claimed jobs of endpoints at their limit; each keeps
	// its slot token and runs when an attempt of its endpoint ends.
	waiting map[string][]Job
	// latency is a moving average of each busy endpoint's attempt time; it
	// says how soon a place frees up.
	latency map[string]time.Duration
	jobs    chan Job // claimed jobs for the pool (capacity Slots)
	wake    chan struct{}

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
		cfg.Slots = DefaultWorkerSlots
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = time.Second
	}
	if cfg.EndpointConcurrency <= 0 {
		cfg.EndpointConcurrency = DefaultEndpointConcurrency
	}
	if cfg.BusyDelay <= 0 {
		cfg.BusyDelay = 500 * time.Millisecond
	}
	w := &Worker{
		d: d, cfg: cfg,
		tokens:    make(chan struct{}, cfg.Slots),
		jobs:      make(chan Job, cfg.Slots),
		wake:      make(chan struct{}, 1),
		claimDone: make(chan struct{}),
		busy:      map[string]int{},
		waiting:   map[string][]Job{},
		latency:   map[string]time.Duration{},
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
		w.runJob(job)
	}
}

// runJob runs a job on its slot. The endpoint's concurrency place is given
// up as soon as the HTTP request ends (or the job ends without one), so a
// job of the same endpoint waiting for that place starts, on its own slot,
// while this one's outcome is still being recorded: the limit counts
// requests to the receiver, not our bookkeeping.
func (w *Worker) runJob(job Job) {
	start := time.Now()
	left := false
	leave := func() {
		if left {
			return
		}
		left = true
		if next, ok := w.leave(job.Delivery.EndpointID, time.Since(start)); ok {
			w.pool.Add(1) // this goroutine is counted, so Drain's Wait cannot have returned
			go func() {
				defer w.pool.Done()
				w.runJob(next)
			}()
		}
	}
	w.run(job, leave)
	leave()
	w.tokens <- struct{}{} // the finished job's slot
}

func (w *Worker) run(job Job, sent func()) {
	ctx, cancel := context.WithDeadline(w.runCtx, job.LeaseUntil.Add(-w.d.leaseReserve()))
	defer cancel()
	o, err := w.d.dispatch(ctx, job, sent)
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
		var held []Job
		for _, j := range jobs {
			switch w.enter(j) {
			case entered:
				w.jobs <- j // never blocks: a token was taken for it
			case queued: // keeps its token until it runs
			default:
				held = append(held, j)
			}
		}
		w.handBack(held)
		for range n - len(jobs) + len(held) {
			w.tokens <- struct{}{}
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

type admission int

const (
	entered admission = iota // runs now
	queued                   // waits for a place of its endpoint
	refused                  // endpoint and its line are full
)

// enter takes one of the endpoint's concurrency places, or a place in its
// line when all are taken.
func (w *Worker) enter(j Job) admission {
	ep := j.Delivery.EndpointID
	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	if w.busy[ep] < w.cfg.EndpointConcurrency {
		w.busy[ep]++
		return entered
	}
	if len(w.waiting[ep]) < w.lineLimit(ep) {
		w.waiting[ep] = append(w.waiting[ep], j)
		return queued
	}
	return refused
}

// lineBudget is about how long a claimed job may wait in its endpoint's
// line: long enough that a fast endpoint's backlog flows without trips
// back to Redis, short next to a lease.
const lineBudget = time.Second

// lineLimit is how many claimed jobs of an endpoint may wait for one of its
// places (busyMu held): what its places finish within lineBudget at its
// average attempt time, at least its limit (all an endpoint of unknown
// speed gets) and at most half the slots, so others always find room.
func (w *Worker) lineLimit(endpointID string) int {
	limit := w.cfg.EndpointConcurrency
	lat, ok := w.latency[endpointID]
	if !ok || lat <= 0 {
		return limit
	}
	n := int(time.Duration(limit) * lineBudget / lat)
	return max(min(n, w.cfg.Slots/2), limit)
}

// leave ends an attempt of the endpoint that took took. When a job of the
// same endpoint is waiting it is returned to run next in the same place.
func (w *Worker) leave(endpointID string, took time.Duration) (Job, bool) {
	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	if old, ok := w.latency[endpointID]; ok {
		w.latency[endpointID] = (4*old + took) / 5
	} else {
		w.latency[endpointID] = took
	}
	if q := w.waiting[endpointID]; len(q) > 0 {
		next := q[0]
		if len(q) == 1 {
			delete(w.waiting, endpointID)
		} else {
			w.waiting[endpointID] = q[1:]
		}
		return next, true
	}
	if w.busy[endpointID] <= 1 {
		delete(w.busy, endpointID)
		delete(w.latency, endpointID)
	} else {
		w.busy[endpointID]--
	}
	return Job{}, false
}

// handBack releases jobs of endpoints at their limit (no attempt is
// counted) in one round trip. Each comes back when its endpoint should have
// a place for it: the k-th refused job of an endpoint is due after its
// average attempt time times 1+k/limit (a fast endpoint's overflow returns
// within milliseconds; a hanging one's is spread over up to maxBusyDelay),
// so a saturated endpoint is not claimed and handed back over and over
// while other endpoints' work waits behind it.
func (w *Worker) handBack(jobs []Job) {
	if len(jobs) == 0 {
		return
	}
	now := w.d.deps.Clock.Now()
	due := make([]time.Time, len(jobs))
	nth := map[string]int{}
	for i, j := range jobs {
		ep := j.Delivery.EndpointID
		due[i] = now.Add(w.busyDelay(ep, nth[ep]))
		nth[ep]++
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if err := w.d.deps.Queue.ReleaseAll(ctx, jobs, due); err != nil {
		w.d.deps.Logger.Warn("handing back deliveries of busy endpoints failed; their leases expire instead",
			"deliveries", len(jobs), "error", err.Error())
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

// Bounds of a hand-back delay.
const (
	minBusyDelay = 10 * time.Millisecond
	maxBusyDelay = 30 * time.Second
)

// busyDelay is when the k-th refused job of an endpoint should find a
// place: the endpoint's average attempt time (BusyDelay before any attempt
// ended) times the lines ahead of it.
func (w *Worker) busyDelay(endpointID string, k int) time.Duration {
	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	lat, ok := w.latency[endpointID]
	if !ok {
		lat = w.cfg.BusyDelay
	}
	ahead := time.Duration(1 + (len(w.waiting[endpointID])+k)/w.cfg.EndpointConcurrency)
	return min(max(lat*ahead, minBusyDelay), maxBusyDelay)
}
