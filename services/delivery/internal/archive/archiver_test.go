package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/pgtest"
	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
	"github.com/voxscriber/webhooks/services/delivery/internal/redisqueue"
)

var pg *pgtest.Server

func TestMain(m *testing.M) {
	var err error
	pg, err = pgtest.Launch()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	pg.Close()
	os.Exit(code)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type fixture struct {
	t      *testing.T
	rdb    redis.UniversalClient
	q      *redisqueue.Queue
	events *eventstore.Store
	store  *history.Store
	lazy   *history.Lazy
	arch   *Archiver
	acct   string
	ep     string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := redistest.Start(t)
	s, err := history.Open(context.Background(), pg.NewDatabase(t), history.Config{
		Retention: 30 * 24 * time.Hour, ParkedRetention: 7 * 24 * time.Hour, ScheduleTotal: 3 * time.Hour, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	f := &fixture{t: t, rdb: srv.Client, q: redisqueue.New(srv.Client, time.Hour), events: eventstore.New(srv.Client, time.Hour),
		store: s, lazy: history.Opened(s), acct: ids.New(ids.Account, time.Now()), ep: ids.New(ids.Endpoint, time.Now())}
	f.arch = New(f.q, f.events, f.lazy, quiet)
	return f
}

// publish stores n events (fan-out done, one delivery each) and schedules
// their deliveries; it returns the delivery ids.
func (f *fixture) publish(n int) []string { return f.publishKey("", n) }

// publishKey is publish with the deliveries ordered by key (unordered when
// key is empty).
func (f *fixture) publishKey(key string, n int) []string {
	ctx := context.Background()
	now := time.Now()
	var ds []delivery.Delivery
	var out []string
	for i := 0; i < n; i++ {
		evID := ids.New(ids.Event, now)
		if err := f.events.Put(ctx, &eventstore.Event{ID: evID, AccountID: f.acct, Type: "upload.completed",
			Payload: []byte(fmt.Sprintf(`{"id":%q,"n":%d}`, evID, i)), CreateTime: now, UploadID: "up_" + evID}); err != nil {
			f.t.Fatal(err)
		}
		if err := f.events.MarkFannedOut(ctx, evID, 1); err != nil {
			f.t.Fatal(err)
		}
		id := delivery.DeliveryID(evID, f.ep)
		if key != "" {
			id = delivery.OrderedDeliveryID(evID, f.ep, key)
		}
		ds = append(ds, delivery.Delivery{ID: id, EventID: evID, EndpointID: f.ep, AccountID: f.acct, OrderingKey: key,
			EventType: "upload.completed", Status: delivery.StatusPending, CreateTime: now, UpdateTime: now, NextTime: now})
		out = append(out, id)
	}
	if _, err := f.q.Schedule(ctx, ds); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// finish claims everything due and records st with one attempt each.
func (f *fixture) finish(st delivery.Status) {
	ctx := context.Background()
	for {
		now := time.Now()
		jobs, _, err := f.q.Claim(ctx, now, now.Add(time.Minute), 1000)
		if err != nil {
			f.t.Fatal(err)
		}
		if len(jobs) == 0 {
			return
		}
		for _, j := range jobs {
			a := &delivery.Attempt{Number: j.Delivery.Attempts + 1, Start: now, StatusCode: 200, Latency: time.Millisecond, URL: "https://example.test/hook"}
			if st != delivery.StatusSucceeded {
				a.StatusCode, a.ErrorType, a.Error = 500, delivery.ErrorHTTPStatus, "HTTP 500"
			}
			if ok, _, err := f.q.Complete(ctx, j, delivery.Outcome{Status: st, Attempt: a, Now: now}); !ok || err != nil {
				f.t.Fatalf("Complete = %v, %v", ok, err)
			}
		}
	}
}

func (f *fixture) drain() {
	for i := 0; i < 100; i++ {
		n, err := f.arch.RunOnce(context.Background())
		if err != nil {
			f.t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

func (f *fixture) liveKeys() []string {
	keys, err := f.rdb.Keys(context.Background(), "wh:*").Result()
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		if t := f.rdb.Type(context.Background(), k).Val(); k[:7] == "wh:dlv:" || k[:7] == "wh:evt:" || (k[:8] == "wh:{a:ac" && f.rdb.ZCard(context.Background(), k).Val() > 0 && t == "zset") {
			out = append(out, k)
		}
	}
	return out
}

func TestEndedDeliveriesAndTheirEventsLeaveRedisForHistory(t *testing.T) {
	f := newFixture(t)
	ids := f.publish(600) // more than one batch
	f.finish(delivery.StatusSucceeded)
	f.drain()
	if left := f.liveKeys(); len(left) > 0 {
		t.Fatalf("Redis still holds %d delivery/event/index keys, e.g. %v", len(left), left[:min(3, len(left))])
	}
	for _, id := range ids {
		d, atts, err := f.store.GetDelivery(context.Background(), f.acct, id)
		if err != nil {
			t.Fatalf("history lacks %s: %v", id, err)
		}
		if d.Status != history.StatusSucceeded || len(atts) != 1 || d.Version == 0 || d.UploadID == "" {
			t.Fatalf("history has %s as %+v with %d attempts", id, d, len(atts))
		}
		ev, err := f.store.GetEvent(context.Background(), f.acct, d.EventID)
		if err != nil || len(ev.Payload) == 0 {
			t.Fatalf("history lacks event %s: %v", d.EventID, err)
		}
	}
}

func TestACrashBetweenCommitAndDeleteIsFinishedByTheNextPass(t *testing.T) {
	f := newFixture(t)
	ids := f.publish(20)
	f.finish(delivery.StatusFailed)
	f.arch.afterCommit = func() error { return errors.New("killed") }
	if _, err := f.arch.RunOnce(context.Background()); err == nil {
		t.Fatal("the simulated crash did not stop the pass")
	}
	for _, id := range ids[:1] {
		if _, _, err := f.q.Get(context.Background(), id); err != nil {
			t.Fatalf("deleted before the crash point: %v", err)
		}
	}
	f.arch.afterCommit = nil
	f.drain()
	if left := f.liveKeys(); len(left) > 0 {
		t.Fatalf("the next pass left %v", left)
	}
	ds, _, err := f.store.ListDeliveries(context.Background(), f.acct, history.DeliveryQuery{PageSize: 100})
	if err != nil || len(ds) != len(ids) {
		t.Fatalf("history lists %d deliveries (want %d once each): %v", len(ds), len(ids), err)
	}
}

// TestACrashBetweenTheDeliveriesAndTheEventsDeleteLeavesNoEventBehind:
// a pass killed after deleting the archived deliveries and before deleting
// their done events (their deliveries are gone from the ended index, so
// nothing else names them) leaves them on the waiting list, and a later
// pass deletes them: none stays in Redis for good.
func TestACrashBetweenTheDeliveriesAndTheEventsDeleteLeavesNoEventBehind(t *testing.T) {
	f := newFixture(t)
	f.publish(10)
	f.finish(delivery.StatusSucceeded)
	f.arch.afterDeliveries = func() error { return errors.New("killed") }
	if _, err := f.arch.RunOnce(context.Background()); err == nil {
		t.Fatal("the simulated crash did not stop the pass")
	}
	if evs, _ := f.rdb.Keys(context.Background(), "wh:evt:*").Result(); len(evs) == 0 {
		t.Fatal("no event left at the crash point: the test does not reach it")
	}
	f.arch.afterDeliveries = nil
	later := time.Now().Add(time.Minute) // past the waiting list's grace
	f.arch.now = func() time.Time { return later }
	f.drain()
	if left := f.liveKeys(); len(left) > 0 {
		t.Fatalf("events left in Redis after the next pass: %v", left)
	}
}

func TestARevivalRacingTheDeleteIsNeverDeleted(t *testing.T) {
	f := newFixture(t)
	ids := f.publish(3)
	f.finish(delivery.StatusFailed)
	revived := ids[1]
	f.arch.afterCommit = func() error {
		// A :retry between the commit and the delete.
		_, err := f.q.Requeue(context.Background(), revived, time.Now())
		return err
	}
	if _, err := f.arch.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	d, _, err := f.q.Get(context.Background(), revived)
	if err != nil || d.Status != delivery.StatusPending {
		t.Fatalf("the revived delivery was deleted or changed: %+v, %v", d, err)
	}
	// Its event may have left Redis meanwhile (it was done when marked,
	// and the event's delete cannot see the revival in another slot): the
	// revived delivery is still sent its payload, byte for byte (from
	// history then), never canceled.
	want := fmt.Sprintf(`{"id":%q,"n":%d}`, d.EventID, 1)
	for _, id := range []string{ids[0], ids[2]} {
		if _, _, err := f.q.Get(context.Background(), id); err == nil {
			t.Fatalf("%s was not deleted", id)
		}
	}
	// It ends again and moves again, at its higher version.
	f.arch.afterCommit = nil
	rcv := &receiver{}
	if outs := f.dispatchDue(f.dispatcher(rcv, true)); len(outs) != 1 || outs[0].Status != delivery.StatusSucceeded {
		t.Fatalf("the revived delivery's attempt: %+v, want succeeded", outs)
	}
	if len(rcv.bodies) != 1 || string(rcv.bodies[0]) != want {
		t.Fatalf("the endpoint got %q, want %q", rcv.bodies, want)
	}
	f.drain()
	h, _, err := f.store.GetDelivery(context.Background(), f.acct, revived)
	if err != nil || h.Status != history.StatusSucceeded || h.Version <= d.Version {
		t.Fatalf("history has %+v, %v; want succeeded above version %d", h, err, d.Version)
	}
}

func TestPostgresDownKeepsTheBacklogInRedisAndItDrainsAfter(t *testing.T) {
	srv := redistest.Start(t)
	pgs := pgtest.StartServer(t)
	s, err := history.Open(context.Background(), pgs.URL, history.Config{
		Retention: 30 * 24 * time.Hour, ParkedRetention: 7 * 24 * time.Hour, ScheduleTotal: 3 * time.Hour, Logger: quiet, ConnectTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	f := &fixture{t: t, rdb: srv.Client, q: redisqueue.New(srv.Client, time.Hour), events: eventstore.New(srv.Client, time.Hour),
		store: s, lazy: history.Opened(s), acct: ids.New(ids.Account, time.Now()), ep: ids.New(ids.Endpoint, time.Now())}
	f.arch = New(f.q, f.events, f.lazy, quiet)
	pgtest.Kill(t, pgs)
	f.publish(50)
	f.finish(delivery.StatusSucceeded)
	if _, err := f.arch.RunOnce(context.Background()); err == nil {
		t.Fatal("archiving with PostgreSQL down succeeded")
	}
	n, _, err := f.q.BacklogStats(context.Background(), time.Now())
	if err != nil || n != 50 {
		t.Fatalf("backlog = %d, %v; want 50", n, err)
	}
	if err := pgs.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := f.arch.RunOnce(context.Background())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after PostgreSQL came back: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	f.drain()
	if n, _, _ := f.q.BacklogStats(context.Background(), time.Now()); n != 0 {
		t.Fatalf("backlog = %d after the restart", n)
	}
	if left := f.liveKeys(); len(left) > 0 {
		t.Fatalf("Redis still holds %v", left[:min(3, len(left))])
	}
}

func ids2(i int) string {
	return ids.New(ids.Endpoint, time.Now().Add(time.Duration(i)*time.Millisecond))
}

func historyParked(ep string) history.DeliveryQuery {
	return history.DeliveryQuery{EndpointID: ep, Statuses: []history.Status{history.StatusParked}, PageSize: 10}
}

// TestArchivedEventsLeaveTheAccountsEventList: once the archiver deleted
// an event it holds in history, the account's event list (ingestion's
// wh:{a:<acct>}:events) no longer names it; a live event stays listed.
func TestArchivedEventsLeaveTheAccountsEventList(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.publish(600) // more than one batch
	f.finish(delivery.StatusSucceeded)
	live := f.publish(1)
	keys, err := f.rdb.Keys(ctx, eventstore.Key("*")).Result()
	if err != nil || len(keys) != 601 {
		t.Fatalf("%d events in Redis, %v", len(keys), err)
	}
	for _, k := range keys { // as ingestion's index lists them
		id := k[len(eventstore.Key("")):]
		at, _ := ids.Time(id)
		if err := f.rdb.ZAdd(ctx, eventstore.ListKey(f.acct), redis.Z{Score: float64(at.UnixMilli()), Member: id}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	f.drain()
	d, _, err := f.q.Get(ctx, live[0])
	if err != nil {
		t.Fatal(err)
	}
	if left := f.rdb.ZRange(ctx, eventstore.ListKey(f.acct), 0, -1).Val(); len(left) != 1 || left[0] != d.EventID {
		t.Fatalf("the account's event list holds %d entries after archival (first %.3v), want only the live event %s", len(left), left, d.EventID)
	}
}

// TestTheBacklogNeverExpiresWhilePostgreSQLIsDown: ended and parked
// deliveries and their events wait in Redis with no TTL while history
// cannot take them (they used to carry DELIVERY_RETENTION, so a longer
// outage, or parked work past it, lost them unarchived); records the
// previous build wrote with a TTL are PERSISTed by the failing pass that
// read them; once PostgreSQL is back the pass moves them and they are gone.
// A retrying delivery and its event stay live, without a TTL either.
func TestTheBacklogNeverExpiresWhilePostgreSQLIsDown(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.q.SetParkedMoveAfter(time.Millisecond)
	ds := f.publish(3)
	now := time.Now()
	jobs, _, err := f.q.Claim(ctx, now, now.Add(time.Minute), 10)
	if err != nil || len(jobs) != 3 {
		t.Fatalf("Claim = %d, %v", len(jobs), err)
	}
	status := map[string]delivery.Status{ds[0]: delivery.StatusSucceeded, ds[1]: delivery.StatusParked, ds[2]: delivery.StatusPending}
	for _, j := range jobs {
		o := delivery.Outcome{Status: status[j.Delivery.ID], Now: now, Next: now.Add(time.Hour),
			Attempt: &delivery.Attempt{Number: 1, Start: now, StatusCode: 200, Latency: time.Millisecond, URL: "https://example.test/hook"}}
		if o.Status == delivery.StatusParked {
			o.Attempt = nil
		}
		if ok, _, err := f.q.Complete(ctx, j, o); !ok || err != nil {
			t.Fatalf("Complete = %v, %v", ok, err)
		}
	}
	keysOf := func(id string) []string {
		d, _, err := f.q.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return []string{redisqueue.DeliveryKey(id), redisqueue.AttemptsKey(id), eventstore.Key(d.EventID)}
	}
	var waiting, live []string
	waiting = append(append(waiting, keysOf(ds[0])...), keysOf(ds[1])[0], keysOf(ds[1])[2])
	live = keysOf(ds[2])
	noTTL := func(when string, keys []string) {
		t.Helper()
		for _, k := range keys {
			if ttl := f.rdb.PTTL(ctx, k).Val(); ttl != -1 {
				t.Errorf("%s: %s has PTTL %v, want -1 (no expiry)", when, k, ttl)
			}
		}
	}
	noTTL("ended and parked, before the archiver", waiting)
	noTTL("retrying", live)

	// The previous build's TTLs, then a pass whose commit fails: PostgreSQL
	// unreachable (a closed pool).
	for _, k := range waiting {
		f.rdb.PExpire(ctx, k, time.Hour)
	}
	time.Sleep(5 * time.Millisecond) // the parked one is due for history
	down, err := history.Open(ctx, pg.NewDatabase(t), history.Config{
		Retention: 30 * 24 * time.Hour, ParkedRetention: 7 * 24 * time.Hour, ScheduleTotal: 3 * time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	down.Close()
	broken := New(f.q, f.events, history.Opened(down), quiet)
	if _, err := broken.RunOnce(ctx); err == nil {
		t.Fatal("a pass against a closed PostgreSQL pool succeeded")
	}
	noTTL("after a failed pass", waiting)
	noTTL("retrying, after a failed pass", live)

	for n := range redisqueue.Shards { // PostgreSQL is back: the next process archives
		f.q.ReleaseShard(ctx, n, broken.owner)
	}
	f.drain()
	for _, k := range waiting {
		if f.rdb.Exists(ctx, k).Val() != 0 {
			t.Errorf("%s is still in Redis after archival", k)
		}
	}
	noTTL("retrying, after archival", live)
	for _, id := range ds[:2] {
		if _, _, err := f.store.GetDelivery(ctx, f.acct, id); err != nil {
			t.Errorf("history lacks %s: %v", id, err)
		}
	}
}

// TestAnEventWithNoDeliveryMovesToHistory: an event fanned out to no
// endpoint (nobody subscribed) has no delivery whose end would move it;
// the waiting list it is filed on at its fan-out does, so it leaves Redis
// and is read from history, like every other event.
func TestAnEventWithNoDeliveryMovesToHistory(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now()
	evID := ids.New(ids.Event, now)
	if err := f.events.Put(ctx, &eventstore.Event{ID: evID, AccountID: f.acct, Type: "upload.completed",
		Payload: []byte(`{"nobody":"listens"}`), CreateTime: now, UploadID: "up_none"}); err != nil {
		t.Fatal(err)
	}
	if err := f.events.MarkFannedOut(ctx, evID, 0); err != nil {
		t.Fatal(err)
	}
	f.arch.now = func() time.Time { return time.Now().Add(time.Minute) } // past the waiting list's grace
	f.drain()
	if n := f.rdb.Exists(ctx, eventstore.Key(evID)).Val(); n != 0 {
		t.Fatalf("the event is still in Redis")
	}
	if n := f.rdb.ZCard(ctx, eventstore.WaitKey(eventstore.WaitShard(evID))).Val(); n != 0 {
		t.Fatalf("the waiting list still holds %d events", n)
	}
	ev, err := f.store.GetEvent(ctx, f.acct, evID)
	if err != nil || string(ev.Payload) != `{"nobody":"listens"}` || ev.DeliveryCount != 0 {
		t.Fatalf("history has %+v, %v", ev, err)
	}
}

// TestADeliveryWaitsInRedisUntilItsEventsFanoutIsMarked: a publish that
// scheduled its delivery but failed before marking its fan-out is not
// acknowledged, and its retry runs the fan-out again. The delivery, sent
// and ended meanwhile, must still be in Redis then, or the retry's
// Schedule (an upsert in Redis) would create it again and send it twice.
// Once the fan-out is marked it moves, once.
func TestADeliveryWaitsInRedisUntilItsEventsFanoutIsMarked(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now()
	evID := ids.New(ids.Event, now)
	if err := f.events.Put(ctx, &eventstore.Event{ID: evID, AccountID: f.acct, Type: "upload.completed",
		Payload: []byte(`{"n":1}`), CreateTime: now}); err != nil {
		t.Fatal(err)
	}
	d := delivery.Delivery{ID: delivery.DeliveryID(evID, f.ep), EventID: evID, EndpointID: f.ep, AccountID: f.acct,
		EventType: "upload.completed", Status: delivery.StatusPending, CreateTime: now, UpdateTime: now, NextTime: now}
	if _, err := f.q.Schedule(ctx, []delivery.Delivery{d}); err != nil {
		t.Fatal(err)
	}
	f.finish(delivery.StatusSucceeded) // sent; the publish failed before marking its fan-out
	f.arch.now = func() time.Time { return time.Now().Add(time.Minute) }
	f.drain()
	again, err := f.q.Schedule(ctx, []delivery.Delivery{d}) // the producer's retry fans out again
	if err != nil {
		t.Fatal(err)
	}
	if again[0] {
		t.Fatal("the retried fan-out created the delivery again: it would be sent twice")
	}
	if err := f.events.MarkFannedOut(ctx, evID, 1); err != nil {
		t.Fatal(err)
	}
	f.arch.now = func() time.Time { return time.Now().Add(time.Hour) } // past the hold
	f.drain()
	if left := f.liveKeys(); len(left) > 0 {
		t.Fatalf("Redis still holds %v", left)
	}
	got, atts, err := f.store.GetDelivery(ctx, f.acct, d.ID)
	if err != nil || got.Status != history.StatusSucceeded || len(atts) != 1 {
		t.Fatalf("history: %+v, %d attempts, %v", got, len(atts), err)
	}
}

// TestAForkedCopyIsKeptAndSupersedesHistorys: history holds a copy of a
// delivery at a higher version although it was updated before the live
// copy ended: not a later state of it but another copy (its versions
// forked, e.g. revived from a row that was no longer current). The
// archiver must not delete the live copy as if history held it: it keeps
// it, renumbers it above history's version and archives it again, so that
// history ends up with what happened last.
func TestAForkedCopyIsKeptAndSupersedesHistorys(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := f.publish(1)[0]
	d, _, err := f.q.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	other := toHistoryDelivery(d, "")
	other.Version, other.Status, other.UpdateTime = 100, history.StatusFailed, time.Now().Add(-time.Hour)
	if _, err := f.store.Archive(ctx, history.Batch{Deliveries: []history.DeliveryRecord{{Delivery: other}}}); err != nil {
		t.Fatal(err)
	}
	f.finish(delivery.StatusSucceeded)
	f.drain() // finds history's copy newer: keeps and renumbers the live one
	if _, _, err := f.q.Get(ctx, id); err != nil {
		t.Fatalf("the live copy was deleted although history did not take it: %v", err)
	}
	f.drain() // archives it again, renumbered
	h, atts, err := f.store.GetDelivery(ctx, f.acct, id)
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != history.StatusSucceeded || h.Version <= 100 || len(atts) != 1 || atts[0].StatusCode != 200 {
		t.Fatalf("history holds %s at version %d with %d attempts; want the live copy's success above version 100", h.Status, h.Version, len(atts))
	}
	if left := f.liveKeys(); len(left) > 0 {
		t.Fatalf("Redis still holds %v", left)
	}
}
