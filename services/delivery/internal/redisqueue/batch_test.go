package redisqueue

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// TestConcurrentCompletesShareRoundTrips: many attempts finishing at once
// are each recorded exactly as alone (the right outcome, only with the
// lease held), in fewer pipelines than calls, also right after the script
// cache was flushed (a restarted Redis).
func TestConcurrentCompletesShareRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	const n = 400
	ds := make([]delivery.Delivery, n)
	for i := range ds {
		ds[i] = newDelivery(fmt.Sprintf("dlv_%03d", i), now, now)
	}
	if _, err := q.Schedule(ctx, ds); err != nil {
		t.Fatal(err)
	}
	jobs, _, err := q.Claim(ctx, now, now.Add(time.Minute), n)
	if err != nil || len(jobs) != n {
		t.Fatalf("Claim = %d jobs, %v", len(jobs), err)
	}
	if err := srv.Client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	before := commandCalls(t, srv, "evalsha") + commandCalls(t, srv, "eval")
	var counted redistest.Counter
	srv.Client.AddHook(&counted)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%4 == 3 {
				j.LeaseUntil = j.LeaseUntil.Add(-time.Second) // lost lease: must not be recorded
			}
			att := &delivery.Attempt{Number: 1, Start: now, StatusCode: 200}
			ok, _, err := q.Complete(ctx, j, delivery.Outcome{Status: delivery.StatusSucceeded, Attempt: att, Now: now})
			if err != nil || ok != (i%4 != 3) {
				errs <- fmt.Errorf("Complete %s = %v, %v", j.Delivery.ID, ok, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	sent := counted.Pipelines.Load()
	for i, j := range jobs {
		d, _, err := q.Get(ctx, j.Delivery.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := delivery.StatusSucceeded
		if i%4 == 3 {
			want = delivery.StatusPending
		}
		if d.Status != want {
			t.Errorf("%s: status %s, want %s", d.ID, d.Status, want)
		}
	}
	calls := commandCalls(t, srv, "evalsha") + commandCalls(t, srv, "eval") - before
	t.Logf("%d completes in %d script calls, %d pipelines", n, calls, sent)
	if calls < n {
		t.Errorf("%d script calls for %d completes: some were not sent", calls, n)
	}
	if p := sent; p >= n {
		t.Errorf("%d pipelines for %d concurrent completes: none shared a round trip", p, n)
	}
}

// commandCalls reads INFO commandstats' call count of a command.
func commandCalls(t *testing.T, srv *redistest.Server, cmd string) int {
	t.Helper()
	info, err := srv.Client.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	for _, line := range strings.Split(info, "\r\n") {
		if _, err := fmt.Sscanf(line, "cmdstat_"+cmd+":calls=%d", &calls); err == nil {
			return calls
		}
	}
	return 0
}
