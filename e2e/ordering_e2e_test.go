package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
)

// orderedReceiver answers an ordered endpoint's requests: it fails the
// first attempt of a random fifth of the events, records the events of
// each upload answered 2xx in the order they were answered, and every time
// two requests of one upload were in flight at once.
type orderedReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	rnd      *rand.Rand
	tried    map[string]bool
	inflight map[string]int
	overlaps []string
	ok       map[string][]string // upload → event ids answered 2xx
	n        int
}

// newOrderedEndpoint creates, over REST, an endpoint ordered by key.
func (s *Suite) newOrderedEndpoint(key, url string, types ...string) Endpoint {
	s.t.Helper()
	var out struct {
		Endpoint Endpoint `json:"endpoint"`
	}
	s.MustDo(200, "POST", "/v1/endpoints", key, map[string]any{
		"url": url, "eventTypes": types, "ordering": "ENDPOINT_ORDERING_ORDERED_BY_KEY",
	}, &out)
	return out.Endpoint
}

// progressData is the data of a transcription.progress webhook, as far as
// the tests read it.
type progressData struct {
	UploadID string  `json:"uploadId"`
	Estimate float64 `json:"estimate"`
}

// dataOf decodes the data of a webhook request's body.
func dataOf(r *http.Request) progressData {
	var env struct {
		Data progressData `json:"data"`
	}
	_ = json.NewDecoder(r.Body).Decode(&env)
	return env.Data
}

// uploadOf is the data.uploadId of a webhook request's body.
func uploadOf(r *http.Request) string { return dataOf(r).UploadID }

func newOrderedReceiver() *orderedReceiver {
	rc := &orderedReceiver{rnd: rand.New(rand.NewPCG(7, 9)), tried: map[string]bool{}, inflight: map[string]int{}, ok: map[string][]string{}}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		evt, up := r.Header.Get("X-Webhook-Id"), uploadOf(r)
		rc.mu.Lock()
		rc.inflight[up]++
		if rc.inflight[up] > 1 {
			rc.overlaps = append(rc.overlaps, fmt.Sprintf("%s: %d in flight (one %s)", up, rc.inflight[up], evt))
		}
		first := !rc.tried[evt]
		rc.tried[evt] = true
		fail := first && rc.rnd.IntN(5) == 0
		rc.mu.Unlock()
		time.Sleep(time.Millisecond)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.inflight[up]--
		if fail {
			http.Error(w, "first attempt fails", http.StatusServiceUnavailable)
			return
		}
		rc.ok[up] = append(rc.ok[up], evt)
		rc.n++
		w.WriteHeader(http.StatusOK)
	}))
	return rc
}

func (rc *orderedReceiver) answered() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.n
}

// TestOrderedEndpointKeepsEachUploadInOrderThroughAKilledDeliveryProcess:
// issue #15's load through the real processes: an endpoint created over
// REST with ordering ORDERED_BY_KEY, two delivery processes, 100 uploads ×
// 5 events published by 10 concurrent producers (each upload's events one
// after another, the uploads interleaved), a fifth of first attempts
// failing, and one delivery process SIGKILLed mid-run (and started again;
// producers retry what was not acknowledged meanwhile). Every upload's
// events are answered 2xx in publish order (a repeat of the same event,
// at-least-once after the kill, is allowed), never two of one upload at
// once.
func TestOrderedEndpointKeepsEachUploadInOrderThroughAKilledDeliveryProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("short: 500 events, a SIGKILL")
	}
	s := startSuite(t, SuiteOptions{Env: map[string]string{
		"DELIVERY_RETRY_SCHEDULE": "0s,500ms,1s,2s,5s",
		"DELIVERY_TIMEOUT":        "1s",
	}})
	s.startSecond("delivery")
	rc := newOrderedReceiver()
	defer rc.Close()
	acct, key := s.NewAccount("acme")
	s.newOrderedEndpoint(key, rc.URL, "transcription.progress")
	ing, ctx := s.Ingestion()

	const uploads, perUpload, producers = 100, 5, 10
	published := make([][]string, uploads)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range perUpload {
				for u := p; u < uploads; u += producers {
					st, _ := structpb.NewStruct(map[string]any{"uploadId": fmt.Sprintf("upl_%03d", u), "percentage": float64(20 * (r + 1)), "estimate": 3})
					// As a producer does: retried with its idempotency key
					// while delivery restarts (Unavailable, not acknowledged).
					req := &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.progress", Data: st,
						IdempotencyKey: fmt.Sprintf("upl_%03d/%d", u, r)}
					var resp *ingestionv1.PublishEventResponse
					var err error
					for try := 0; try < 100; try++ {
						if resp, err = ing.PublishEvent(ctx, req); status.Code(err) != codes.Unavailable {
							break
						}
						time.Sleep(200 * time.Millisecond)
					}
					if err != nil {
						t.Errorf("publish: %v", err)
						return
					}
					published[u] = append(published[u], resp.GetEvent().GetId())
				}
			}
		}()
	}
	eventually(t, 30*time.Second, "a third answered", func() bool { return rc.answered() >= uploads*perUpload/3 })
	s.mu.Lock()
	victim := s.procs["delivery"][0]
	s.mu.Unlock()
	s.Kill(victim)
	t.Logf("SIGKILLed a delivery process after %d answers", rc.answered())
	s.Start("delivery", nil)
	wg.Wait()
	eventually(t, 90*time.Second, "every event answered 2xx", func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		done := 0
		for u := range uploads {
			done += len(slices.Compact(slices.Clone(rc.ok[fmt.Sprintf("upl_%03d", u)])))
		}
		return done >= uploads*perUpload
	})
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.overlaps) > 0 {
		t.Errorf("%d times two events of one upload were in flight at once, e.g. %s", len(rc.overlaps), rc.overlaps[0])
	}
	repeats := 0
	for u := range uploads {
		up := fmt.Sprintf("upl_%03d", u)
		got := slices.Compact(slices.Clone(rc.ok[up]))
		repeats += len(rc.ok[up]) - len(got)
		if !slices.Equal(got, published[u]) {
			t.Errorf("%s answered 2xx in the order %v, published %v", up, got, published[u])
		}
	}
	t.Logf("%d uploads × %d in order through a SIGKILL; %d repeated 2xx (at-least-once)", uploads, perUpload, repeats)
}
