package grpcapi_test

import (
	"testing"
	"time"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/services/ingestion/internal/index"
)

// TestIdempotencyKeyHoldsForTheWindowOnly (IDEMPOTENCY_WINDOW, here 3 s):
// within the window a repeat of an idempotency key returns the original
// event, from Redis and, once it moved, from history, and schedules
// nothing; after the window the key makes a new event. A producer-chosen
// event id stays one event past the window (history still holds it).
func TestIdempotencyKeyHoldsForTheWindowOnly(t *testing.T) {
	const window = 3 * time.Second
	e, store := withHistoryOptions(t, options{idemWindow: window})
	acct, _ := e.customer(t)
	e.reg.Subscribe(acct, "transcription.completed", "ep_1")
	data := sample(t, "transcription.completed", "uploadId", "upl_1")
	changed := sample(t, "transcription.completed", "uploadId", "upl_1", "text", "something else")
	start := time.Now()
	first := e.publish(t, &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: data, IdempotencyKey: "job-1"})
	chosen := ids.New(ids.Event, time.Now())
	byID := e.publish(t, &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: data, Id: chosen})
	scheduled := len(e.dlv.calls())

	repeat := func(what string, req *ingestionv1.PublishEventRequest, want *ingestionv1.Event) {
		t.Helper()
		resp := e.publish(t, req)
		if !resp.GetDuplicate() || resp.GetEvent().GetId() != want.GetId() || resp.GetEvent().GetPayload() != want.GetPayload() {
			t.Errorf("%s: duplicate %t, %s; want the original %s", what, resp.GetDuplicate(), resp.GetEvent().GetId(), want.GetId())
		}
	}
	byKey := &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: changed, IdempotencyKey: "job-1"}
	sameID := &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: changed, Id: chosen}
	repeat("key, live", byKey, first.GetEvent())
	e.archive(t, store, false, first.GetEvent().GetId(), chosen)
	repeat("key, archived", byKey, first.GetEvent())
	repeat("id, archived", sameID, byID.GetEvent())
	if time.Since(start) >= window {
		t.Fatalf("the repeats took %v, longer than the window", time.Since(start))
	}
	if n := len(e.dlv.calls()); n != scheduled {
		t.Errorf("repeats within the window scheduled %d more calls", n-scheduled)
	}

	time.Sleep(window - time.Since(start) + 50*time.Millisecond)
	again := e.publish(t, byKey)
	if again.GetDuplicate() || again.GetEvent().GetId() == first.GetEvent().GetId() {
		t.Fatalf("key after the window: duplicate %t, %s; want a new event", again.GetDuplicate(), again.GetEvent().GetId())
	}
	if n := len(e.dlv.calls()); n != scheduled+1 {
		t.Errorf("the new event scheduled %d calls, want 1", n-scheduled)
	}
	repeat("key, the new event's repeat", byKey, again.GetEvent())
	repeat("id after the window", sameID, byID.GetEvent())
}

// TestOldLayoutMarkerIsHonouredAfterUpgrade: an event published by the
// previous build (its idempotency marker one string per key, expiring with
// DELIVERY_RETENTION) is still the answer to its key after the upgrade,
// from Redis or from history, even past IDEMPOTENCY_WINDOW, until the old
// marker expires: an upgrade duplicates no event.
func TestOldLayoutMarkerIsHonouredAfterUpgrade(t *testing.T) {
	e, store := withHistoryOptions(t, options{idemWindow: time.Second})
	acct, _ := e.customer(t)
	e.reg.Subscribe(acct, "transcription.started", "ep_1")
	// What the previous build left: two events with their markers, fanned out.
	old := func(key string, age time.Duration) *eventstore.Event {
		at := time.Now().Add(-age).Truncate(time.Millisecond)
		ev := &eventstore.Event{
			ID: ids.New(ids.Event, at), AccountID: acct, Type: "transcription.started", CreateTime: at, IdempotencyKey: key,
		}
		ev.Payload = []byte(`{"id":"` + ev.ID + `","type":"transcription.started","data":{"uploadId":"upl_old","engine":"whisper"}}`)
		if _, err := e.store.CreateMany(t.Context(), []*eventstore.Event{ev}); err != nil {
			t.Fatal(err)
		}
		if err := e.store.MarkFannedOut(t.Context(), ev.ID, 1); err != nil {
			t.Fatal(err)
		}
		if err := e.redis.Client.Set(t.Context(), index.IdemKey(acct, key), ev.ID, retention).Err(); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	live := old("old-live", time.Minute)
	archived := old("old-archived", time.Hour)
	e.archive(t, store, false, archived.ID)
	for _, ev := range []*eventstore.Event{live, archived} {
		resp := e.publish(t, &ingestionv1.PublishEventRequest{
			AccountId: acct, Type: "transcription.started", IdempotencyKey: ev.IdempotencyKey, Data: sample(t, "transcription.started"),
		})
		if !resp.GetDuplicate() || resp.GetEvent().GetId() != ev.ID || resp.GetEvent().GetPayload() != string(ev.Payload) {
			t.Errorf("%s: duplicate %t, %s; want the original %s", ev.IdempotencyKey, resp.GetDuplicate(), resp.GetEvent().GetId(), ev.ID)
		}
	}
	if n := len(e.dlv.calls()); n != 0 {
		t.Errorf("repeats of the old build's events scheduled %d calls", n)
	}
	if keys := e.redis.Client.Keys(t.Context(), "wh:{a:"+acct+"}:idemb:*").Val(); len(keys) != 0 {
		t.Errorf("new markers written for keys an old marker holds: %v", keys)
	}
}
