package redisqueue

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// TestEraseAccountDeletesItsDeliveriesOnly: an account's pending, leased,
// parked and not-indexed deliveries and its endpoints' state go; an attempt
// in flight records nothing after it (its lease is gone, nothing is
// recreated); another account's delivery stays and is still claimed.
func TestEraseAccountDeletesItsDeliveriesOnly(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client
	q := New(rdb, time.Hour)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	mine := func(id, ep string, due time.Time) delivery.Delivery {
		d := newDelivery(id, now, due)
		d.AccountID, d.EndpointID = "acct_gone", ep
		return d
	}
	other := newDelivery("dlv_other", now, now.Add(time.Hour))
	if _, err := q.Schedule(ctx, []delivery.Delivery{
		mine("dlv_inflight", "ep_a", now), mine("dlv_later", "ep_a", now.Add(time.Minute)),
		mine("dlv_parked", "ep_b", now), other,
	}); err != nil {
		t.Fatal(err)
	}
	jobs, _, err := q.Claim(ctx, now, now.Add(15*time.Second), 10)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("Claim = %d jobs, %v", len(jobs), err)
	}
	var inflight delivery.Job
	for _, j := range jobs {
		if j.Delivery.ID == "dlv_parked" {
			if ok, _, err := q.Complete(ctx, j, delivery.Outcome{Status: delivery.StatusParked, Now: now}); !ok || err != nil {
				t.Fatalf("park: %v %v", ok, err)
			}
		} else {
			inflight = j
		}
	}
	// A parked delivery the account index lost (written beside it, not with it).
	rdb.ZRem(ctx, accountKey("acct_gone"), "dlv_parked")
	rdb.HSet(ctx, epStatKey("ep_a"), "ok", 1)
	rdb.ZAdd(ctx, opWatchKey(Shard("ep_a")), redis.Z{Score: 1, Member: "acct_gone|ep_a"})
	rdb.SAdd(ctx, parkedEndpointsKey, "acct_gone|ep_b")

	n, err := q.EraseAccount(ctx, "acct_gone", []string{"ep_a", "ep_b"})
	if err != nil || n != 3 {
		t.Fatalf("EraseAccount = %d, %v; want 3", n, err)
	}
	if ok, _, err := q.Complete(ctx, inflight, delivery.Outcome{Status: delivery.StatusSucceeded, Now: now}); ok || err != nil {
		t.Fatalf("Complete after the erasure = %v, %v; want not recorded", ok, err)
	}
	for _, id := range []string{"dlv_inflight", "dlv_later", "dlv_parked"} {
		if n := rdb.Exists(ctx, DeliveryKey(id), AttemptsKey(id)).Val(); n != 0 {
			t.Errorf("%s: %d keys left", id, n)
		}
		if _, err := rdb.ZScore(ctx, ScheduleKey(id), id).Result(); err == nil {
			t.Errorf("%s still scheduled", id)
		}
		if rdb.ZScore(ctx, endedKey(Shard(id)), id).Err() == nil {
			t.Errorf("%s still in the ended index", id)
		}
	}
	if rdb.SCard(ctx, parkedKey(Shard("dlv_parked"))).Val() != 0 || rdb.Exists(ctx, epStatKey("ep_a")).Val() != 0 ||
		rdb.ZCard(ctx, opWatchKey(Shard("ep_a"))).Val() != 0 || rdb.SCard(ctx, parkedEndpointsKey).Val() != 0 {
		t.Error("endpoint state left behind")
	}
	if d, _, err := q.Get(ctx, other.ID); err != nil || d.AccountID != other.AccountID {
		t.Fatalf("the other account's delivery: %+v, %v", d, err)
	}
	if n, err := q.EraseAccount(ctx, "acct_gone", []string{"ep_a", "ep_b"}); err != nil || n != 0 {
		t.Fatalf("a repeat = %d, %v; want 0, nil", n, err)
	}
}
