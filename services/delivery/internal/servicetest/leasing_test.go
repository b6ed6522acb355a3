package servicetest

import (
	"context"
	"testing"
	"time"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	"github.com/voxscriber/webhooks/pkg/signing"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// TestDueDeliveriesAreLeasedAtCreationAndSentWithoutAClaim: what Schedule
// creates due at once goes to the local worker leased, as far as it has
// free slots, and is sent without a claim, with the payload Schedule read
// when it checked the events' accounts (byte for byte, and not read
// again); the rest is claimed, and its payload read, as before. Every
// delivery is sent once.
func TestDueDeliveriesAreLeasedAtCreationAndSentWithoutAClaim(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{workers: 8})
	acct, key := e.account()
	rc := newReceiver(t, nil)
	e.reg.SetEndpoint(acct, "ep_a", rc.url("/a"), active(), nil, signing.GenerateSecret())
	e.reg.SetEndpoint(acct, "ep_b", rc.url("/b"), active(), nil, signing.GenerateSecret())

	// Fewer than the free slots: none is claimed.
	var items []*deliveryv1.ScheduleItem
	bodies := map[string]bool{}
	for range 3 {
		evt, body := e.publish(acct, completed)
		bodies[string(body)] = true
		items = append(items, item(evt, "ep_a"), item(evt, "ep_b"))
	}
	ids := p.schedule(t, context.Background(), acct, completed, items...)
	for deadline := time.Now().Add(10 * time.Second); rc.count() < len(ids) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := p.payloadReads.Load(); n != 0 { // before GetDelivery, which reads them, is called
		t.Errorf("the dispatcher read %d payloads of deliveries leased at creation, want none (Schedule read them)", n)
	}
	for _, id := range ids {
		p.waitStatus(t, key, id, deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 10*time.Second)
	}
	if n := p.claimed.Load(); n != 0 {
		t.Errorf("%d of %d deliveries were claimed, want none (leased at creation)", n, len(ids))
	}
	for _, r := range rc.requests() {
		if !bodies[string(r.body)] {
			t.Errorf("a delivery leased at creation sent %q, not its event's stored payload", r.body)
		}
	}

	// More than the slots: 8 are leased at creation, the other 12 claimed.
	items = items[:0]
	for range 10 {
		evt, _ := e.publish(acct, completed)
		items = append(items, item(evt, "ep_a"), item(evt, "ep_b"))
	}
	ids = p.schedule(t, context.Background(), acct, completed, items...)
	for _, id := range ids {
		p.waitStatus(t, key, id, deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 10*time.Second)
	}
	if n := p.claimed.Load(); n < 12 || n > 20-1 {
		t.Errorf("%d of 20 deliveries were claimed with 8 slots free, want 12 (or a few more if one was handed back)", n)
	}

	if got, want := rc.count(), 26; got != want {
		t.Errorf("receiver got %d requests, want %d (each delivery once)", got, want)
	}

	// A repeated Schedule of deliveries that exist leases nothing and
	// sends nothing again.
	again := p.schedule(t, context.Background(), acct, completed, items...)
	if len(again) != len(ids) {
		t.Fatalf("repeat: %d ids", len(again))
	}
	time.Sleep(200 * time.Millisecond)
	if got := rc.count(); got != 26 {
		t.Errorf("a repeated Schedule sent again: %d requests", got)
	}
	if n := p.sent.Load(); n != 26 {
		t.Errorf("%d sends, want 26", n)
	}
}

// TestADeliveryCreatedLeasedComesDueWhenItsLeaseEnds: the process that
// Schedule leased a delivery to dies before sending it (the create is all
// it wrote): another worker sends it once its lease ended, not before.
func TestADeliveryCreatedLeasedComesDueWhenItsLeaseEnds(t *testing.T) {
	e := newEnv(t)
	acct, key := e.account()
	rc := newReceiver(t, nil)
	e.reg.SetEndpoint(acct, "ep_a", rc.url("/"), active(), nil, signing.GenerateSecret())
	evt, _ := e.publish(acct, completed)
	dead := e.start(procOpts{noWorker: true})
	now := time.Now()
	lease := time.UnixMilli(now.Add(700 * time.Millisecond).UnixMilli())
	d := delivery.Delivery{
		ID: delivery.DeliveryID(evt, "ep_a"), EventID: evt, EndpointID: "ep_a", AccountID: acct, EventType: completed,
		Status: delivery.StatusPending, CreateTime: now, UpdateTime: now, NextTime: now, LeaseUntil: lease,
	}
	if created, err := dead.queue.Schedule(context.Background(), []delivery.Delivery{d}); err != nil || !created[0] {
		t.Fatalf("schedule leased: %v, %v", created, err)
	}
	live := e.start(procOpts{workers: 2})
	got := live.waitStatus(t, key, d.ID, deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 10*time.Second)
	reqs := rc.requests()
	if len(reqs) != 1 || got.GetAttemptCount() != 1 {
		t.Fatalf("receiver got %d requests, delivery %v; want one attempt", len(reqs), got)
	}
	if reqs[0].at.Before(lease.Add(-2 * time.Millisecond)) {
		t.Errorf("sent at %v, before the lease of the dead process ended at %v", reqs[0].at, lease)
	}
	if live.claimed.Load() != 1 {
		t.Errorf("the live worker claimed %d jobs, want 1", live.claimed.Load())
	}
}
