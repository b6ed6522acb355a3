package archive

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
	"github.com/voxscriber/webhooks/services/delivery/internal/redisqueue"
)

// sendAll claims and completes (succeeded) everything due until nothing
// is, and returns the ids sent per line ("<endpoint>|<ordering key>"), in
// the order they were sent. It fails the test when two of one line are in
// flight at once.
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
			k := j.Delivery.EndpointID + "|" + j.Delivery.OrderingKey
			if inFlight[k] {
				f.t.Fatalf("two deliveries of line %q in flight at once", k)
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

// parkAndMove publishes n events ordered by key (PARKED_MOVE_AFTER set to
// 1 ms), parks the head of their line, and runs the archiver until it
// moved what it could; it returns the deliveries in publish order.
func (f *fixture) parkAndMove(key string, n int) []string {
	f.q.SetParkedMoveAfter(time.Millisecond)
	ids := f.publishKey(key, n)
	f.finish(delivery.StatusParked)
	time.Sleep(5 * time.Millisecond)
	f.drain()
	return ids
}

func (f *fixture) inRedis(id string) bool {
	return f.rdb.Exists(context.Background(), redisqueue.DeliveryKey(id)).Val() == 1
}

// The parked work of endpoints ordered by key moves to history, the
// parked head of each line and every delivery waiting behind it, also
// those published after the line moved (over a thousand, across two
// endpoints); what comes back when an endpoint is enabled goes in publish
// order per key, history's and the deliveries still in Redis alike, one
// at a time per key.
func TestOrderedParkedWorkMovesToHistoryAndResumesInLineOrder(t *testing.T) {
	f := newFixture(t)
	f.q.SetParkedMoveAfter(time.Millisecond)
	ctx := context.Background()
	eps := []string{f.ep, ids2(1)}
	want := map[string]map[string][]string{} // endpoint → key → deliveries in publish order
	publish := func(per func(i int) int) {
		for _, ep := range eps {
			f.ep = ep
			if want[ep] == nil {
				want[ep] = map[string][]string{}
			}
			for i := range 150 {
				k := fmt.Sprintf("up_%d", i)
				want[ep][k] = append(want[ep][k], f.publishKey(k, per(i))...)
			}
		}
	}
	publish(func(i int) int { return 1 + i%4 }) // a head, and up to 3 waiting behind it
	f.finish(delivery.StatusParked)             // the heads park (the endpoints are disabled)
	time.Sleep(5 * time.Millisecond)
	f.drain()
	publish(func(int) int { return 2 }) // published while still disabled: they wait behind history
	time.Sleep(5 * time.Millisecond)
	f.drain()
	total := 0
	for _, keys := range want {
		for k, ids := range keys {
			var last int64
			for _, id := range ids {
				if f.inRedis(id) {
					t.Fatalf("%s of %s still in Redis after the move", id, k)
				}
				// History holds each as parked, at its place in its line.
				h, _, err := f.store.GetDelivery(ctx, f.acct, id)
				if err != nil || h.Status != history.StatusParked || h.LineSeq <= last {
					t.Fatalf("%s of %s in history: %+v, %v; want parked after sequence %d", id, k, h, err, last)
				}
				last = h.LineSeq
				total++
			}
		}
	}
	if total < 1000 {
		t.Fatalf("only %d parked", total)
	}
	if left := f.liveKeys(); len(left) > 0 {
		t.Fatalf("parked work still in Redis: %d keys", len(left))
	}
	// One more of each key waits in Redis when the endpoints are enabled.
	f.q.SetParkedMoveAfter(time.Hour)
	publish(func(int) int { return 1 })
	tr := f.tiers()
	resumed := 0
	for _, ep := range eps {
		n, err := tr.ResumeHistory(ctx, f.acct, ep, time.Now())
		if err != nil {
			t.Fatalf("ResumeHistory = %d, %v", n, err)
		}
		resumed += n
	}
	if resumed != total {
		t.Fatalf("resumed %d, want %d", resumed, total)
	}
	got := f.sendAll()
	for ep, keys := range want {
		for k, ids := range keys {
			if !slices.Equal(got[ep+"|"+k], ids) {
				t.Fatalf("%s key %s sent %v, want %v", ep, k, got[ep+"|"+k], ids)
			}
		}
	}
	if groups, _ := tr.Parked(ctx, 100); len(groups) != 0 {
		t.Fatalf("still parked: %+v", groups)
	}
	if keys := f.rdb.Keys(ctx, "wh:histlines:*").Val(); len(keys) > 0 {
		t.Fatalf("closed lines left: %v", keys)
	}
}

// A pass killed between the history commit and the delete closes no line
// and loses nothing: the next pass moves the work once, and it resumes in
// order.
func TestACrashBetweenCommitAndDeleteKeepsALineWhole(t *testing.T) {
	f := newFixture(t)
	f.q.SetParkedMoveAfter(time.Millisecond)
	ctx := context.Background()
	want := f.publishKey("up_1", 4)
	f.finish(delivery.StatusParked)
	time.Sleep(5 * time.Millisecond)
	f.arch.afterCommit = func() error { return errors.New("killed") }
	if _, err := f.arch.RunOnce(ctx); err == nil {
		t.Fatal("the simulated crash did not stop the pass")
	}
	if !f.inRedis(want[0]) || f.rdb.Exists(ctx, "wh:line:{s"+fmt.Sprint(redisqueue.Shard(want[0]))+"}:"+f.ep+"|up_1").Val() != 1 {
		t.Fatal("the head or its line left Redis before the delete")
	}
	f.arch.afterCommit = nil
	f.drain()
	for _, id := range want {
		if f.inRedis(id) {
			t.Fatalf("%s still in Redis", id)
		}
	}
	n, err := f.tiers().ResumeHistory(ctx, f.acct, f.ep, time.Now())
	if err != nil || n != len(want) {
		t.Fatalf("ResumeHistory = %d, %v; want %d", n, err, len(want))
	}
	if got := f.sendAll()[f.ep+"|up_1"]; !slices.Equal(got, want) {
		t.Fatalf("sent %v, want %v", got, want)
	}
}

// Erasing the account deletes its closed lines and their markers.
func TestEraseAccountDeletesClosedLines(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.parkAndMove("up_1", 2)
	if keys := f.rdb.Keys(ctx, "wh:histlines:*").Val(); len(keys) != 1 {
		t.Fatalf("closed-line hashes %v, want one", keys)
	}
	if _, err := f.q.EraseAccount(ctx, f.acct, []string{f.ep}); err != nil {
		t.Fatal(err)
	}
	if keys := append(f.rdb.Keys(ctx, "wh:histlines:*").Val(), f.rdb.Keys(ctx, "wh:line:*").Val()...); len(keys) > 0 {
		t.Fatalf("left after erasure: %v", keys)
	}
}

// While a resume brings a line's work back, the archiver moves nothing
// more out of it: what it read and committed meanwhile stays live in
// Redis (its ended entry dropped), and the resume still sends every one
// in order; history keeps no parked copy of them afterwards.
func TestAResumeInProgressKeepsTheLinesWorkLive(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	head := f.parkAndMove("up_1", 1) // the head moves: the line is closed
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
	if got := f.sendAll()[f.ep+"|up_1"]; !slices.Equal(got, want) {
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
	ctx := context.Background()
	first := f.parkAndMove("up_1", 2)
	tr := f.tiers()
	if _, err := tr.ResumeHistory(ctx, f.acct, f.ep, time.Now()); err != nil {
		t.Fatal(err)
	}
	later := f.publishKey("up_1", 2)
	if got := f.sendAll()[f.ep+"|up_1"]; !slices.Equal(got, append(first, later...)) {
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
	if got := f.sendAll()[f.ep+"|up_1"]; !slices.Equal(got, again) {
		t.Fatalf("sent %v, want %v", got, again)
	}
}

// A delivery published while a resume is halfway through its pages is
// numbered above everything history held, not above what came back so
// far, so it goes after the pages still to come.
func TestADeliveryPublishedMidResumeGoesAfterHistorysWholeLine(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	parked := f.parkAndMove("up_1", 6)
	if err := f.q.CloseLines(ctx, f.ep); err != nil {
		t.Fatal(err)
	}
	restore := func(ids []string) {
		var ds []delivery.Delivery
		var atts [][]delivery.Attempt
		for _, id := range ids {
			h, _, err := f.store.GetDelivery(ctx, f.acct, id)
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, FromHistory(h))
			atts = append(atts, nil)
		}
		if _, err := f.q.Restore(ctx, ds, atts, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	restore(parked[:3]) // the first page
	later := f.publishKey("up_1", 1)
	restore(parked[3:]) // the second
	if _, err := f.q.OpenLines(ctx, f.ep, time.Now()); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(parked), later...)
	if got := f.sendAll()[f.ep+"|up_1"]; !slices.Equal(got, want) {
		t.Fatalf("sent %v, want %v", got, want)
	}
}
