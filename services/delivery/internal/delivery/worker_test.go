package delivery

import (
	"testing"
	"time"
)

// TestLineLimitFollowsEndpointSpeed: a fast endpoint's claimed backlog may
// wait in memory (up to half the slots); a slow or unknown one's line stays
// at its concurrency limit, so it never holds more than twice its limit.
func TestLineLimitFollowsEndpointSpeed(t *testing.T) {
	w := NewWorker(NewDispatcher(Config{}, Deps{}), WorkerConfig{Slots: 512, EndpointConcurrency: 32})
	for _, tc := range []struct {
		latency time.Duration // 0: no attempt ended yet
		want    int
	}{
		{0, 32},
		{10 * time.Second, 32},
		{time.Second, 32},
		{500 * time.Millisecond, 64},
		{100 * time.Millisecond, 256},
		{time.Millisecond, 256},
	} {
		if tc.latency > 0 {
			w.latency["ep"] = tc.latency
		}
		if got := w.lineLimit("ep"); got != tc.want {
			t.Errorf("latency %v: line %d, want %d", tc.latency, got, tc.want)
		}
	}
	// The admission follows: with 32 running and a 1 ms average, 256 wait
	// and the next is refused (handed back).
	w.latency["ep"] = time.Millisecond
	jobs := make([]Job, 32+256+1)
	for i := range jobs {
		jobs[i] = Job{Delivery: Delivery{EndpointID: "ep"}}
	}
	refused := w.admit(jobs)
	if len(w.jobs) != 32 || len(w.waiting["ep"]) != 256 || len(refused) != 1 {
		t.Errorf("admissions: %d entered, %d queued, %d refused; want 32, 256, 1", len(w.jobs), len(w.waiting["ep"]), len(refused))
	}
}
