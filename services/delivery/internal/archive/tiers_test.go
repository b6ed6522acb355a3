package archive

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

func (f *fixture) tiers() *Tiers { return &Tiers{Q: f.q, Events: f.events, Store: f.lazy} }

func (f *fixture) listAll(tr *Tiers, q delivery.ListQuery, between func()) []string {
	var out []string
	for page := 0; page < 1000; page++ {
		ds, next, err := tr.List(context.Background(), f.acct, q)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, d := range ds {
			out = append(out, d.ID)
		}
		if next == "" {
			return out
		}
		q.PageToken = next
		if between != nil {
			between()
		}
	}
	f.t.Fatal("listing did not end")
	return nil
}

func TestEveryArchivedDeliveryReadsBackWithItsAttemptsThroughBothTiers(t *testing.T) {
	f := newFixture(t)
	ids := f.publish(40)
	f.finish(delivery.StatusSucceeded)
	f.drain()
	tr := f.tiers()
	for _, id := range ids {
		d, atts, err := tr.Get(context.Background(), f.acct, id)
		if err != nil || d.Status != delivery.StatusSucceeded || len(atts) != 1 || atts[0].StatusCode != 200 {
			t.Fatalf("Get(%s) = %+v, %d attempts, %v", id, d, len(atts), err)
		}
	}
	if _, _, err := tr.Get(context.Background(), "acct_other", ids[0]); !errors.Is(err, apierr.ErrNotFound) {
		t.Fatalf("another account's delivery: %v", err)
	}
	got := f.listAll(tr, delivery.ListQuery{PageSize: 7, Status: delivery.StatusSucceeded, EndpointID: f.ep}, nil)
	if len(got) != len(ids) {
		t.Fatalf("listed %d, want %d", len(got), len(ids))
	}
	byEvent := f.listAll(tr, delivery.ListQuery{PageSize: 5, EventID: mustGet(t, tr, f.acct, ids[3]).EventID}, nil)
	if len(byEvent) != 1 || byEvent[0] != ids[3] {
		t.Fatalf("event filter listed %v", byEvent)
	}
}

func mustGet(t *testing.T, tr *Tiers, acct, id string) *delivery.Delivery {
	d, _, err := tr.Get(context.Background(), acct, id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestAListingWhileRecordsMoveNeitherSkipsNorRepeats: pages are read
// while the archiver moves records between them.
func TestAListingWhileRecordsMoveNeitherSkipsNorRepeats(t *testing.T) {
	f := newFixture(t)
	ids := f.publish(300)
	f.finish(delivery.StatusFailed)
	f.arch.batch = 20 // a few records move between two pages
	tr := f.tiers()
	got := f.listAll(tr, delivery.ListQuery{PageSize: 10}, func() {
		if _, err := f.arch.RunOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	want := append([]string(nil), ids...)
	sort.Sort(sort.Reverse(sort.StringSlice(want)))
	if len(got) != len(want) {
		t.Fatalf("listed %d, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("position %d: %s, want %s (skipped or repeated)", i, got[i], want[i])
		}
	}
	if n, _, _ := f.q.BacklogStats(context.Background(), time.Now()); n == 0 {
		t.Log("everything moved during the listing")
	}
}

// TestRetryAndReplayOfArchivedFailuresSendTheSameBytes: a failure in
// history comes back to Redis with its version continued and its event's
// payload byte-identical, and moves back when it ends again.
func TestRetryAndReplayOfArchivedFailuresSendTheSameBytes(t *testing.T) {
	f := newFixture(t)
	ids := f.publish(5)
	f.finish(delivery.StatusFailed)
	f.drain()
	tr := f.tiers()
	ctx := context.Background()
	before := mustGet(t, tr, f.acct, ids[0])
	ev, err := f.store.GetEvent(ctx, f.acct, before.EventID)
	if err != nil {
		t.Fatal(err)
	}
	ent := auditlog.New(f.acct, auditlog.Actor{Type: auditlog.ActorSystem}, auditlog.DeliveryRetry, ids[0], "retry", time.Now())
	if ok, err := tr.Requeue(ctx, f.acct, ids[0], time.Now(), ent); !ok || err != nil {
		t.Fatalf("Requeue of an archived delivery = %v, %v", ok, err)
	}
	// The restore that revived it wrote the retry's entry, once.
	if got, err := auditlog.ShardLive(ctx, f.rdb, f.acct); err != nil || len(got) != 1 || got[0].ID != ent.ID {
		t.Fatalf("audit entries after the retry of an archived delivery = %+v, %v; want %s", got, err, ent.ID)
	}
	live, atts, err := f.q.Get(ctx, ids[0])
	if err != nil || live.Status != delivery.StatusPending || live.Version <= before.Version || len(atts) != 1 {
		t.Fatalf("restored %+v (%d attempts), %v; want pending above version %d", live, len(atts), err, before.Version)
	}
	if string(live.Body) != string(ev.Payload) {
		t.Fatalf("restored body %q, want the event's %q", live.Body, ev.Payload)
	}
	if ok, _ := f.rdb.Exists(ctx, eventstore.Key(before.EventID)).Result(); ok != 0 {
		t.Fatal("the event came back to Redis; the delivery carries its payload instead")
	}
	// Listed once, live.
	all := f.listAll(tr, delivery.ListQuery{PageSize: 100}, nil)
	if len(all) != len(ids) {
		t.Fatalf("listed %d while one is live again, want %d", len(all), len(ids))
	}
	// Replay of the endpoint: the other four come back with a fresh round.
	found, err := tr.Find(ctx, f.acct, f.ep, []delivery.Status{delivery.StatusFailed, delivery.StatusParked}, time.Now().Add(-time.Hour), 100)
	if err != nil || len(found) != len(ids)-1 {
		t.Fatalf("Find = %v, %v; want the %d still failed", found, err, len(ids)-1)
	}
	n, err := tr.Restart(ctx, f.acct, found, []delivery.Status{delivery.StatusFailed, delivery.StatusParked}, time.Now())
	if err != nil || n != len(found) {
		t.Fatalf("Restart = %d, %v", n, err)
	}
	r, _, _ := f.q.Get(ctx, found[0])
	if r.Base != 1 || r.Status != delivery.StatusPending {
		t.Fatalf("replayed %+v; want a fresh round (base 1)", r)
	}
	// They end again and move back, at their higher versions.
	f.finish(delivery.StatusSucceeded)
	f.drain()
	if left := f.liveKeys(); len(left) > 0 {
		t.Fatalf("Redis still holds %v", left)
	}
	for _, id := range ids {
		h, hatts, err := f.store.GetDelivery(ctx, f.acct, id)
		if err != nil || h.Status != "succeeded" || len(hatts) != 2 || len(h.Body) != 0 {
			t.Fatalf("history has %+v with %d attempts, %v", h, len(hatts), err)
		}
	}
}

func TestHistoryReadsAnswerUnavailableWhilePostgresIsDown(t *testing.T) {
	f := newFixture(t)
	ids := f.publish(2)
	tr := &Tiers{Q: f.q, Events: f.events, Store: &history.Lazy{}} // never connected
	if _, _, err := tr.List(context.Background(), f.acct, delivery.ListQuery{PageSize: 10}); !errors.Is(err, apierr.ErrUnavailable) {
		t.Fatalf("List without history = %v, want Unavailable", err)
	}
	if _, _, err := tr.Get(context.Background(), f.acct, ids[0]); err != nil {
		t.Fatalf("Get of a live delivery without history = %v", err)
	}
	if _, _, err := tr.Get(context.Background(), f.acct, "dlv_01KBXYZ0000000000000000000"); !errors.Is(err, apierr.ErrUnavailable) {
		t.Fatalf("Get of a delivery not live without history = %v, want Unavailable", err)
	}
}

// TestParkedWorkMovesToHistoryAndResumesInPublishOrder: thousands parked
// across endpoints leave Redis after PARKED_MOVE_AFTER and come back, all
// of them, in publish order, when their endpoint is enabled.
func TestParkedWorkMovesToHistoryAndResumesInPublishOrder(t *testing.T) {
	f := newFixture(t)
	f.q.SetParkedMoveAfter(time.Millisecond)
	ctx := context.Background()
	eps := []string{f.ep}
	var all []string
	perEndpoint := map[string][]string{}
	for i := 0; i < 3; i++ {
		if i > 0 {
			f.ep = ids2(i)
			eps = append(eps, f.ep)
		}
		got := f.publish(1000)
		perEndpoint[f.ep] = got
		all = append(all, got...)
	}
	f.finish(delivery.StatusParked)
	time.Sleep(5 * time.Millisecond)
	f.drain()
	if left := f.liveKeys(); len(left) > 0 {
		t.Fatalf("parked work still in Redis: %d keys", len(left))
	}
	tr := f.tiers()
	groups, err := tr.Parked(ctx, 100)
	if err != nil || len(groups) != len(eps) {
		t.Fatalf("Parked = %+v, %v; want %d endpoints in history", groups, err, len(eps))
	}
	for _, ep := range eps {
		n, err := tr.ResumeHistory(ctx, f.acct, ep, time.Now())
		if err != nil || n != 1000 {
			t.Fatalf("ResumeHistory(%s) = %d, %v", ep, n, err)
		}
	}
	// Every one comes back (pages are due 1 ms apart in publish order;
	// within a page the claim goes shard by shard).
	var claimed []string
	for {
		now := time.Now().Add(time.Second)
		jobs, _, err := f.q.Claim(ctx, now, now.Add(time.Minute), 10000)
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) == 0 {
			break
		}
		for _, j := range jobs {
			if j.Delivery.Body == nil || j.Delivery.Base != 0 && j.Delivery.Base != j.Delivery.Attempts {
				t.Fatalf("restored %+v without its payload or a fresh round", j.Delivery)
			}
			claimed = append(claimed, j.Delivery.ID)
		}
	}
	if len(claimed) != len(all) {
		t.Fatalf("claimed %d of %d resumed", len(claimed), len(all))
	}
	if groups, _ := tr.Parked(ctx, 100); len(groups) != 0 {
		t.Fatalf("still parked in history: %+v", groups)
	}
	for _, ep := range eps {
		ds, _, err := f.store.ListDeliveries(ctx, f.acct, historyParked(ep))
		if err != nil || len(ds) != 0 {
			t.Fatalf("history still holds %d parked of %s: %v", len(ds), ep, err)
		}
	}
}

// A resume that runs between the archiver's commit of parked work and its
// delete from Redis (the endpoint enabled in that instant) restores
// nothing of it (Redis still holds it) and must not unpark it either: the
// delete that follows removes the Redis copy, and history's is then the
// only one, which the next resume brings back.
func TestAResumeBetweenTheCommitAndTheDeleteLosesNothing(t *testing.T) {
	f := newFixture(t)
	f.q.SetParkedMoveAfter(time.Millisecond)
	ctx := context.Background()
	id := f.publish(1)[0]
	f.finish(delivery.StatusParked)
	time.Sleep(5 * time.Millisecond)
	tr := f.tiers()
	f.arch.afterCommit = func() error {
		_, err := tr.ResumeHistory(ctx, f.acct, f.ep, time.Now())
		return err
	}
	f.drain()
	f.arch.afterCommit = nil
	if _, _, err := f.q.Get(ctx, id); err == nil {
		t.Fatal("the archiver's delete did not happen")
	}
	if d, _, err := tr.Get(ctx, f.acct, id); err != nil || d.Status != delivery.StatusParked {
		t.Fatalf("after the race the delivery reads %+v, %v; want parked in history", d, err)
	}
	if n, err := tr.ResumeHistory(ctx, f.acct, f.ep, time.Now()); err != nil || n != 1 {
		t.Fatalf("the next resume = %d, %v; want 1", n, err)
	}
	now := time.Now().Add(time.Second)
	jobs, _, err := f.q.Claim(ctx, now, now.Add(time.Minute), 10)
	if err != nil || len(jobs) != 1 || jobs[0].Delivery.ID != id {
		t.Fatalf("claimed %+v, %v; want %s", jobs, err, id)
	}
}
