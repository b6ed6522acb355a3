package delivery

import (
	"net/http"
	"testing"
	"time"
)

func TestAfterFailure(t *testing.T) {
	seed := []time.Duration{0, time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour}
	fixed := func(r float64) RetryPolicy { return RetryPolicy{Schedule: seed, Rand: func() float64 { return r }} }
	tests := []struct {
		name      string
		p         RetryPolicy
		made      int
		ra        time.Duration
		raOK      bool
		wantDelay time.Duration
		wantFinal bool
	}{
		{"after attempt 1, no jitter at midpoint", fixed(0.5), 1, 0, false, time.Minute, false},
		{"jitter low end is -10%", fixed(0), 1, 0, false, 54 * time.Second, false},
		{"jitter high end is +10%", fixed(1), 2, 0, false, 5*time.Minute + 30*time.Second, false},
		{"jitter capped at 30s", fixed(0), 3, 0, false, 30*time.Minute - 30*time.Second, false},
		{"jitter capped at 30s on 2h", fixed(1), 4, 0, false, 2*time.Hour + 30*time.Second, false},
		{"last attempt is final", fixed(0.5), 5, 0, false, 0, true},
		{"past the schedule is final (manual retries)", fixed(0.5), 7, 0, false, 0, true},
		{"Retry-After above the delay is honoured", fixed(0.5), 1, 10 * time.Minute, true, 10 * time.Minute, false},
		{"Retry-After below the delay is not", fixed(0.5), 2, time.Minute, true, 5 * time.Minute, false},
		{"Retry-After of exactly 2h is", fixed(0.5), 1, 2 * time.Hour, true, 2 * time.Hour, false},
		{"short delays have no jitter", RetryPolicy{Schedule: []time.Duration{0, 200 * time.Millisecond}, Rand: func() float64 { return 0 }}, 1, 0, false, 200 * time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, final := tt.p.AfterFailure(tt.made, tt.ra, tt.raOK)
			if d != tt.wantDelay || final != tt.wantFinal {
				t.Fatalf("AfterFailure(%d) = %v, %v; want %v, %v", tt.made, d, final, tt.wantDelay, tt.wantFinal)
			}
		})
	}
}

// TestRetryAfterAboveTheCapWaitsTheCap: a receiver that asks for more than
// MaxRetryAfter is retried after MaxRetryAfter (no jitter), not after the
// schedule's shorter delay; a schedule delay longer than the cap still wins,
// since Retry-After only ever lengthens the wait.
func TestRetryAfterAboveTheCapWaitsTheCap(t *testing.T) {
	seed := RetryPolicy{Schedule: []time.Duration{0, time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour},
		Rand: func() float64 { return 0 }}
	now := time.Date(2026, 11, 26, 19, 43, 16, 0, time.UTC)
	for _, header := range []string{"10800", "9999999", now.Add(3 * time.Hour).Format(http.TimeFormat)} {
		ra, ok := RetryAfter(http.StatusServiceUnavailable, http.Header{"Retry-After": []string{header}}, now)
		for made := 1; made <= 4; made++ {
			if d, final := seed.AfterFailure(made, ra, ok); d != MaxRetryAfter || final {
				t.Errorf("Retry-After %q after attempt %d: wait %v (final %v), want %v", header, made, d, final, MaxRetryAfter)
			}
		}
	}
	long := RetryPolicy{Schedule: []time.Duration{0, 6 * time.Hour}, Rand: func() float64 { return 0.5 }}
	if d, _ := long.AfterFailure(1, 3*time.Hour, true); d != 6*time.Hour {
		t.Errorf("6h schedule delay with Retry-After 3h: wait %v, want 6h", d)
	}
}

func TestJitterStaysInBounds(t *testing.T) {
	p := RetryPolicy{Schedule: []time.Duration{0, time.Minute, 2 * time.Hour}}
	for range 1000 {
		d, _ := p.AfterFailure(1, 0, false)
		if d < 54*time.Second || d > 66*time.Second {
			t.Fatalf("1m delay jittered to %v", d)
		}
		d, _ = p.AfterFailure(2, 0, false)
		if d < 2*time.Hour-30*time.Second || d > 2*time.Hour+30*time.Second {
			t.Fatalf("2h delay jittered to %v", d)
		}
	}
	if got := p.First(); got != 0 {
		t.Fatalf("First() = %v, want 0", got)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 19, 43, 16, 0, time.UTC)
	h := func(v string) http.Header { return http.Header{"Retry-After": []string{v}} }
	tests := []struct {
		name   string
		code   int
		header http.Header
		want   time.Duration
		ok     bool
	}{
		{"seconds on 429", 429, h("120"), 2 * time.Minute, true},
		{"seconds on 503", 503, h(" 5 "), 5 * time.Second, true},
		{"HTTP date", 503, h(now.Add(90 * time.Second).Format(http.TimeFormat)), 90 * time.Second, true},
		{"date in the past is zero", 429, h(now.Add(-time.Hour).Format(http.TimeFormat)), 0, true},
		{"ignored on 500", 500, h("120"), 0, false},
		{"missing", 429, http.Header{}, 0, false},
		{"garbage", 429, h("soon"), 0, false},
		{"negative", 429, h("-3"), 0, false},
		{"a week of seconds", 429, h("604800"), 7 * 24 * time.Hour, true},
		{"more than a week counts as a week", 503, h("9999999"), 7 * 24 * time.Hour, true},
		{"more seconds than int64 holds counts as a week", 503, h("99999999999999999999999"), 7 * 24 * time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := RetryAfter(tt.code, tt.header, now)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("RetryAfter = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
