package delivery

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// EndpointLimits is the ledger of per-endpoint limits that every delivery
// process of the deployment shares (redisqueue.Limits), so that an
// endpoint's concurrency limit and rate limit hold for the deployment, not
// per process. Without one (Deps.Limits nil) they hold per process.
type EndpointLimits interface {
	// Hold sets how many concurrency places of each endpoint holder holds
	// until lease from now: as many as it wants, as far as the limit minus
	// what other live holders hold allows (0 gives them all back). It
	// returns, per want, what holder now holds. A holder that stops
	// renewing loses its places when the lease ends.
	Hold(ctx context.Context, holder string, lease time.Duration, wants []PlaceWant) ([]int, error)
	// Take takes up to n tokens of an endpoint's rate limit (rate per
	// second, a burst of one second's worth). When it gets none, wait is
	// how long until the next one is free.
	Take(ctx context.Context, endpointID string, rate, n int) (got int, wait time.Duration, err error)
}

// PlaceWant asks for an endpoint's concurrency places.
type PlaceWant struct {
	EndpointID string
	Want       int
	Limit      int
}

// limits returns the deployment's ledger, or this process's own.
func (d *Dispatcher) limits() EndpointLimits {
	if d.deps.Limits != nil {
		return d.deps.Limits
	}
	d.rates.localOnce.Do(func() { d.rates.local = &localLimits{now: d.deps.Clock.Now} })
	return d.rates.local
}

// Rate tokens are taken from the ledger a few at a time and kept here for
// at most tokenLife: the deployment sends an endpoint at most its burst
// plus rate × (window + tokenLife) in any window. A grant that was used up
// in time doubles the next one, one that expired unused halves it, up to
// tokenLife's worth of the rate.
const tokenLife = 100 * time.Millisecond

// rateLimits enforces each endpoint's optional requests-per-second limit.
// A delivery over the limit is put back, due when a token is free (spread
// over up to a second), without an attempt: it holds its worker slot only
// for the lookup.
type rateLimits struct {
	mu     sync.Mutex
	grants map[string]*grant

	localOnce sync.Once
	local     *localLimits
}

// grant is the tokens of one endpoint this process took from the ledger.
type grant struct {
	tokens int
	until  time.Time     // tokens unspent by then are dropped
	next   int           // size of the next take
	deny   time.Time     // the ledger has no token before then
	taking chan struct{} // closed when the take in flight ends
}

// maxGrants bounds the map; dropping grants loses only unspent tokens.
const maxGrants = 100_000

// checkRate takes a token of t's rate limit for dl, or returns the
// deferral outcome.
func (d *Dispatcher) checkRate(ctx context.Context, dl *Delivery, t *Target) *Outcome {
	if t == nil || t.RateLimit <= 0 {
		return nil
	}
	r := &d.rates
	for {
		now := d.deps.Clock.Now()
		r.mu.Lock()
		if r.grants == nil || len(r.grants) > maxGrants {
			r.grants = map[string]*grant{}
		}
		g := r.grants[t.EndpointID]
		if g == nil {
			g = &grant{next: 1}
			r.grants[t.EndpointID] = g
		}
		switch {
		case g.tokens > 0 && now.Before(g.until):
			g.spend(t.RateLimit)
			r.mu.Unlock()
			return nil
		case g.taking != nil:
			ch := g.taking
			r.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return deferRate(d.deps.Clock.Now(), 0)
			}
		case now.Before(g.deny):
			wait := g.deny.Sub(now)
			r.mu.Unlock()
			return deferRate(now, wait)
		}
		if g.tokens > 0 { // expired unspent
			g.next = max(g.next/2, 1)
		}
		g.tokens = 0
		n := g.next
		ch := make(chan struct{})
		g.taking = ch
		r.mu.Unlock()

		got, wait, err := d.limits().Take(ctx, t.EndpointID, t.RateLimit, n)
		now = d.deps.Clock.Now()
		r.mu.Lock()
		g.taking = nil
		close(ch)
		switch {
		case err != nil:
			r.mu.Unlock()
			return d.deferred(ctx, dl, now, "taking a rate limit token failed", err)
		case got == 0:
			g.deny = now.Add(wait)
			r.mu.Unlock()
			return deferRate(now, wait)
		}
		g.tokens, g.until = got, now.Add(tokenLife)
		g.spend(t.RateLimit)
		r.mu.Unlock()
		return nil
	}
}

// spend uses one token; using the last one in time doubles the next take.
func (g *grant) spend(rate int) {
	g.tokens--
	if g.tokens == 0 {
		g.next = min(g.next*2, max(rate*int(tokenLife)/int(time.Second), 1))
	}
}

// deferRate is the outcome of a delivery over its endpoint's rate: due when
// the next token is free, spread over up to a second so the waiting
// deliveries do not all come back at once.
func deferRate(now time.Time, wait time.Duration) *Outcome {
	wait += time.Duration(rand.Int64N(int64(time.Second)))
	return &Outcome{Status: StatusPending, Next: now.Add(max(wait, time.Millisecond)), Now: now}
}

// localLimits is EndpointLimits for one process alone: every holder is
// granted what it wants up to the limit, and each endpoint's rate is a
// token bucket in memory.
type localLimits struct {
	now     func() time.Time
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
	rate   int
}

// Hold implements EndpointLimits.
func (*localLimits) Hold(_ context.Context, _ string, _ time.Duration, wants []PlaceWant) ([]int, error) {
	out := make([]int, len(wants))
	for i, w := range wants {
		out[i] = max(min(w.Want, w.Limit), 0)
	}
	return out, nil
}

// Take implements EndpointLimits.
func (l *localLimits) Take(_ context.Context, endpointID string, rate, n int) (int, time.Duration, error) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets == nil || len(l.buckets) > maxGrants {
		l.buckets = map[string]*bucket{}
	}
	b := l.buckets[endpointID]
	if b == nil || b.rate != rate {
		b = &bucket{tokens: float64(rate), last: now, rate: rate}
		l.buckets[endpointID] = b
	}
	b.tokens = min(float64(b.rate), b.tokens+now.Sub(b.last).Seconds()*float64(b.rate))
	b.last = now
	if b.tokens < 1 {
		return 0, time.Duration((1 - b.tokens) / float64(b.rate) * float64(time.Second)), nil
	}
	got := min(n, int(b.tokens))
	b.tokens -= float64(got)
	return got, 0, nil
}
