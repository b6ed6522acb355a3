package redisqueue

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// TestEveryListRechecksTheAccountOfWhatItReturns: an id filed in another
// account's index (as a forged Schedule of an existing delivery once did)
// is neither listed nor found for replay there; the delivery's own record
// decides whose it is, and the stray entry is dropped.
func TestEveryListRechecksTheAccountOfWhatItReturns(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	d := newDelivery("dlv_victims", now, now) // acct_1's
	d.Status = delivery.StatusFailed
	if _, err := q.Schedule(ctx, []delivery.Delivery{d}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client.HSet(ctx, DeliveryKey(d.ID), "status", string(delivery.StatusFailed)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client.ZAdd(ctx, accountKey("acct_evil"), redis.Z{Score: float64(now.UnixMilli()), Member: d.ID}).Err(); err != nil {
		t.Fatal(err)
	}

	list, _, err := q.List(ctx, "acct_evil", delivery.ListQuery{PageSize: 50})
	if err != nil || len(list) != 0 {
		t.Fatalf("List(acct_evil) = %v, %v; want nothing", list, err)
	}
	found, err := q.Find(ctx, "acct_evil", d.EndpointID, []delivery.Status{delivery.StatusFailed}, now.Add(-time.Hour), 10)
	if err != nil || len(found) != 0 {
		t.Fatalf("Find(acct_evil) = %v, %v; want nothing", found, err)
	}
	if n, _ := srv.Client.ZCard(ctx, accountKey("acct_evil")).Result(); n != 0 {
		t.Errorf("the stray index entry is still there (%d entries)", n)
	}
	// The owner still sees it.
	list, _, err = q.List(ctx, "acct_1", delivery.ListQuery{PageSize: 50})
	if err != nil || len(list) != 1 || list[0].ID != d.ID {
		t.Fatalf("List(acct_1) = %v, %v", list, err)
	}
	found, err = q.Find(ctx, "acct_1", d.EndpointID, []delivery.Status{delivery.StatusFailed}, now.Add(-time.Hour), 10)
	if err != nil || len(found) != 1 {
		t.Fatalf("Find(acct_1) = %v, %v", found, err)
	}
}
