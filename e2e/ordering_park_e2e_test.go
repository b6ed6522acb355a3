package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOrderedEndpointKeepsEachUploadInOrderThroughDisableParkAndResume:
// an ordered endpoint disabled by five failures; 10 uploads × 4 events
// published while it is DISABLED (interleaved) are parked or wait behind
// their parked head, none is sent, and past PARKED_MOVE_AFTER all of it
// moves to PostgreSQL (none of their records is left in Redis); once the
// customer enables it, every upload's events arrive in publish order,
// never two of one upload at once.
func TestOrderedEndpointKeepsEachUploadInOrderThroughDisableParkAndResume(t *testing.T) {
	s := startSuite(t, SuiteOptions{Env: map[string]string{
		"DELIVERY_RETRY_SCHEDULE": "0s,100ms,100ms,100ms,100ms",
		"PARKED_MOVE_AFTER":       "1s",
	}})
	var healthy atomic.Bool
	var mu sync.Mutex
	upload := map[string]string{} // event id → upload, for the events published while disabled
	ok := map[string][]string{}   // upload → event ids answered 2xx, in order
	inflight := map[string]int{}  // upload → requests in flight
	var overlaps, sentWhileDown int
	rc := newReceiver()
	defer rc.Close()
	rc.Respond = func(_ int, r *http.Request) int {
		id := r.Header.Get("X-Webhook-Id")
		mu.Lock()
		up, ours := upload[id]
		if ours {
			if !healthy.Load() {
				sentWhileDown++
			}
			if inflight[up]++; inflight[up] > 1 {
				overlaps++
			}
		}
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		if ours {
			inflight[up]--
		}
		if !healthy.Load() {
			return 500
		}
		if ours {
			ok[up] = append(ok[up], id)
		}
		return 200
	}
	acct, key := s.NewAccount("acme")
	ep := s.newOrderedEndpoint(key, rc.URL, "transcription.completed")
	ing, ctx := s.Ingestion()

	publish(t, ing, ctx, acct, "transcription.completed", completed("upl_first"), "")
	eventually(t, 15*time.Second, "endpoint disabled", func() bool {
		return s.endpoint(key, ep.ID).Status == "ENDPOINT_STATUS_DISABLED"
	})

	const uploads, perUpload = 10, 4
	published := map[string][]string{}
	for range perUpload {
		for u := range uploads {
			up := fmt.Sprintf("upl_%02d", u)
			id := publish(t, ing, ctx, acct, "transcription.completed", completed(up), "").GetEvent().GetId()
			mu.Lock()
			upload[id] = up
			mu.Unlock()
			published[up] = append(published[up], id)
		}
	}
	head := DeliveryOf(t, s, key, ep.ID, published["upl_00"][0])
	eventually(t, 10*time.Second, "the head of upl_00 parked", func() bool {
		return s.delivery(key, head.ID).Status == "DELIVERY_STATUS_PARKED"
	})
	second := s.delivery(key, DeliveryOf(t, s, key, ep.ID, published["upl_00"][1]).ID)
	if second.Status != "DELIVERY_STATUS_PENDING" || second.WaitingFor != published["upl_00"][0] {
		t.Errorf("the second of upl_00 is %s waiting for %q; want pending behind %s", second.Status, second.WaitingFor, published["upl_00"][0])
	}
	time.Sleep(2500 * time.Millisecond) // past PARKED_MOVE_AFTER and a few archiver passes
	var dlvIDs []string
	for _, evs := range published {
		for _, ev := range evs {
			dlvIDs = append(dlvIDs, DeliveryOf(t, s, key, ep.ID, ev).ID)
		}
	}
	eventually(t, 20*time.Second, "the parked work moved to PostgreSQL", func() bool {
		keys, err := s.Redis.Client.Keys(context.Background(), "wh:dlv:*").Result()
		if err != nil {
			return false
		}
		live := strings.Join(keys, " ")
		for _, id := range dlvIDs {
			if strings.Contains(live, id) {
				return false
			}
		}
		return true
	})
	for _, id := range dlvIDs {
		if d := s.delivery(key, id); d.Status != "DELIVERY_STATUS_PARKED" {
			t.Errorf("%s reads %s from history, want parked (a parked head or one waiting behind it)", id, d.Status)
		}
	}
	mu.Lock()
	down := sentWhileDown
	mu.Unlock()
	if down != 0 {
		t.Errorf("%d requests of the parked work went out while the endpoint was disabled", down)
	}

	healthy.Store(true)
	s.MustDo(200, "POST", "/v1/endpoints/"+ep.ID+":enable", key, map[string]any{}, nil)
	eventually(t, 30*time.Second, "every parked event answered 2xx", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, ids := range ok {
			n += len(slices.Compact(slices.Clone(ids)))
		}
		return n >= uploads*perUpload
	})
	mu.Lock()
	defer mu.Unlock()
	if overlaps > 0 {
		t.Errorf("%d times two events of one upload were in flight at once", overlaps)
	}
	for up, want := range published {
		if got := slices.Compact(slices.Clone(ok[up])); !slices.Equal(got, want) {
			t.Errorf("%s answered 2xx in the order %v, published %v", up, got, want)
		}
	}
}
