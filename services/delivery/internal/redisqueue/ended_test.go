package redisqueue

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// beforePipeline runs once, before the first pipeline of its client that
// reads an ordered line (TakeEnded's lineSpots).
type beforePipeline struct {
	fn   func()
	done bool
}

func (h *beforePipeline) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *beforePipeline) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (h *beforePipeline) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !h.done && len(cmds) > 0 && cmds[0].Name() == "zscore" {
			h.done = true
			h.fn()
		}
		return next(ctx, cmds)
	}
}

// TestTakeEndedKeepsTheEntryOfADeliveryThatEndedMeanwhile: TakeEnded
// reads an ordered delivery waiting behind parked work in history (filed
// in the ended index as parked work), then, in a second round trip, its
// line. When in between the line opened (a resume) and the delivery was
// sent and succeeded, its end filed it in the ended index again: TakeEnded
// must not drop that entry, or the succeeded record would stay in Redis
// for good, never archived (found by TestChaos with a parking cycle).
func TestTakeEndedKeepsTheEntryOfADeliveryThatEndedMeanwhile(t *testing.T) {
	srv := redistest.Start(t)
	hooked := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = hooked.Close() })
	hook := &beforePipeline{}
	hooked.AddHook(hook)
	q := New(hooked, time.Hour)         // the archiver's
	other := New(srv.Client, time.Hour) // the resume and the sender, elsewhere
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	var ds []delivery.Delivery
	for _, ev := range []string{"evt_a", "evt_b"} {
		d := newDelivery(delivery.OrderedDeliveryID(ev, "ep_1", "upl_1"), now, now)
		d.EventID, d.OrderingKey = ev, "upl_1"
		ds = append(ds, d)
	}
	head, waiting := ds[0], ds[1]
	n := Shard(head.ID)
	if _, err := other.Schedule(ctx, ds); err != nil {
		t.Fatal(err)
	}
	// The head parks (its endpoint disabled) and moves to history: the
	// line closes, and the one waiting in it is filed as parked work.
	jobs, _, err := other.Claim(ctx, now, now.Add(time.Minute), 10)
	if err != nil || len(jobs) != 1 || jobs[0].Delivery.ID != head.ID {
		t.Fatalf("Claim = %v, %v; want the head", jobs, err)
	}
	if ok, _, err := other.Complete(ctx, jobs[0], delivery.Outcome{Status: delivery.StatusParked, Now: now}); !ok || err != nil {
		t.Fatalf("park: Complete = %v, %v", ok, err)
	}
	parked, err := other.TakeEnded(ctx, n, now.Add(time.Hour), 10)
	if err != nil || len(parked) != 1 || parked[0].Delivery.ID != head.ID {
		t.Fatalf("TakeEnded = %v, %v; want the parked head", parked, err)
	}
	if del, err := other.DeleteArchived(ctx, []Ref{{ID: head.ID, AccountID: head.AccountID, Version: parked[0].Delivery.Version}}, now); err != nil || !del[0] {
		t.Fatalf("DeleteArchived = %v, %v", del, err)
	}
	if _, err := srv.Client.ZScore(ctx, endedKey(n), waiting.ID).Result(); err != nil {
		t.Fatalf("the delivery waiting behind the moved head is not filed as parked work: %v", err)
	}

	// The archiver reads it; before it reads its line, the endpoint is
	// enabled (the line opens: history had nothing left to restore) and
	// the delivery is sent and succeeds.
	hook.fn = func() {
		if err := other.CloseLines(ctx, "ep_1"); err != nil {
			t.Error(err)
		}
		if _, err := other.OpenLines(ctx, "ep_1", now); err != nil {
			t.Error(err)
		}
		jobs, _, err := other.Claim(ctx, now, now.Add(time.Minute), 10)
		if err != nil || len(jobs) != 1 || jobs[0].Delivery.ID != waiting.ID {
			t.Errorf("Claim after the resume = %v, %v; want %s", jobs, err, waiting.ID)
			return
		}
		att := &delivery.Attempt{Number: 1, Start: now, StatusCode: 200}
		if ok, _, err := other.Complete(ctx, jobs[0], delivery.Outcome{Status: delivery.StatusSucceeded, Attempt: att, Now: now}); !ok || err != nil {
			t.Errorf("success: Complete = %v, %v", ok, err)
		}
	}
	got, err := q.TakeEnded(ctx, n, now.Add(time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	if !hook.done {
		t.Fatal("TakeEnded read no line: the test no longer puts the end between its reads")
	}
	if len(got) != 0 {
		t.Errorf("TakeEnded handed out %v, read as waiting parked work before it ended", got)
	}
	if _, err := srv.Client.ZScore(ctx, endedKey(n), waiting.ID).Result(); err != nil {
		t.Fatalf("the succeeded delivery left the ended index (%v): it would never move to history", err)
	}
	again, err := q.TakeEnded(ctx, n, now.Add(time.Hour), 10)
	if err != nil || len(again) != 1 || again[0].Delivery.ID != waiting.ID || again[0].Delivery.Status != delivery.StatusSucceeded {
		t.Fatalf("next TakeEnded = %v, %v; want %s, succeeded", again, err, waiting.ID)
	}
}

// TestARetryIntoAClosedLineIsParkedWork: an ordered delivery restored from
// history by a manual retry while its line is closed (its endpoint is
// disabled and parked work of the line moved to history) waits behind the
// sentinel, filed in the ended index at the move time like every other
// delivery waiting there: it goes back to history as parked work instead
// of waiting in Redis until the endpoint is enabled.
func TestARetryIntoAClosedLineIsParkedWork(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	head := newDelivery(delivery.OrderedDeliveryID("evt_a", "ep_1", "upl_1"), now, now)
	head.EventID, head.OrderingKey = "evt_a", "upl_1"
	n := Shard(head.ID)
	if _, err := q.Schedule(ctx, []delivery.Delivery{head}); err != nil {
		t.Fatal(err)
	}
	jobs, _, err := q.Claim(ctx, now, now.Add(time.Minute), 10)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("Claim = %v, %v", jobs, err)
	}
	if ok, _, err := q.Complete(ctx, jobs[0], delivery.Outcome{Status: delivery.StatusParked, Now: now}); !ok || err != nil {
		t.Fatalf("park: Complete = %v, %v", ok, err)
	}
	parked, err := q.TakeEnded(ctx, n, now.Add(time.Hour), 10)
	if err != nil || len(parked) != 1 {
		t.Fatalf("TakeEnded = %v, %v", parked, err)
	}
	if del, err := q.DeleteArchived(ctx, []Ref{{ID: head.ID, AccountID: head.AccountID, Version: parked[0].Delivery.Version}}, now); err != nil || !del[0] {
		t.Fatalf("DeleteArchived = %v, %v", del, err)
	}
	// A delivery of the same line that ended and moved long ago, retried.
	old := newDelivery(delivery.OrderedDeliveryID("evt_0", "ep_1", "upl_1"), now, now)
	old.EventID, old.OrderingKey, old.Status, old.Version = "evt_0", "upl_1", delivery.StatusFailed, 9
	if ok, err := q.Restore(ctx, []delivery.Delivery{old}, [][]delivery.Attempt{nil}, now); err != nil || !ok[0] {
		t.Fatalf("Restore = %v, %v", ok, err)
	}
	if _, err := srv.Client.ZScore(ctx, schedKey(n), old.ID).Result(); err == nil {
		t.Error("the retried delivery is in the schedule, ahead of the line's parked work in history")
	}
	at, err := srv.Client.ZScore(ctx, endedKey(n), old.ID).Result()
	if err != nil || int64(at) != q.parkedMoveAt(ms(now)) {
		t.Fatalf("ended index: %v, %v; want it filed at the move time %d", at, err, q.parkedMoveAt(ms(now)))
	}
	got, err := q.TakeEnded(ctx, n, time.UnixMilli(q.parkedMoveAt(ms(now))), 10)
	if err != nil || len(got) != 1 || got[0].Delivery.ID != old.ID || got[0].Delivery.Status != delivery.StatusParked || got[0].Delivery.LineSeq == 0 {
		t.Fatalf("TakeEnded at the move time = %+v, %v; want %s as parked work with its place in the line", got, err, old.ID)
	}
}
