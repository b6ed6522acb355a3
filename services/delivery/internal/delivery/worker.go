package delivery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
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
	// in the whole deployment (DELIVERY_ENDPOINT_CONCURRENCY, default 32):
	// the places are held in the dispatcher's EndpointLimits (per process
	// when it has none). A process holds what its claimed work of the
	// endpoint needs, as far as the others leave free, gives back a place
	// that stays idle for trimDelay, and renews what it holds every third
	// of PlaceLease; a crashed process's places come back when its lease
	// ends. A claimed delivery whose endpoint has no free place here waits
	// in an in-memory line
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
	// PlaceLease is how long concurrency places stay held without renewal
	// (default DefaultPlaceLease).
	PlaceLease time.Duration
	// Holder names this process in the ledger of places (default: random).
	Holder string
}

// Defaults of WorkerConfig (and of DELIVERY_WORKERS and
// DELIVERY_ENDPOINT_CONCURRENCY).
const (
	// DefaultWorkerSlots is the default number of concurrent attempts.
	DefaultWorkerSlots = 512
	// DefaultEndpointConcurrency is the default per-endpoint limit.
	DefaultEndpointConcurrency = 32
	// DefaultPlaceLease is how long a process's concurrency places
	// outlive it.
	DefaultPlaceLease = 10 * time.Second
)

// trimDelay is how long a held place may stay idle before it is given
// back: short, so other processes get it, and long enough that a steady
// stream of an endpoint's work reuses it instead of asking Redis each time.
const trimDelay = 20 * time.Millisecond

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
	limits EndpointLimits
	// holdMu makes one Hold call at a time: its answer replaces held.
	holdMu sync.Mutex
	busyMu sync.Mutex
	busy   map[string]int // attempts running per endpoint
	// held is the concurrency places of each endpoint this process holds
	// in the ledger, valid until heldUntil (its lease, renewed).
	held      map[string]int
	heldUntil map[string]time.Time
	trim      chan struct{} // a held place went idle
	// waiting holds claimed jobs of endpoints at their limit; each keeps
	// its slot token and runs when an attempt of its endpoint ends.
	waiting map[string][]Job
	// latency is a moving average of each endpoint's attempt time, kept
	// for latencyMemory after its last attempt; it says how soon a place
	// frees up.
	latency map[string]endpointLatency
	jobs    chan Job // claimed jobs for the pool (capacity Slots)
	wake    chan struct{}
	// offers carries jobs created leased to this worker (Service.Schedule)
	// to offerLoop, which admits them as the claimer admits its claims.
	offers    chan []Job
	offerDone chan struct{}
	started   atomic.Bool

	claimCtx  context.Context // ends: stop claiming
	stopClaim context.CancelFunc
	claimDone chan struct{}
	stopKeep  context.CancelFunc
	keepDone  chan struct{}
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
	if cfg.PlaceLease <= 0 {
		cfg.PlaceLease = DefaultPlaceLease
	}
	if cfg.Holder == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.Holder = hex.EncodeToString(b[:])
	}
	w := &Worker{
		d: d, cfg: cfg,
		tokens:    make(chan struct{}, cfg.Slots),
		jobs:      make(chan Job, cfg.Slots),
		wake:      make(chan struct{}, 1),
		claimDone: make(chan struct{}),
		keepDone:  make(chan struct{}),
		offers:    make(chan []Job),
		offerDone: make(chan struct{}),
		trim:      make(chan struct{}, 1),
		limits:    d.limits(),
		busy:      map[string]int{},
		held:      map[string]int{},
		heldUntil: map[string]time.Time{},
		waiting:   map[string][]Job{},
		latency:   map[string]endpointLatency{},
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
		var keepCtx context.Context
		keepCtx, w.stopKeep = context.WithCancel(context.Background())
		go w.keepPlaces(keepCtx)
		go w.claimLoop()
		go w.offerLoop()
		w.started.Store(true)
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
// another worker. It returns when every attempt is finished or released,
// and gives the endpoints' concurrency places back.
func (w *Worker) Drain(ctx context.Context) {
	w.drainOnce.Do(func() {
		defer w.releasePlaces()
		w.stopClaim()
		w.startOnce.Do(func() { close(w.claimDone); close(w.keepDone); close(w.offerDone) }) // never started: nothing runs
		<-w.claimDone
		<-w.offerDone
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
// requests to the receiver, not our bookkeeping. The next delivery of an
// ordered line that the job's end leased to this worker (Outcome.Handoff)
// takes over the slot: it runs next on this goroutine when it gets a place
// of its endpoint, waits in the endpoint's line with the slot's token, or
// is handed back.
func (w *Worker) runJob(job Job) {
	for {
		next := w.runOne(job)
		if next == nil {
			break
		}
		if w.claimCtx.Err() != nil { // draining: no new work on this slot
			w.handBack([]Job{*next})
			break
		}
		switch w.takeOver(*next) {
		case entered:
			job = *next
			continue
		case queued:
			return // it keeps this slot's token until it runs
		}
		w.handBack([]Job{*next})
		break
	}
	w.tokens <- struct{}{} // the finished job's slot
}

// takeOver admits a job handed off to a running slot: it enters a place of
// its endpoint (asking the ledger for one when this process holds none
// free, as admit does) or its line, or is refused.
func (w *Worker) takeOver(j Job) admission {
	w.holdMu.Lock()
	defer w.holdMu.Unlock()
	ep := j.Delivery.EndpointID
	w.busyMu.Lock()
	a := w.enter(j, time.Now())
	want := w.wants(ep, 1)
	w.busyMu.Unlock()
	if a != refused {
		return a
	}
	w.hold([]PlaceWant{{EndpointID: ep, Want: want, Limit: w.cfg.EndpointConcurrency}})
	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	return w.enter(j, time.Now())
}

// runOne runs job (runJob) and returns the delivery its end handed off.
func (w *Worker) runOne(job Job) *Job {
	start := time.Now()
	left := false
	leave := func() {
		if left {
			return
		}
		left = true
		next, ok, stranded := w.leave(job.Delivery.EndpointID, time.Since(start))
		if ok {
			w.pool.Add(1) // this goroutine is counted, so Drain's Wait cannot have returned
			go func() {
				defer w.pool.Done()
				w.runJob(next)
			}()
		}
		w.handBackFreeing(stranded)
	}
	next := w.run(job, leave)
	leave()
	return next
}

func (w *Worker) run(job Job, sent func()) (handoff *Job) {
	ctx, cancel := context.WithDeadline(w.runCtx, job.LeaseUntil.Add(-w.d.leaseReserve()))
	defer cancel()
	o, err := w.d.dispatch(ctx, job, sent, true)
	if o != nil {
		handoff = o.Handoff
	}
	if !errors.Is(err, errAborted) {
		if err == nil && o.Status == StatusPending {
			w.Wake() // the claimer may be sleeping past the retry's due time
		}
		return handoff
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer rcancel()
	if err := w.d.deps.Queue.Release(rctx, job, w.d.deps.Clock.Now()); err != nil {
		w.d.deps.Logger.Warn("release failed; the lease expires instead", "delivery_id", job.Delivery.ID, "error", err.Error())
	}
	return nil
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
		held := w.admit(jobs)
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

// Leasing at creation. Service.Schedule creates the deliveries that are
// due at once leased to this worker, as many as it has free slots, and
// they start like claimed ones: the claim's round trips, and the wake of
// every claimer, are saved, and the first attempt starts one durable write
// sooner. A delivery it cannot admit is handed back (due now), and one
// whose process dies first comes due when its lease ends, as after a
// claim.

// reserve takes up to n free slots for deliveries about to be created
// leased to this worker: none before Start or once draining.
func (w *Worker) reserve(n int) int {
	if !w.started.Load() || w.claimCtx.Err() != nil {
		return 0
	}
	for k := 0; k < n; k++ {
		select {
		case <-w.tokens:
		default:
			return k
		}
	}
	return n
}

// unreserve gives back n slots that reserve took and no job uses.
func (w *Worker) unreserve(n int) {
	for range n {
		w.tokens <- struct{}{}
	}
}

// handBackFreeing hands jobs back (handBack) and frees the slot each held.
func (w *Worker) handBackFreeing(jobs []Job) {
	w.handBack(jobs)
	w.unreserve(len(jobs))
}

// start admits jobs created leased to this worker, each on a slot reserve
// took for it, without holding up the caller (Schedule answers once its
// write is done; admission may ask the ledger for places).
func (w *Worker) start(jobs []Job) {
	if len(jobs) == 0 {
		return
	}
	go func() {
		select {
		case w.offers <- jobs:
		case <-w.claimCtx.Done(): // draining: released, or their leases end
			w.handBackFreeing(jobs)
		}
	}()
}

// offerLoop admits what start offers until the worker drains (Drain
// closes the pool's channel only after it returned).
func (w *Worker) offerLoop() {
	defer close(w.offerDone)
	for {
		select {
		case jobs := <-w.offers:
			w.handBackFreeing(w.admit(jobs))
		case <-w.claimCtx.Done():
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

// admit starts each claimed job that gets a concurrency place of its
// endpoint, lines up those that can wait for one, and returns the others
// (to be handed back). It first holds, in one call to the ledger, the
// places that the endpoints' claimed work needs beyond what this process
// holds; the jobs already in line get the new places first.
func (w *Worker) admit(jobs []Job) (refused []Job) {
	if len(jobs) == 0 {
		return nil
	}
	w.holdMu.Lock()
	defer w.holdMu.Unlock()
	counts := map[string]int{}
	for _, j := range jobs {
		counts[j.Delivery.EndpointID]++
	}
	now := time.Now()
	var wants []PlaceWant
	w.busyMu.Lock()
	for ep, n := range counts {
		want := w.wants(ep, n)
		if want > w.places(ep, now) {
			wants = append(wants, PlaceWant{EndpointID: ep, Want: want, Limit: w.cfg.EndpointConcurrency})
		}
	}
	w.busyMu.Unlock()
	w.hold(wants)

	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	now = time.Now()
	for _, want := range wants {
		ep := want.EndpointID
		for len(w.waiting[ep]) > 0 && w.busy[ep] < w.places(ep, now) {
			w.busy[ep]++
			w.jobs <- w.popWaiting(ep) // never blocks: it kept its token
		}
	}
	for _, j := range jobs {
		switch w.enter(j, now) {
		case entered:
			w.jobs <- j // never blocks: a token was taken for it
		case queued: // keeps its token until it runs
		default:
			refused = append(refused, j)
		}
	}
	return refused
}

// wants is how many concurrency places of the endpoint this process needs
// with n more jobs of it: those running, those in its line and the n, up
// to the limit (busyMu held).
func (w *Worker) wants(endpointID string, n int) int {
	return min(w.cfg.EndpointConcurrency, w.busy[endpointID]+len(w.waiting[endpointID])+n)
}

// enter takes one of the endpoint's concurrency places held here, or a
// place in its line when all are taken and one of them will pass its place
// on (busyMu held).
func (w *Worker) enter(j Job, now time.Time) admission {
	ep := j.Delivery.EndpointID
	if len(w.waiting[ep]) == 0 && w.busy[ep] < w.places(ep, now) {
		w.busy[ep]++
		return entered
	}
	if w.busy[ep] > 0 && len(w.waiting[ep]) < w.lineLimit(ep) {
		w.waiting[ep] = append(w.waiting[ep], j)
		return queued
	}
	return refused
}

// places is how many concurrency places of the endpoint this process may
// use now (busyMu held): what it holds while the lease lasts.
func (w *Worker) places(endpointID string, now time.Time) int {
	if now.Before(w.heldUntil[endpointID]) {
		return w.held[endpointID]
	}
	return 0
}

func (w *Worker) popWaiting(endpointID string) Job {
	q := w.waiting[endpointID]
	next := q[0]
	if len(q) == 1 {
		delete(w.waiting, endpointID)
	} else {
		w.waiting[endpointID] = q[1:]
	}
	return next
}

// hold asks the ledger for the places of wants and records what this
// process now holds (holdMu held). On failure nothing changes: places
// whose lease ends unrenewed stop being used.
func (w *Worker) hold(wants []PlaceWant) {
	if len(wants) == 0 {
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
	got, err := w.limits.Hold(ctx, w.cfg.Holder, w.cfg.PlaceLease, wants)
	cancel()
	if err != nil {
		w.d.deps.Logger.Warn("holding endpoint concurrency places failed", "endpoints", len(wants), "error", err.Error())
		return
	}
	until := start.Add(w.cfg.PlaceLease) // the ledger's lease started later
	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	for i, want := range wants {
		if got[i] > 0 {
			w.held[want.EndpointID], w.heldUntil[want.EndpointID] = got[i], until
		} else {
			delete(w.held, want.EndpointID)
			delete(w.heldUntil, want.EndpointID)
		}
	}
}

// keepPlaces gives back places that went idle (trimDelay after the first
// one did) and renews the rest every third of the lease.
func (w *Worker) keepPlaces(ctx context.Context) {
	defer close(w.keepDone)
	renew := time.NewTicker(w.cfg.PlaceLease / 3)
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-renew.C:
			w.syncPlaces(true)
		case <-w.trim:
			t := time.NewTimer(trimDelay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			w.syncPlaces(false)
		}
	}
}

// syncPlaces gives back the places nothing here needs (the running
// attempts and the lines), and with renew, renews the others.
func (w *Worker) syncPlaces(renew bool) {
	w.holdMu.Lock()
	defer w.holdMu.Unlock()
	var wants []PlaceWant
	w.busyMu.Lock()
	if renew {
		w.forgetLatencies(time.Now())
	}
	for ep, h := range w.held {
		want := min(h, w.busy[ep]+len(w.waiting[ep]))
		if want < h {
			w.held[ep] = want // no attempt starts on a place being given back
		} else if !renew {
			continue
		}
		wants = append(wants, PlaceWant{EndpointID: ep, Want: want, Limit: w.cfg.EndpointConcurrency})
	}
	w.busyMu.Unlock()
	w.hold(wants)
}

// releasePlaces stops renewing and gives every place back.
func (w *Worker) releasePlaces() {
	if w.stopKeep != nil {
		w.stopKeep()
	}
	<-w.keepDone
	w.holdMu.Lock()
	defer w.holdMu.Unlock()
	var wants []PlaceWant
	w.busyMu.Lock()
	for ep := range w.held {
		wants = append(wants, PlaceWant{EndpointID: ep, Want: 0, Limit: w.cfg.EndpointConcurrency})
	}
	w.busyMu.Unlock()
	w.hold(wants)
}

// latencyMemory is how long an endpoint's average attempt time is kept
// after its last attempt. Kept across idle gaps, it lets the next burst of
// a fast endpoint (a batch fanned out to it) wait in its line instead of
// being handed back as if its speed were unknown (BusyDelay); forgotten
// after that, it bounds the map by the endpoints of the last minutes.
const latencyMemory = 10 * time.Minute

// endpointLatency is an endpoint's moving average attempt time and when
// its last attempt ended.
type endpointLatency struct {
	avg  time.Duration
	seen time.Time
}

// add folds in an attempt that took took and ended at now.
func (l endpointLatency) add(took time.Duration, now time.Time) endpointLatency {
	if l.avg > 0 {
		took = (4*l.avg + took) / 5
	}
	return endpointLatency{avg: took, seen: now}
}

// forgetLatencies drops the averages of endpoints with no attempt for
// latencyMemory (busyMu held).
func (w *Worker) forgetLatencies(now time.Time) {
	for ep, l := range w.latency {
		if w.busy[ep] == 0 && now.Sub(l.seen) > latencyMemory {
			delete(w.latency, ep)
		}
	}
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
	lat := w.latency[endpointID].avg
	if lat <= 0 {
		return limit
	}
	n := int(time.Duration(limit) * lineBudget / lat)
	return max(min(n, w.cfg.Slots/2), limit)
}

// leave ends an attempt of the endpoint that took took. When a job of the
// same endpoint is waiting it is returned to run next in the same place.
// When the endpoint's last attempt here ends with jobs still in line and no
// place for them (the lease of the places was lost), they are returned as
// stranded, to be handed back.
func (w *Worker) leave(endpointID string, took time.Duration) (next Job, ok bool, stranded []Job) {
	w.busyMu.Lock()
	defer w.busyMu.Unlock()
	now := time.Now()
	w.latency[endpointID] = w.latency[endpointID].add(took, now)
	if len(w.waiting[endpointID]) > 0 && w.busy[endpointID] <= w.places(endpointID, now) {
		return w.popWaiting(endpointID), true, nil
	}
	if w.busy[endpointID] <= 1 {
		delete(w.busy, endpointID)
		stranded = w.waiting[endpointID]
		delete(w.waiting, endpointID)
	} else {
		w.busy[endpointID]--
	}
	if w.held[endpointID] > w.busy[endpointID]+len(w.waiting[endpointID]) {
		select {
		case w.trim <- struct{}{}:
		default:
		}
	}
	return Job{}, false, stranded
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
	lat := w.latency[endpointID].avg
	if lat <= 0 {
		lat = w.cfg.BusyDelay
	}
	ahead := time.Duration(1 + (len(w.waiting[endpointID])+k)/w.cfg.EndpointConcurrency)
	return min(max(lat*ahead, minBusyDelay), maxBusyDelay)
}
