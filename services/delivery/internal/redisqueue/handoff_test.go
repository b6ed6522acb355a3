package redisqueue

import (
	"context"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// The end of an ordered delivery recorded with a handoff lease leases the
// next one of its line to the caller and returns it: no claim sees it
// while the lease holds, and its outcome records against that lease. A
// retry (not an end) hands nothing off, and neither does an end recorded
// without the lease (the next one is only made due).
func TestCompleteHandsTheNextOfAnOrderedLineToTheCaller(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	var ds []delivery.Delivery
	for _, ev := range []string{"evt_a", "evt_b", "evt_c"} {
		d := newDelivery(delivery.OrderedDeliveryID(ev, "ep_1", "upl_1"), now, now)
		d.EventID, d.OrderingKey = ev, "upl_1"
		ds = append(ds, d)
	}
	if _, err := q.Schedule(ctx, ds); err != nil {
		t.Fatal(err)
	}
	lease := now.Add(time.Minute)
	jobs, _, err := q.Claim(ctx, now, lease, 10)
	if err != nil || len(jobs) != 1 || jobs[0].Delivery.ID != ds[0].ID {
		t.Fatalf("Claim = %v, %v; want the head alone", jobs, err)
	}
	// A retry keeps the head: nothing is handed off.
	ok, next, err := q.Complete(ctx, jobs[0], delivery.Outcome{Status: delivery.StatusPending, Next: now, Now: now, HandoffUntil: lease})
	if !ok || next != nil || err != nil {
		t.Fatalf("retry: Complete = %v, %v, %v; want recorded, no handoff", ok, next, err)
	}
	jobs, _, _ = q.Claim(ctx, now, lease, 10)
	handoff := lease.Add(time.Second)
	ok, next, err = q.Complete(ctx, jobs[0], delivery.Outcome{Status: delivery.StatusSucceeded, Now: now, HandoffUntil: handoff})
	if !ok || err != nil || next == nil || next.Delivery.ID != ds[1].ID || !next.LeaseUntil.Equal(handoff) ||
		next.Delivery.Status != delivery.StatusPending || next.Delivery.OrderingKey != "upl_1" {
		t.Fatalf("end: Complete = %v, %+v, %v; want %s handed off until %v", ok, next, err, ds[1].ID, handoff)
	}
	if got, _, _ := q.Claim(ctx, now.Add(time.Second), lease, 10); len(got) != 0 {
		t.Fatalf("a claim took %v while it was leased to the caller", got)
	}
	// Recorded against the handoff's lease, without one: the third is due.
	ok, next, err = q.Complete(ctx, *next, delivery.Outcome{Status: delivery.StatusSucceeded, Now: now})
	if !ok || next != nil || err != nil {
		t.Fatalf("handed-off one: Complete = %v, %v, %v; want recorded, no handoff", ok, next, err)
	}
	jobs, _, err = q.Claim(ctx, now.Add(time.Second), lease, 10)
	if err != nil || len(jobs) != 1 || jobs[0].Delivery.ID != ds[2].ID {
		t.Fatalf("Claim = %v, %v; want the third, made due", jobs, err)
	}
}
