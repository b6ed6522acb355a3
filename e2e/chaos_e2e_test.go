package e2e

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
)

var chaosDuration = flag.Duration("chaos-duration", 12*time.Second, "how long TestChaos injects faults (make chaos: 90s)")

// current returns the newest process of a service.
func (s *Suite) current(name string) *exec.Cmd {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.procs[name]
	return ps[len(ps)-1]
}

// TestChaos: under steady load, every service is SIGKILLed at random
// moments and restarted, Redis (AOF, appendfsync always) is killed and
// restarted, and the receiver flaps between 200, 500 and hanging. Then
// every event acknowledged to the producer must reach the receiver at least
// once: 0 lost. Duplicates are counted and reported.
func TestChaos(t *testing.T) {
	s := startSuite(t, SuiteOptions{Env: map[string]string{
		"DELIVERY_TIMEOUT": "1s",
		// Long enough that every event still has attempts after the faults end.
		"DELIVERY_RETRY_SCHEDULE": "0s,200ms,500ms,1s,2s,3s,5s,10s,20s,30s,60s,60s",
		"LOG_LEVEL":               "error",
	}})
	rc := newReceiver()
	defer rc.Close()
	var mode atomic.Int32 // 0 ok, 1 fail, 2 hang
	var chaosOn atomic.Bool
	chaosOn.Store(true)
	var okMu sync.Mutex
	okCount := map[string]int{} // 2xx answers per event id
	respond := func(r *http.Request) int {
		if !chaosOn.Load() {
			return 200
		}
		switch mode.Load() {
		case 1:
			return 500
		case 2:
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
				return 499 // the sender gave up (timeout): not a success
			}
		}
		return 200
	}
	rc.Respond = func(n int, r *http.Request) int {
		code := respond(r)
		if code == 200 {
			okMu.Lock()
			okCount[r.Header.Get("X-Webhook-Id")]++
			okMu.Unlock()
		}
		return code
	}
	acct, key := s.NewAccount("chaos")
	s.NewEndpoint(key, rc.URL, "transcription.progress")
	ing, ctx := s.Ingestion()

	// Steady load: ~100 events/s; an event counts once acknowledged.
	var mu sync.Mutex
	acked := map[string]bool{}
	var published, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(40 * time.Millisecond):
				}
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				resp, err := ing.PublishEvent(pctx, &ingestionv1.PublishEventRequest{
					AccountId: acct, Type: "transcription.progress", Data: progressReq(acct, i).Data,
					IdempotencyKey: fmt.Sprintf("chaos-%d-%d", w, i),
				})
				cancel()
				published.Add(1)
				if err != nil {
					failed.Add(1)
					continue
				}
				mu.Lock()
				acked[resp.GetEvent().GetId()] = true
				mu.Unlock()
			}
		}(w)
	}

	// Faults.
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	kills := map[string]int{}
	deadline := time.Now().Add(*chaosDuration)
	redisAt := time.Now().Add(*chaosDuration / 2) // at least one Redis restart
	for time.Now().Before(deadline) {
		if !redisAt.IsZero() && time.Now().After(redisAt) {
			s.Redis.Restart()
			kills["redis"]++
			redisAt = time.Time{}
		}
		time.Sleep(time.Duration(500+rng.IntN(1000)) * time.Millisecond)
		mode.Store(int32([]int{0, 0, 0, 0, 0, 1, 1, 1, 2, 2}[rng.IntN(10)])) // 50% ok, 30% 500, 20% hang
		switch victim := []string{"registry", "ingestion", "delivery", "delivery", "gateway", "redis"}[rng.IntN(6)]; victim {
		case "redis":
			s.Redis.Restart()
			kills["redis"]++
		default:
			s.Kill(s.current(victim))
			kills[victim]++
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			s.Start(victim, nil)
		}
	}
	close(stop)
	wg.Wait()
	chaosOn.Store(false)
	s.WaitHealthy(30 * time.Second)

	mu.Lock()
	want := len(acked)
	mu.Unlock()
	if want == 0 {
		t.Fatal("no event was acknowledged under chaos")
	}
	missing := func() []string {
		got := map[string]bool{}
		for _, r := range rc.Requests() {
			got[r.Header.Get("X-Webhook-Id")] = true
		}
		var out []string
		mu.Lock()
		defer mu.Unlock()
		for id := range acked {
			if !got[id] {
				out = append(out, id)
			}
		}
		return out
	}
	// A delivery held by a killed worker returns after its lease
	// (DELIVERY_TIMEOUT + 10 s); retries follow the schedule above.
	deadlineAll := time.Now().Add(2 * time.Minute)
	for len(missing()) > 0 && time.Now().Before(deadlineAll) {
		time.Sleep(250 * time.Millisecond)
	}
	if m := missing(); len(m) > 0 {
		t.Fatalf("LOST %d of %d acknowledged events, e.g. %v", len(m), want, m[:min(5, len(m))])
	}
	// Duplicates: successful answers beyond one per event. A worker killed
	// after the receiver answered but before it recorded the outcome leaves
	// the attempt to be sent again after its lease: that is the only cause.
	okMu.Lock()
	extra := 0
	for _, n := range okCount {
		extra += n - 1
	}
	okMu.Unlock()
	t.Logf("chaos %v: kills %v; %d publishes, %d refused during faults, %d acknowledged, 0 lost; %d requests in all, %d duplicate successes (attempts in flight when a delivery process was killed)",
		*chaosDuration, kills, published.Load(), failed.Load(), want, len(rc.Requests()), extra)
}
