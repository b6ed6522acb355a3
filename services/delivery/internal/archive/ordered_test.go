package archive

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
	"github.com/voxscriber/webhooks/services/delivery/internal/redisqueue"
)

// sendAll claims and completes (succeeded) everything due until nothing
// is, and returns the ids sent per ordering key, in the order they were
// sent. It fails the test when two of one key are in flight at once.
func (f *fixture) sendAll() map[string][]string {
	ctx := context.Background()
	sent := map[string][]string{}
	for round := 0; round < 10000; round++ {
		now := time.Now().Add(time.Second)
		jobs, _, err := f.q.Claim(ctx, now, now.Add(time.Minute), 1000)
		if err != nil {
			f.t.Fatal(err)
		}
		if len(jobs) == 0 {
			return sent
		}
		inFlight := map[string]bool{}
		for _, j := range jobs {
			k := j.Delivery.OrderingKey
			if inFlight[k] {
				f.t.Fatalf("two deliveries of key %q in flight at once", k)
			}
			inFlight[k] = true
			sent[k] = append(sent[k], j.Delivery.ID)
		}
		for _, j := range jobs {
			a := &delivery.Attempt{Number: j.Delivery.Attempts + 1, Start: now, StatusCode: 200, Latency: time.Millisecond, URL: "https://example.test/hook"}
			if ok, _, err := f.q.Complete(ctx, j, delivery.Outcome{Status: delivery.StatusSucceeded, Attempt: a, Now: now}); !ok || err != nil {
				f.t.Fatalf("Complete = %v, %v", ok, err)
			}
		}
	}
	f.t.Fatal("sendAll: no end")
	return nil
}

func (f *fixture) inRedis(id string) bool {
	return f.rdb.Exists(context.Background(), redisqueue.DeliveryKey(id)).Val() == 1
}

// The parked work of an endpoint ordered by key moves to history, the
// parked head of each line and every delivery waiting behind it, also
// those published after the line moved; what comes back when the
// endpoint is enabled goes in publish order per key, history's and the
// deliveries still in Redis alike, one at a time per key.
func TestOrderedParkedWorkMovesToHistoryAndResumesInLineOrder(t *testing.T) {
	f := newFixture(t)
	f.q.SetParkedMoveAfter(time.Millisecond)
	ctx := context.Background()
	want := map[string][]string{}
	for i := range 20 {
		k := fmt.Sprintf("up_%d", i)
		want[k] = f.publishKey(k, 1+i%4) // a head, and up to 3 waiting behind it
	}
	f.finish(delivery.StatusParked) // the heads park (the endpoint is disabled)
	time.Sleep(5 * time.Millisecond)
	f.drain()
	for k := range want { // published while the endpoint stays disabled: they wait behind history
		want[k] = append(want[k], f.publishKey(k, 2)...)
	}
	time.Sleep(5 * time.Millisecond)
	f.drain()
	total := 0
	for k, ids := range want {
		for _, id := range ids {
			if f.inRedis(id) {
				t.Fatalf("%s of %s still in Redis after the move", id, k)
			}
			total++
		}
	}
	if left := f.liveKeys(); len(left) > 0 {
		t.Fatalf("parked work still in Redis: %v", left)
	}
	// History holds each as parked, at its place in its line.
	for k, ids := range want {
		var last int64
		for _, id := range ids {
			h, _, err := f.store.GetDelivery(ctx, f.acct, id)
			if err != nil || h.Status != history.StatusParked || h.LineSeq <= last {
				t.Fatalf("%s of %s in history: %+v, %v; want parked after sequence %d", id, k, h, err, last)
			}
			last = h.LineSeq
		}
	}
	// One more of each key waits in Redis when the endpoint is enabled.
	f.q.SetParkedMoveAfter(time.Hour)
	for k := range want {
		want[k] = append(want[k], f.publishKey(k, 1)...)
	}
	tr := f.tiers()
	n, err := tr.ResumeHistory(ctx, f.acct, f.ep, time.Now())
	if err != nil || n != total {
		t.Fatalf("ResumeHistory = %d, %v; want %d", n, err, total)
	}
	got := f.sendAll()
	for k, ids := range want {
		if !slices.Equal(got[k], ids) {
			t.Fatalf("key %s sent %v, want %v", k, got[k], ids)
		}
	}
	if groups, _ := tr.Parked(ctx, 100); len(groups) != 0 {
		t.Fatalf("still parked: %+v", groups)
	}
	if keys := f.rdb.Keys(ctx, "wh:histlines:*").Val(); len(keys) > 0 {
		t.Fatalf("closed lines left: %v", keys)
	}
}

// While a resume brings a line's work back, the archiver moves nothing
// more out of it: what it read and committed meanwhile stays live in
// Redis (its ended entry dropped), and the resume still sends every one
// in order; history keeps no parked copy of them afterwards.
func TestAResumeInProgressKeepsTheLinesWorkLive(t *testing.T) {
	f := newFixture(t)
	f.q.SetParkedMoveAfter(time.Millisecond)
	ctx := context.Background()
	head := f.publishKey("up_1", 1)
	f.finish(delivery.StatusParked)
	time.Sleep(5 * time.Millisecond)
	f.drain() // the head moves: the line is closed
	behind := f.publishKey("up_1", 3)
	if err := f.q.CloseLines(ctx, f.ep); err != nil { // a resume starts
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := f.arch.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range behind {
		if !f.inRedis(id) {
			t.Fatalf("%s moved out of a line being resumed", id)
		}
	}
	if ended := f.rdb.ZCard(ctx, "wh:ended:{s"+fmt.Sprint(redisqueue.Shard(head[0]))+"}").Val(); ended != 0 {
		t.Fatalf("%d entries left in the ended index", ended)
	}
	tr := f.tiers()
	if _, err := tr.ResumeHistory(ctx, f.acct, f.ep, time.Now()); err != nil {
		t.Fatal(err)
	}
	want := append(head, behind...)
	if got := f.sendAll()["up_1"]; !slices.Equal(got, want) {
		t.Fatalf("sent %v, want %v", got, want)
	}
	if ds, _, err := f.store.ListDeliveries(ctx, f.acct, historyParked(f.ep)); err != nil || len(ds) != 0 {
		t.Fatalf("history still holds %d parked: %v", len(ds), err)
	}
}

// A line opened by a resume takes new work at its tail, after everything
// history held, and a delivery revived before the archiver deletes it is
// not moved (the version check), nor is the line closed by it.
func TestAnOpenedLineAndARevivedHeadStayInOrder(t *testing.T) {
	f := newFixture(t)
	f.q.SetParkedMoveAfter(time.Millisecond)
	ctx := context.Background()
	first := f.publishKey("up_1", 2)
	f.finish(delivery.StatusParked)
	time.Sleep(5 * time.Millisecond)
	f.drain()
	tr := f.tiers()
	if _, err := tr.ResumeHistory(ctx, f.acct, f.ep, time.Now()); err != nil {
		t.Fatal(err)
	}
	later := f.publishKey("up_1", 2)
	if got := f.sendAll()["up_1"]; !slices.Equal(got, append(first, later...)) {
		t.Fatalf("sent %v, want %v", got, append(first, later...))
	}

	// The head parks again and is taken by the archiver; a retry revives
	// it before the delete.
	again := f.publishKey("up_1", 2)
	f.finish(delivery.StatusParked)
	time.Sleep(5 * time.Millisecond)
	stale := *mustGet(t, tr, f.acct, again[0])
	if ok, err := f.q.Requeue(ctx, again[0], time.Now()); !ok || err != nil {
		t.Fatalf("Requeue = %v, %v", ok, err)
	}
	deleted, err := f.q.DeleteArchived(ctx, []redisqueue.Ref{{ID: stale.ID, AccountID: f.acct, Version: stale.Version}}, time.Now())
	if err != nil || deleted[0] {
		t.Fatalf("DeleteArchived of a revived head = %v, %v; want kept", deleted, err)
	}
	if got := f.sendAll()["up_1"]; !slices.Equal(got, again) {
		t.Fatalf("sent %v, want %v", got, again)
	}
}
