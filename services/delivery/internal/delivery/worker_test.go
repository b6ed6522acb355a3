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
			w.latency["ep"] = endpointLatency{avg: tc.latency, seen: time.Now()}
		}
		if got := w.lineLimit("ep"); got != tc.want {
			t.Errorf("latency %v: line %d, want %d", tc.latency, got, tc.want)
		}
	}
	// The admission follows: with 32 running and a 1 ms average, 256 wait
	// and the next is refused (handed back).
	w.latency["ep"] = endpointLatency{avg: time.Millisecond, seen: time.Now()}
	jobs := make([]Job, 32+256+1)
	for i := range jobs {
		jobs[i] = Job{Delivery: Delivery{EndpointID: "ep"}}
	}
	refused := w.admit(jobs)
	if len(w.jobs) != 32 || len(w.waiting["ep"]) != 256 || len(refused) != 1 {
		t.Errorf("admissions: %d entered, %d queued, %d refused; want 32, 256, 1", len(w.jobs), len(w.waiting["ep"]), len(refused))
	}
}

// TestLineRemembersEndpointSpeedAcrossIdleGaps: a fast endpoint that went
// idle keeps its average, so its next burst (a batch fanned out to it)
// waits in its line instead of being handed back as if its speed were
// unknown; the average is forgotten latencyMemory after its last attempt.
func TestLineRemembersEndpointSpeedAcrossIdleGaps(t *testing.T) {
	w := NewWorker(NewDispatcher(Config{}, Deps{}), WorkerConfig{Slots: 512, EndpointConcurrency: 32})
	w.busy["ep"] = 1
	if _, ok, _ := w.leave("ep", time.Millisecond); ok || w.busy["ep"] != 0 {
		t.Fatalf("the endpoint's only attempt ended: busy %d", w.busy["ep"])
	}
	jobs := make([]Job, 32+100)
	for i := range jobs {
		jobs[i] = Job{Delivery: Delivery{EndpointID: "ep"}}
	}
	if refused := w.admit(jobs); len(refused) != 0 || len(w.waiting["ep"]) != 100 {
		t.Errorf("a burst after an idle gap: %d queued, %d refused; want 100, 0", len(w.waiting["ep"]), len(refused))
	}
	w.busy["ep"], w.waiting["ep"] = 0, nil
	w.forgetLatencies(time.Now().Add(latencyMemory / 2))
	if _, ok := w.latency["ep"]; !ok {
		t.Error("the average was forgotten before latencyMemory")
	}
	w.forgetLatencies(time.Now().Add(latencyMemory + time.Second))
	if _, ok := w.latency["ep"]; ok {
		t.Error("the average outlived latencyMemory")
	}
}
