package archive

import (
	"context"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
	"github.com/voxscriber/webhooks/services/delivery/internal/redisqueue"
)

// An ordered parked delivery stays in Redis heading its line; past
// PARKED_RETENTION it ends failed with history's reason, and so do the
// deliveries behind it created as long ago, while a younger one is
// released to park with its own deadline (counted from its creation, as
// it waited in the line meanwhile). Then they move to history as failed.
func TestOrderedParkedWorkEndsFailedPastParkedRetention(t *testing.T) {
	f := newFixture(t)
	const keep = 3 * time.Second
	f.q.SetParkedRetention(keep)
	ctx := context.Background()
	t0 := time.Now()
	old := f.publishKey("up_1", 3) // a, b, c: a heads the line, b and c wait
	f.finish(delivery.StatusParked)
	if d := mustGet(t, f.tiers(), f.acct, old[0]); d.Status != delivery.StatusParked {
		t.Fatalf("head %s, want parked", d.Status)
	}
	time.Sleep(1500 * time.Millisecond)
	young := f.publishKey("up_1", 1)[0] // created within the retention when the head expires
	other := f.publishKey("up_2", 1)[0] // another line, parked later
	f.finish(delivery.StatusParked)

	time.Sleep(time.Until(t0.Add(keep + 300*time.Millisecond)))
	f.drain()
	for _, id := range old {
		d := mustGet(t, f.tiers(), f.acct, id)
		if d.Status != delivery.StatusFailed || d.LastError != history.ExpiredReason {
			t.Fatalf("%s: %s %q; want failed %q", id, d.Status, d.LastError, history.ExpiredReason)
		}
	}
	if d := mustGet(t, f.tiers(), f.acct, other); d.Status != delivery.StatusParked {
		t.Fatalf("the other line's head is %s before its retention, want parked", d.Status)
	}
	jobs, _, err := f.q.Claim(ctx, time.Now(), time.Now().Add(time.Minute), 10)
	if err != nil || len(jobs) != 1 || jobs[0].Delivery.ID != young {
		t.Fatalf("claimed %+v, %v; want the released %s alone", jobs, err, young)
	}
	if ok, _, err := f.q.Complete(ctx, jobs[0], delivery.Outcome{Status: delivery.StatusParked, Now: time.Now()}); !ok || err != nil {
		t.Fatalf("Complete = %v, %v", ok, err)
	}
	f.drain()
	if d := mustGet(t, f.tiers(), f.acct, young); d.Status != delivery.StatusParked {
		t.Fatalf("the released one is %s at once, want parked until its own deadline", d.Status)
	}

	time.Sleep(time.Until(t0.Add(1500*time.Millisecond + keep + 300*time.Millisecond)))
	f.drain()
	for _, id := range []string{young, other} {
		if d := mustGet(t, f.tiers(), f.acct, id); d.Status != delivery.StatusFailed {
			t.Fatalf("%s is %s past its retention, want failed", id, d.Status)
		}
	}
	if left := f.liveKeys(); len(left) > 0 {
		t.Fatalf("still in Redis after they ended and moved: %v", left)
	}
}

// The expiry is a compare-and-set on the version the archiver read: a
// delivery resumed meanwhile is not ended.
func TestOrderedParkedExpiryLeavesARevivedDelivery(t *testing.T) {
	f := newFixture(t)
	f.q.SetParkedRetention(time.Millisecond)
	ctx := context.Background()
	id := f.publishKey("up_1", 1)[0]
	f.finish(delivery.StatusParked)
	stale := *mustGet(t, f.tiers(), f.acct, id)
	if ok, err := f.q.Requeue(ctx, id, time.Now()); !ok || err != nil {
		t.Fatalf("Requeue = %v, %v", ok, err)
	}
	n, err := f.q.ExpireOrderedParked(ctx, redisqueue.Shard(id), []delivery.Delivery{stale}, time.Now(), history.ExpiredReason)
	if err != nil || n != 0 {
		t.Fatalf("ExpireOrderedParked of a stale version = %d, %v; want 0", n, err)
	}
	if d := mustGet(t, f.tiers(), f.acct, id); d.Status != delivery.StatusPending {
		t.Fatalf("revived delivery is %s, want pending", d.Status)
	}
}
