package delivery

import (
	"math/rand/v2"
	"sync"
	"time"
)

// rateLimits enforces each endpoint's optional requests-per-second limit in
// this process with a token bucket (burst: one second's worth). A delivery
// over the limit is put back, due when a token is free, without an attempt:
// it holds its worker slot only for the lookup.
type rateLimits struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
	rate   int
}

// maxBuckets bounds the map; idle buckets are full and can be dropped.
const maxBuckets = 100_000

// check takes a token for t, or returns the deferral outcome.
func (r *rateLimits) check(t *Target, now time.Time) *Outcome {
	if t == nil || t.RateLimit <= 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buckets == nil || len(r.buckets) > maxBuckets {
		r.buckets = map[string]*bucket{}
	}
	b := r.buckets[t.EndpointID]
	if b == nil || b.rate != t.RateLimit {
		b = &bucket{tokens: float64(t.RateLimit), last: now, rate: t.RateLimit}
		r.buckets[t.EndpointID] = b
	}
	b.tokens = min(float64(b.rate), b.tokens+now.Sub(b.last).Seconds()*float64(b.rate))
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return nil
	}
	// Due when the next token is free, spread over up to a second so the
	// waiting deliveries do not all come back at once.
	wait := time.Duration((1-b.tokens)/float64(b.rate)*float64(time.Second)) + time.Duration(rand.Int64N(int64(time.Second)))
	return &Outcome{Status: StatusPending, Next: now.Add(max(wait, time.Millisecond)), Now: now}
}
