package servicetest

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/signing"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
	"github.com/voxscriber/webhooks/services/delivery/internal/redisqueue"
)

// slowReceiver answers 200 after delay and records the most requests it
// had in flight at once and when each arrived.
type slowReceiver struct {
	*receiver
	inflight, peak atomic.Int64
	mu             sync.Mutex
	arrivals       []time.Time
}

func newSlowReceiver(t *testing.T, delay time.Duration) *slowReceiver {
	s := &slowReceiver{}
	s.receiver = newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		n := s.inflight.Add(1)
		for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
		}
		s.mu.Lock()
		s.arrivals = append(s.arrivals, time.Now())
		s.mu.Unlock()
		time.Sleep(delay)
		s.inflight.Add(-1)
		w.WriteHeader(http.StatusOK)
	})
	return s
}

// scheduleN publishes n events and schedules each to the endpoint,
// alternating between the processes' Schedule APIs.
func (e *env) scheduleN(t *testing.T, acct, endpoint string, n int, procs ...*proc) {
	t.Helper()
	for i := range n {
		evt, _ := e.publish(acct, completed)
		procs[i%len(procs)].schedule(t, context.Background(), acct, completed, item(evt, endpoint))
	}
}

func TestEndpointConcurrencyHoldsAcrossTwoDeliveryProcesses(t *testing.T) {
	e := newEnv(t)
	a := e.start(procOpts{workers: 16, endpointConcurrency: 4})
	b := e.start(procOpts{workers: 16, endpointConcurrency: 4})
	acct, _ := e.account()
	rc := newSlowReceiver(t, 150*time.Millisecond)
	e.reg.SetEndpoint(acct, "ep_slow", rc.url("/slow"), active(), nil, signing.GenerateSecret())

	const n = 40
	e.scheduleN(t, acct, "ep_slow", n, a, b)
	waitFor(t, 60*time.Second, func() bool { return rc.count() >= n },
		func() string { return fmt.Sprintf("%d of %d delivered", rc.count(), n) })
	if p := rc.peak.Load(); p > 4 {
		t.Errorf("the endpoint had %d requests in flight at once from two processes, limit 4", p)
	} else if p < 4 {
		t.Errorf("the endpoint had at most %d requests in flight, want the limit 4 reached (40 queued)", p)
	}
	t.Logf("process a sent %d, process b sent %d, peak %d", a.sent.Load(), b.sent.Load(), rc.peak.Load())
}

func TestEndpointRateLimitHoldsAcrossTwoDeliveryProcesses(t *testing.T) {
	e := newEnv(t)
	a := e.start(procOpts{workers: 16})
	b := e.start(procOpts{workers: 16})
	acct, _ := e.account()
	rc := newSlowReceiver(t, 0)
	e.reg.SetEndpoint(acct, "ep_rate", rc.url("/rate"), active(), nil, signing.GenerateSecret())
	const rate = 10
	e.reg.SetRateLimit(acct, "ep_rate", rate)

	const n = 40
	e.scheduleN(t, acct, "ep_rate", n, a, b)
	waitFor(t, 60*time.Second, func() bool { return rc.count() >= n },
		func() string { return fmt.Sprintf("%d of %d delivered", rc.count(), n) })
	rc.mu.Lock()
	at := append([]time.Time(nil), rc.arrivals...)
	rc.mu.Unlock()
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	// In any window, at most the burst (one second's worth) plus the rate
	// times the window, plus one for the tokens a process keeps briefly.
	for i := range at {
		for j := i; j < len(at); j++ {
			window := at[j].Sub(at[i])
			allowed := rate + int(float64(rate)*window.Seconds()) + 2
			if got := j - i + 1; got > allowed {
				t.Fatalf("%d requests within %v from two processes; a %d/s limit allows %d", got, window, rate, allowed)
			}
		}
	}
	t.Logf("process a sent %d, process b sent %d, over %v", a.sent.Load(), b.sent.Load(), at[len(at)-1].Sub(at[0]))
}

// A delivery process that crashed holding all of an endpoint's places
// blocks it only until its lease ends; then another process takes them.
func TestCrashedProcessesEndpointPlacesComeBackAfterTheLease(t *testing.T) {
	e := newEnv(t)
	const lease = 1500 * time.Millisecond
	crashed := time.Now()
	got, err := redisqueue.NewLimits(e.rdb).Hold(context.Background(), "crashed-process", lease,
		[]delivery.PlaceWant{{EndpointID: "ep_slow", Want: 4, Limit: 4}})
	if err != nil || got[0] != 4 {
		t.Fatalf("the crashed process holds %v, %v; want 4", got, err)
	}
	p := e.start(procOpts{workers: 16, endpointConcurrency: 4})
	acct, _ := e.account()
	rc := newSlowReceiver(t, 50*time.Millisecond)
	e.reg.SetEndpoint(acct, "ep_slow", rc.url("/slow"), active(), nil, signing.GenerateSecret())

	const n = 8
	e.scheduleN(t, acct, "ep_slow", n, p)
	waitFor(t, 30*time.Second, func() bool { return rc.count() >= n },
		func() string { return fmt.Sprintf("%d of %d delivered", rc.count(), n) })
	first := rc.requests()[0].at
	if first.Sub(crashed) < lease-100*time.Millisecond {
		t.Errorf("first request %v after the crash, while the crashed process's lease of %v held every place", first.Sub(crashed), lease)
	}
	if pk := rc.peak.Load(); pk > 4 {
		t.Errorf("peak %d in flight, limit 4", pk)
	}
}
