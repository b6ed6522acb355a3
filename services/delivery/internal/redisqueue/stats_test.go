package redisqueue

import (
	"context"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// TestStats: depth counts every scheduled delivery (due, waiting, leased),
// the oldest due one sets the lag, a claimed one no longer does, and
// parked deliveries are counted.
func TestStats(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	if s, err := q.Stats(ctx, now); err != nil || s.Depth != 0 || !s.OldestDue.IsZero() || s.Parked != 0 {
		t.Fatalf("empty Stats = %+v, %v", s, err)
	}
	if _, err := q.Schedule(ctx, []delivery.Delivery{
		newDelivery("dlv_old", now, now.Add(-3*time.Second)),
		newDelivery("dlv_new", now, now.Add(-time.Second)),
		newDelivery("dlv_later", now, now.Add(time.Minute)),
	}); err != nil {
		t.Fatal(err)
	}
	s, err := q.Stats(ctx, now)
	if err != nil || s.Depth != 3 || !s.OldestDue.Equal(now.Add(-3*time.Second)) {
		t.Fatalf("Stats = %+v, %v; want depth 3, oldest due 3s ago", s, err)
	}
	jobs, _, err := q.Claim(ctx, now, now.Add(15*time.Second), 10)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("Claim = %v, %v", jobs, err)
	}
	s, _ = q.Stats(ctx, now)
	if s.Depth != 3 || !s.OldestDue.IsZero() {
		t.Fatalf("after the claim Stats = %+v; want depth 3 (leased stay), nothing due", s)
	}
	if err := srv.Client.SAdd(ctx, parkedKey(2), "ep_1|dlv_x").Err(); err != nil {
		t.Fatal(err)
	}
	if s, _ = q.Stats(ctx, now); s.Parked != 1 {
		t.Fatalf("Parked = %d, want 1", s.Parked)
	}
	if ok, err := q.ClaimDisable(ctx, delivery.PendingDisable{AccountID: "acct_1", EndpointID: "ep_1", DecidedAt: now},
		now.Add(-time.Minute), true); !ok || err != nil {
		t.Fatalf("ClaimDisable = %v, %v", ok, err)
	}
	if s, _ = q.Stats(ctx, now); s.PendingDisables != 1 {
		t.Fatalf("PendingDisables = %d, want 1", s.PendingDisables)
	}
}
