package redisqueue

import (
	"context"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// TestEveryWriteRaisesTheVersionAndEndsJoinTheEndedIndex: the archiver's
// compare-and-delete relies on both.
func TestEveryWriteRaisesTheVersionAndEndsJoinTheEndedIndex(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	q.SetParkedMoveAfter(time.Minute)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	ver := func(id string) int64 {
		d, _, err := q.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return d.Version
	}
	ended := func(id string) (float64, bool) {
		s, err := srv.Client.ZScore(ctx, endedKey(Shard(id)), id).Result()
		return s, err == nil
	}
	for _, st := range []delivery.Status{delivery.StatusSucceeded, delivery.StatusFailed, delivery.StatusCanceled, delivery.StatusParked} {
		id := "dlv_" + string(st)
		if _, err := q.Schedule(ctx, []delivery.Delivery{newDelivery(id, now, now)}); err != nil {
			t.Fatal(err)
		}
		if v := ver(id); v != 1 {
			t.Fatalf("%s: version after Schedule = %d, want 1", st, v)
		}
		jobs, _, err := q.Claim(ctx, now, now.Add(time.Minute), 10)
		if err != nil || len(jobs) != 1 || jobs[0].Delivery.Version != 2 {
			t.Fatalf("%s: Claim = %+v, %v (want version 2)", st, jobs, err)
		}
		if ok, _, err := q.Complete(ctx, jobs[0], delivery.Outcome{Status: st, Now: now}); !ok || err != nil {
			t.Fatalf("%s: Complete = %v, %v", st, ok, err)
		}
		if v := ver(id); v != 3 {
			t.Fatalf("%s: version after Complete = %d, want 3", st, v)
		}
		s, ok := ended(id)
		want := float64(now.UnixMilli())
		if st == delivery.StatusParked {
			want += float64(time.Minute.Milliseconds())
		}
		if !ok || s != want {
			t.Fatalf("%s: ended index = %v %v, want %v", st, s, ok, want)
		}
		if _, err := q.Requeue(ctx, id, now); err != nil {
			t.Fatal(err)
		}
		if v := ver(id); v != 4 {
			t.Fatalf("%s: version after Requeue = %d, want 4", st, v)
		}
		if _, ok := ended(id); ok {
			t.Fatalf("%s: a revived delivery is still in the ended index", st)
		}
		jobs, _, _ = q.Claim(ctx, now, now.Add(time.Minute), 10)
		if len(jobs) != 1 {
			t.Fatalf("%s: no claim after Requeue", st)
		}
		_, _, _ = q.Complete(ctx, jobs[0], delivery.Outcome{Status: delivery.StatusFailed, Now: now})
		if n, err := q.Restart(ctx, []string{id}, []delivery.Status{delivery.StatusFailed}, now); n != 1 || err != nil {
			t.Fatalf("%s: Restart = %d, %v", st, n, err)
		}
		if v := ver(id); v != 7 {
			t.Fatalf("%s: version after claim, complete, restart = %d, want 7", st, v)
		}
		if _, ok := ended(id); ok {
			t.Fatalf("%s: a restarted delivery is still in the ended index", st)
		}
		jobs, _, _ = q.Claim(ctx, now, now.Add(time.Minute), 10)
		_, _, _ = q.Complete(ctx, jobs[0], delivery.Outcome{Status: delivery.StatusSucceeded, Now: now})
	}
}
