package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
)

// TestKilledIngestionMidGroupLosesNoAcknowledgedEvent: 64 producers publish
// single events as fast as they can, so ingestion commits them in groups,
// while the ingestion process is SIGKILLed three times at random moments
// (groups on the wire) and restarted. Every event acknowledged to its
// producer reaches the receiver.
func TestKilledIngestionMidGroupLosesNoAcknowledgedEvent(t *testing.T) {
	s := startSuite(t, SuiteOptions{Env: map[string]string{"LOG_LEVEL": "error"}})
	rc := newReceiver()
	defer rc.Close()
	acct, key := s.NewAccount("group-kill")
	s.NewEndpoint(key, rc.URL, "transcription.progress")
	ing, ctx := s.Ingestion()

	var mu sync.Mutex
	acked := map[string]bool{}
	var published, refused atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				resp, err := ing.PublishEvent(pctx, &ingestionv1.PublishEventRequest{
					AccountId: acct, Type: "transcription.progress", Data: progressReq(acct, i).Data,
					IdempotencyKey: fmt.Sprintf("g-%d-%d", w, i),
				})
				cancel()
				published.Add(1)
				if err != nil {
					refused.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				mu.Lock()
				acked[resp.GetEvent().GetId()] = true
				mu.Unlock()
			}
		}()
	}
	for k := range 3 {
		time.Sleep(time.Duration(700+k*130) * time.Millisecond)
		s.Kill(s.current("ingestion"))
		time.Sleep(100 * time.Millisecond)
		s.Start("ingestion", nil)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	mu.Lock()
	want := len(acked)
	mu.Unlock()
	if want < 100 { // a generous bound: under -race on 2 cores a few hundred get through
		t.Fatalf("only %d events acknowledged", want)
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
	deadline := time.Now().Add(time.Minute)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if m := missing(); len(m) > 0 {
		t.Fatalf("LOST %d of %d acknowledged events, e.g. %v", len(m), want, m[:min(5, len(m))])
	}
	t.Logf("%d publishes, %d refused around the kills, %d acknowledged, 0 lost", published.Load(), refused.Load(), want)
}
