package delivery

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Retry-After bounds: an answer's Retry-After replaces the schedule's delay
// only when it asks for at least that delay and at most MaxRetryAfter.
const MaxRetryAfter = 2 * time.Hour

// Jitter: delays of at least JitterFrom move by up to ±10%, never more than
// MaxJitter.
const (
	JitterFrom = time.Minute
	MaxJitter  = 30 * time.Second
)

// RetryPolicy is the retry schedule: Schedule[n] is the delay before
// attempt n+1, counted from the previous attempt (Schedule[0], normally 0,
// from scheduling).
type RetryPolicy struct {
	Schedule []time.Duration
	// Rand returns a number in [0,1); math/rand/v2 when nil.
	Rand func() float64
}

// MaxAttempts is the number of scheduled attempts.
func (p RetryPolicy) MaxAttempts() int { return max(len(p.Schedule), 1) }

// First is the delay before attempt 1.
func (p RetryPolicy) First() time.Duration {
	if len(p.Schedule) == 0 {
		return 0
	}
	return p.jitter(p.Schedule[0])
}

// AfterFailure returns the delay before the next attempt once `made`
// attempts have been made and the last one failed, or final=true when that
// was the last scheduled attempt. retryAfter is the answer's Retry-After
// (ok=false when it had none usable).
func (p RetryPolicy) AfterFailure(made int, retryAfter time.Duration, ok bool) (delay time.Duration, final bool) {
	if made >= p.MaxAttempts() || made >= len(p.Schedule) {
		return 0, true
	}
	base := p.Schedule[made]
	if ok && retryAfter >= base && retryAfter <= MaxRetryAfter {
		return retryAfter, false
	}
	return p.jitter(base), false
}

func (p RetryPolicy) jitter(d time.Duration) time.Duration {
	if d < JitterFrom {
		return d
	}
	span := min(d/10, MaxJitter)
	r := rand.Float64
	if p.Rand != nil {
		r = p.Rand
	}
	return d - span + time.Duration(r()*float64(2*span))
}

// RetryAfter reads a 429/503 answer's Retry-After header: delay-seconds or
// an HTTP date. ok is false for other status codes and unusable values.
func RetryAfter(code int, h http.Header, now time.Time) (time.Duration, bool) {
	if code != http.StatusTooManyRequests && code != http.StatusServiceUnavailable {
		return 0, false
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 || secs > int64(7*24*time.Hour/time.Second) {
			return 0, false
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
