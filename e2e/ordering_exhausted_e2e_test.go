package e2e

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
)

// TestOrderedEndpointAnExhaustedEventReleasesTheNext: at an endpoint ordered
// by key, e1 of upl_x fails every attempt and e2 of upl_x waits for it; when
// e1 fails its final attempt e2 goes, and delivery.exhausted about e1
// reaches the account's second endpoint (subscribed to it). Another key's
// event succeeds meanwhile, so the endpoint is not disabled.
func TestOrderedEndpointAnExhaustedEventReleasesTheNext(t *testing.T) {
	s := startSuite(t, SuiteOptions{Env: map[string]string{
		"DELIVERY_RETRY_SCHEDULE": "0s,400ms,400ms",
		"OPERATIONAL_EVENT_DELAY": "200ms",
	}})
	var mu sync.Mutex
	var order []string
	bad := "" // the first event of upl_x to arrive (e1: ordered) fails every attempt
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		evt, up := r.Header.Get("X-Webhook-Id"), uploadOf(r)
		mu.Lock()
		defer mu.Unlock()
		order = append(order, evt)
		if up == "upl_x" && (bad == "" || bad == evt) {
			bad = evt
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer rc.Close()
	watcher := newReceiver()
	defer watcher.Close()
	acct, key := s.NewAccount("acme")
	ep := s.newOrderedEndpoint(key, rc.URL, "transcription.progress")
	s.NewEndpoint(key, watcher.URL, "delivery.exhausted")
	ing, ctx := s.Ingestion()
	pub := func(upload string) string {
		t.Helper()
		st, _ := structpb.NewStruct(map[string]any{"uploadId": upload, "percentage": 50, "estimate": 3})
		resp, err := ing.PublishEvent(ctx, &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.progress", Data: st})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetEvent().GetId()
	}
	e1 := pub("upl_x")
	e2 := pub("upl_x")
	eventually(t, 10*time.Second, "e1's first attempt", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(order, e1)
	})
	other := pub("upl_y") // succeeds while e1 retries: the endpoint stays enabled
	eventually(t, 20*time.Second, "e2 answered after e1's last attempt", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(order, e2)
	})
	mu.Lock()
	i1, i2 := slices.Index(order, e1), slices.Index(order, e2)
	attempts1 := 0
	last1 := -1
	for i, id := range order {
		if id == e1 {
			attempts1++
			last1 = i
		}
	}
	mu.Unlock()
	if attempts1 != 3 || i1 < 0 || last1 > i2 {
		t.Fatalf("requests %v: e1 (%s) tried %d times, its last at %d, e2 (%s) at %d: e2 must follow e1's final attempt", order, e1, attempts1, last1, e2, i2)
	}
	if !slices.Contains(order, other) {
		t.Errorf("upl_y's event was not delivered while upl_x retried")
	}
	eventually(t, 20*time.Second, "delivery.exhausted at the other endpoint", func() bool {
		return len(ofType(operational(t, watcher, ""), "delivery.exhausted")) >= 1
	})
	ex := ofType(operational(t, watcher, ""), "delivery.exhausted")
	if ex[0].Data["endpointId"] != ep.ID {
		t.Errorf("delivery.exhausted = %+v, want one about %s", ex[0], ep.ID)
	}
	if got := s.endpoint(key, ep.ID); got.Status != "ENDPOINT_STATUS_ACTIVE" {
		t.Errorf("the ordered endpoint is %s", got.Status)
	}
}
