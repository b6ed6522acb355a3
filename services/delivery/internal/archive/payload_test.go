package archive

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/ssrf"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
	"github.com/voxscriber/webhooks/services/delivery/internal/sender"
)

// oneTarget is the registry's answer for the fixture's endpoint.
type oneTarget struct{ url string }

func (o oneTarget) Target(_ context.Context, accountID, endpointID string) (*delivery.Target, error) {
	return &delivery.Target{AccountID: accountID, EndpointID: endpointID, URL: o.url,
		Status: delivery.EndpointActive, Secrets: []string{"whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0"}}, nil
}

// receiver records the bodies it is sent.
type receiver struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.bodies = append(r.bodies, b)
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// dispatcher sends the fixture's deliveries to rcv through the real
// sender; archived says whether prepare may read history's payloads.
func (f *fixture) dispatcher(rcv http.Handler, archived bool) *delivery.Dispatcher {
	srv := httptest.NewServer(rcv)
	f.t.Cleanup(srv.Close)
	cidrs, err := ssrf.ParseCIDRs("127.0.0.0/8")
	if err != nil {
		f.t.Fatal(err)
	}
	snd := sender.New(sender.Config{Timeout: 3 * time.Second, Policy: ssrf.Policy{AllowHTTP: true, AllowedCIDRs: cidrs}})
	f.t.Cleanup(snd.Close)
	tr := f.tiers()
	deps := delivery.Deps{Queue: f.q, History: tr, Targets: oneTarget{srv.URL}, Events: f.events,
		EventAccounts: f.events, Sender: snd, Logger: quiet}
	if archived {
		deps.Archived = tr
	}
	return delivery.NewDispatcher(delivery.Config{Retry: delivery.RetryPolicy{Schedule: []time.Duration{0, time.Second}}, Timeout: 3 * time.Second}, deps)
}

// dispatchDue claims what is due and dispatches it; it returns the outcomes.
func (f *fixture) dispatchDue(d *delivery.Dispatcher) []*delivery.Outcome {
	ctx := context.Background()
	now := time.Now()
	jobs, _, err := f.q.Claim(ctx, now, d.LeaseUntil(now), 100)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*delivery.Outcome
	for _, j := range jobs {
		jctx, cancel := context.WithDeadline(ctx, j.LeaseUntil)
		o, err := d.Dispatch(jctx, j)
		cancel()
		if err != nil {
			f.t.Fatal(err)
		}
		out = append(out, o)
	}
	return out
}

// restoreBare brings an archived delivery back to Redis as a revival does
// when it still found the event in Redis: without a copy of the payload.
func (f *fixture) restoreBare(id string) {
	ctx := context.Background()
	h, hatts, err := f.store.GetDelivery(ctx, f.acct, id)
	if err != nil {
		f.t.Fatal(err)
	}
	d := FromHistory(h)
	d.Body = nil
	d.Base, d.FirstAttempt = d.Attempts, time.Time{}
	if ok, err := f.q.Restore(ctx, []delivery.Delivery{d}, [][]delivery.Attempt{FromHistoryAttempts(hatts)}, time.Now()); err != nil || !ok[0] {
		f.t.Fatalf("Restore = %v, %v", ok, err)
	}
}

// archivedEvent publishes one event whose payload has bytes a JSON
// re-encoding would change, fails its delivery, and archives both: Redis
// no longer holds the event.
func (f *fixture) archivedEvent() (dlvID string, payload []byte) {
	ctx := context.Background()
	now := time.Now()
	evID := ids.New(ids.Event, now)
	payload = []byte("{ \"id\" : \"" + evID + "\",\n  \"text\": \"caf\\u00e9 — ünïcode\", \"n\": 1.50 }")
	if err := f.events.Put(ctx, &eventstore.Event{ID: evID, AccountID: f.acct, Type: "upload.completed",
		Payload: payload, CreateTime: now, UploadID: "up_1"}); err != nil {
		f.t.Fatal(err)
	}
	if err := f.events.MarkFannedOut(ctx, evID, 1); err != nil {
		f.t.Fatal(err)
	}
	dlvID = delivery.DeliveryID(evID, f.ep)
	if _, err := f.q.Schedule(ctx, []delivery.Delivery{{ID: dlvID, EventID: evID, EndpointID: f.ep, AccountID: f.acct,
		EventType: "upload.completed", Status: delivery.StatusPending, CreateTime: now, UpdateTime: now, NextTime: now}}); err != nil {
		f.t.Fatal(err)
	}
	f.finish(delivery.StatusFailed)
	f.drain()
	if n, _ := f.rdb.Exists(ctx, eventstore.Key(evID)).Result(); n != 0 {
		f.t.Fatal("the archiver left the event in Redis")
	}
	return dlvID, payload
}

// TestARevivedDeliveryWhoseEventMovedIsSentHistorysPayload: a delivery
// revived while the archiver deleted its done event (restored without a
// carried body, its event hash gone) is delivered with history's copy of
// the payload, byte for byte, instead of being canceled.
func TestARevivedDeliveryWhoseEventMovedIsSentHistorysPayload(t *testing.T) {
	f := newFixture(t)
	id, payload := f.archivedEvent()
	f.restoreBare(id)

	rcv := &receiver{}
	outs := f.dispatchDue(f.dispatcher(rcv, true))
	if len(outs) != 1 || outs[0].Status != delivery.StatusSucceeded {
		t.Fatalf("outcomes %+v, want one succeeded", outs)
	}
	if len(rcv.bodies) != 1 || !bytes.Equal(rcv.bodies[0], payload) {
		t.Fatalf("the endpoint got %q, want the archived payload %q byte for byte", rcv.bodies, payload)
	}
	d, _, err := f.q.Get(context.Background(), id)
	if err != nil || d.Status != delivery.StatusSucceeded {
		t.Fatalf("delivery after the attempt: %+v, %v", d, err)
	}
}

// TestWithoutHistoryAMissingEventStillCancels: with no history reader a
// delivery whose event is gone ends canceled, naming the event, as before.
func TestWithoutHistoryAMissingEventStillCancels(t *testing.T) {
	f := newFixture(t)
	id, _ := f.archivedEvent()
	f.restoreBare(id)
	rcv := &receiver{}
	outs := f.dispatchDue(f.dispatcher(rcv, false))
	if len(outs) != 1 || outs[0].Status != delivery.StatusCanceled || !strings.Contains(outs[0].LastError, "is no longer stored") {
		t.Fatalf("outcomes %+v, want one canceled: event no longer stored", outs)
	}
	if len(rcv.bodies) != 0 {
		t.Fatalf("sent %d requests", len(rcv.bodies))
	}
}
