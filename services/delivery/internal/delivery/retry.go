package delivery

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Retry-After bounds: an answer's Retry-After lengthens the schedule's
// delay, never shortens it, and is capped at MaxRetryAfter: a receiver asking
// for 3 h is retried after 2 h (or the schedule's delay, when longer).
const MaxRetryAfter = 2 * time.Hour

// maxRetryAfterSeconds bounds the delay-seconds RetryAfter parses; larger
// values (up to any number of digits) count as this much, which is far
// above MaxRetryAfter and far from overflowing a time.Duration.
const maxRetryAfterSeconds = int64(7 * 24 * time.Hour / time.Second)

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
	if wait := min(retryAfter, MaxRetryAfter); ok && wait >= base {
		return wait, false
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
// an HTTP date. ok is false for other status codes and unusable values. Very
// large values are usable: AfterFailure caps them at MaxRetryAfter.
func RetryAfter(code int, h http.Header, now time.Time) (time.Duration, bool) {
	if code != http.StatusTooManyRequests && code != http.StatusServiceUnavailable {
		return 0, false
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if strings.Trim(v, "0123456789") == "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs > maxRetryAfterSeconds { // only a range error is possible here
			secs = maxRetryAfterSeconds
		}
		return time.Duration(secs) * time.Second, true
	}
	if _, err := strconv.ParseInt(v, 10, 64); err == nil {
		return 0, false // a negative number of seconds
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
