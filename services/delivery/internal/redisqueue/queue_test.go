package redisqueue

import (
	"context"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

func newDelivery(id string, created, due time.Time) delivery.Delivery {
	return delivery.Delivery{
		ID: id, EventID: "evt_" + id, EndpointID: "ep_1", AccountID: "acct_1", EventType: "upload.completed",
		Status: delivery.StatusPending, CreateTime: created, UpdateTime: created, NextTime: due,
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}
}

func TestKeysShareTheShardTag(t *testing.T) {
	id := delivery.DeliveryID("evt_01KBXYZ0000000000000000000", "ep_1")
	n := Shard(id)
	tag := "{s" + strconv.Itoa(n) + "}"
	for _, k := range []string{ScheduleKey(id), DeliveryKey(id), AttemptsKey(id), parkedKey(n)} {
		if !strings.Contains(k, tag) {
			t.Errorf("%s lacks the shard tag %s", k, tag)
		}
	}
	if got := DeliveryKey(id); got != "wh:dlv:"+tag+":"+id {
		t.Errorf("DeliveryKey = %s", got)
	}
	if got := accountKey("acct_1"); got != "wh:{a:acct_1}:dlv" {
		t.Errorf("accountKey = %s", got)
	}
}

func TestClaimLeaseComplete(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	created, err := q.Schedule(ctx, []delivery.Delivery{
		newDelivery("dlv_due", now, now),
		newDelivery("dlv_later", now, now.Add(time.Minute)),
	})
	if err != nil || !created[0] || !created[1] {
		t.Fatalf("Schedule = %v, %v", created, err)
	}
	again, err := q.Schedule(ctx, []delivery.Delivery{newDelivery("dlv_due", now, now)})
	if err != nil || again[0] {
		t.Fatalf("second Schedule = %v, %v", again, err)
	}

	lease := now.Add(15 * time.Second)
	jobs, next, err := q.Claim(ctx, now, lease, 10)
	if err != nil || len(jobs) != 1 || jobs[0].Delivery.ID != "dlv_due" {
		t.Fatalf("Claim = %v, %v", jobs, err)
	}
	if d := jobs[0].Delivery; d.TraceParent == "" || d.AccountID != "acct_1" || d.Attempts != 0 {
		t.Fatalf("claimed delivery = %+v", d)
	}
	if !next.Equal(lease) {
		t.Fatalf("next = %v, want the claimed item's lease end %v (earlier than the other's due time)", next, lease)
	}
	// Leased: not claimable again until the lease ends.
	if more, _, _ := q.Claim(ctx, now.Add(time.Second), lease.Add(time.Second), 10); len(more) != 0 {
		t.Fatalf("claimed a leased item: %v", more)
	}
	// A wrong lease cannot complete.
	stale := jobs[0]
	stale.LeaseUntil = lease.Add(-time.Second)
	att := &delivery.Attempt{Number: 1, Start: now, StatusCode: 500, ErrorType: delivery.ErrorHTTPStatus, Error: "HTTP 500"}
	if ok, _, err := q.Complete(ctx, stale, delivery.Outcome{Status: delivery.StatusFailed, Attempt: att, Now: now}); ok || err != nil {
		t.Fatalf("stale Complete = %v, %v", ok, err)
	}
	retryAt := now.Add(200 * time.Millisecond)
	if ok, _, err := q.Complete(ctx, jobs[0], delivery.Outcome{Status: delivery.StatusPending, Next: retryAt, Attempt: att, Now: now}); !ok || err != nil {
		t.Fatalf("Complete = %v, %v", ok, err)
	}
	d, atts, err := q.Get(ctx, "dlv_due")
	if err != nil || d.Status != delivery.StatusPending || d.Attempts != 1 || d.LastCode != 500 || !d.NextTime.Equal(retryAt) || len(atts) != 1 {
		t.Fatalf("Get = %+v, %v, %v", d, atts, err)
	}
	// A retrying delivery never expires: its schedule ends it (it used to
	// carry DELIVERY_RETENTION + the wait, which could drop live work).
	if ttl := srv.Client.PTTL(ctx, DeliveryKey("dlv_due")).Val(); ttl != -1 {
		t.Fatalf("a retrying delivery expires in %v, want no TTL", ttl)
	}
	// Released work is due at once.
	jobs, _, _ = q.Claim(ctx, retryAt, retryAt.Add(15*time.Second), 10)
	if len(jobs) != 1 {
		t.Fatalf("retry not claimable: %v", jobs)
	}
	if err := q.Release(ctx, jobs[0], retryAt); err != nil {
		t.Fatal(err)
	}
	if jobs, _, _ = q.Claim(ctx, retryAt, retryAt.Add(15*time.Second), 10); len(jobs) != 1 {
		t.Fatalf("released item not claimable: %v", jobs)
	}
	ok := &delivery.Attempt{Number: 2, Start: retryAt, StatusCode: 200}
	if done, _, err := q.Complete(ctx, jobs[0], delivery.Outcome{Status: delivery.StatusSucceeded, Attempt: ok, Now: retryAt}); !done || err != nil {
		t.Fatalf("Complete = %v, %v", done, err)
	}
	if d, atts, _ := q.Get(ctx, "dlv_due"); d.Status != delivery.StatusSucceeded || d.Attempts != 2 || len(atts) != 2 || d.LastError != "" {
		t.Fatalf("after success: %+v, %d attempts", d, len(atts))
	}
	// An item whose hash has expired is dropped from the schedule by the claim.
	if err := srv.Client.Del(ctx, DeliveryKey("dlv_later")).Err(); err != nil {
		t.Fatal(err)
	}
	if jobs, _, _ = q.Claim(ctx, now.Add(2*time.Minute), now.Add(3*time.Minute), 10); len(jobs) != 0 {
		t.Fatalf("claimed an expired delivery: %v", jobs)
	}
	if srv.Client.ZScore(ctx, ScheduleKey("dlv_later"), "dlv_later").Err() == nil {
		t.Fatal("expired delivery still scheduled")
	}
}

func TestScheduleSurvivesScriptFlush(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	if err := srv.Client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if created, err := q.Schedule(ctx, []delivery.Delivery{newDelivery("dlv_1", now, now)}); err != nil || !created[0] {
		t.Fatalf("Schedule after SCRIPT FLUSH = %v, %v", created, err)
	}
}

// TestReleaseAll hands several leased jobs back in one pipeline, each due
// at its own time; a job whose lease is no longer held is left alone.
func TestReleaseAll(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	var ds []delivery.Delivery
	for i := range 3 {
		ds = append(ds, newDelivery("dlv_"+strconv.Itoa(i), now, now))
	}
	if _, err := q.Schedule(ctx, ds); err != nil {
		t.Fatal(err)
	}
	lease := now.Add(15 * time.Second)
	jobs, _, err := q.Claim(ctx, now, lease, 10)
	if err != nil || len(jobs) != 3 {
		t.Fatalf("Claim = %v, %v", jobs, err)
	}
	stale := jobs[2]
	stale.LeaseUntil = lease.Add(-time.Second) // another claim holds it now
	due := []time.Time{now.Add(time.Second), now.Add(2 * time.Second), now.Add(3 * time.Second)}
	srv.Client.ScriptFlush(ctx) // as after a Redis restart: the scripts are sent again
	if err := q.ReleaseAll(ctx, []delivery.Job{jobs[0], jobs[1], stale}, due); err != nil {
		t.Fatal(err)
	}
	for i, want := range []time.Time{due[0], due[1], lease} {
		id := jobs[i].Delivery.ID
		score := srv.Client.ZScore(ctx, ScheduleKey(id), id).Val()
		if int64(score) != want.UnixMilli() {
			t.Errorf("%s due %v, want %v", id, time.UnixMilli(int64(score)), want)
		}
	}
}

// TestAttemptLogKeepsTheLast: the attempt log keeps the last KeepAttempts
// attempts and lives as long as the delivery.
func TestAttemptLogKeepsTheLast(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	if _, err := q.Schedule(ctx, []delivery.Delivery{newDelivery("dlv_log", now, now)}); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= KeepAttempts+2; n++ {
		at := now.Add(time.Duration(n) * time.Millisecond)
		jobs, _, err := q.Claim(ctx, at, at.Add(time.Minute), 1)
		if err != nil || len(jobs) != 1 {
			t.Fatalf("attempt %d: Claim = %d jobs, %v", n, len(jobs), err)
		}
		att := &delivery.Attempt{Number: n, Start: at, StatusCode: 500, ErrorType: delivery.ErrorHTTPStatus, Error: "HTTP 500"}
		if ok, _, err := q.Complete(ctx, jobs[0], delivery.Outcome{Status: delivery.StatusPending, Next: at, Attempt: att, Now: at}); !ok || err != nil {
			t.Fatalf("attempt %d: Complete = %v, %v", n, ok, err)
		}
	}
	d, atts, err := q.Get(ctx, "dlv_log")
	if err != nil {
		t.Fatal(err)
	}
	if len(atts) != KeepAttempts || atts[0].Number != 3 || atts[len(atts)-1].Number != KeepAttempts+2 {
		t.Fatalf("log holds %d attempts, %d..%d; want the last %d", len(atts), atts[0].Number, atts[len(atts)-1].Number, KeepAttempts)
	}
	if d.Attempts != KeepAttempts+2 || d.LastCode != 500 || d.FirstAttempt.IsZero() {
		t.Errorf("delivery = attempts %d, code %d, first %v", d.Attempts, d.LastCode, d.FirstAttempt)
	}
	if h, l := srv.Client.PTTL(ctx, DeliveryKey("dlv_log")).Val(), srv.Client.PTTL(ctx, AttemptsKey("dlv_log")).Val(); h != -1 || l != -1 {
		t.Errorf("attempt log ttl %v, delivery ttl %v: neither may expire (the log lives as long as the delivery)", l, h)
	}
}

// TestAttemptKeepsTheHeadersHistoryKeeps: the live attempt log stores the
// request headers history.KeptHeaders keeps (not the derived ones, nor the
// event's type and id), so an attempt reads the same in both tiers.
func TestAttemptKeepsTheHeadersHistoryKeeps(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	d := newDelivery("dlv_hdr", now, now)
	if _, err := q.Schedule(ctx, []delivery.Delivery{d}); err != nil {
		t.Fatal(err)
	}
	jobs, _, err := q.Claim(ctx, now, now.Add(time.Minute), 1)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("Claim = %v, %v", jobs, err)
	}
	sent := map[string]string{
		"Content-Type": "application/json", "User-Agent": "VoxScriber-Webhooks/1.0", "X-Webhook-Attempt": "1",
		"Traceparent":     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"X-Webhook-Event": d.EventType, "X-Webhook-Id": d.EventID,
		"Webhook-Id": d.EventID, "Webhook-Signature": "v1,abc=", "X-Tenant": "t1",
	}
	att := &delivery.Attempt{Number: 1, Start: now, StatusCode: 200, RequestHeaders: sent}
	if ok, _, err := q.Complete(ctx, jobs[0], delivery.Outcome{Status: delivery.StatusSucceeded, Attempt: att, Now: now}); !ok || err != nil {
		t.Fatalf("Complete = %v, %v", ok, err)
	}
	_, atts, err := q.Get(ctx, "dlv_hdr")
	if err != nil || len(atts) != 1 {
		t.Fatalf("Get = %v, %v", atts, err)
	}
	want := map[string]string{"Webhook-Id": d.EventID, "Webhook-Signature": "v1,abc=", "X-Tenant": "t1"}
	if got := atts[0].RequestHeaders; !reflect.DeepEqual(got, want) {
		t.Errorf("stored headers %v, want %v", got, want)
	}
	if len(sent) != 9 {
		t.Errorf("Complete changed the caller's headers: %v", sent)
	}
}

// TestDeliveryRecordsNeverExpire: a delivery record leaves Redis only when
// the archiver deletes it after the history commit, so none carries a TTL
// (DELIVERY_RETENTION used to drop records a long PostgreSQL outage left
// waiting): retrying, parked, ended, a Send Test's and a restored one; and
// a record an earlier build wrote with a TTL is adopted by the next write
// or by the archiver's read (TakeEnded).
func TestDeliveryRecordsNeverExpire(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	q := New(srv.Client, time.Hour)
	now := time.Now()
	ds := []delivery.Delivery{newDelivery("dlv_retry", now, now), newDelivery("dlv_park", now, now), newDelivery("dlv_end", now, now), newDelivery("dlv_old", now, now)}
	if _, err := q.Schedule(ctx, ds); err != nil {
		t.Fatal(err)
	}
	noTTL := func(when string, keys ...string) {
		t.Helper()
		for _, k := range keys {
			if ttl := srv.Client.PTTL(ctx, k).Val(); ttl != -1 {
				t.Errorf("%s: %s expires in %v, want no TTL", when, k, ttl)
			}
		}
	}
	// dlv_old as the previous build left it: a TTL on both keys.
	srv.Client.PExpire(ctx, DeliveryKey("dlv_old"), time.Hour)
	srv.Client.RPush(ctx, AttemptsKey("dlv_old"), `{}`)
	srv.Client.PExpire(ctx, AttemptsKey("dlv_old"), time.Hour)
	jobs, _, err := q.Claim(ctx, now, now.Add(time.Minute), 10)
	if err != nil || len(jobs) != 4 {
		t.Fatalf("Claim = %d jobs, %v", len(jobs), err)
	}
	for _, j := range jobs {
		att := &delivery.Attempt{Number: 1, Start: now, StatusCode: 500, ErrorType: delivery.ErrorHTTPStatus, Error: "HTTP 500"}
		o := delivery.Outcome{Status: delivery.StatusFailed, Attempt: att, Now: now}
		switch j.Delivery.ID {
		case "dlv_retry":
			o.Status, o.Next = delivery.StatusPending, now.Add(time.Hour)
		case "dlv_park":
			o.Status, o.Attempt = delivery.StatusParked, nil
		}
		if ok, _, err := q.Complete(ctx, j, o); !ok || err != nil {
			t.Fatalf("Complete %s = %v, %v", j.Delivery.ID, ok, err)
		}
	}
	for _, id := range []string{"dlv_retry", "dlv_end", "dlv_old"} {
		noTTL("after Complete", DeliveryKey(id), AttemptsKey(id))
	}
	noTTL("parked", DeliveryKey("dlv_park"))

	test := newDelivery("dlv_test", now, now)
	test.Test, test.Status = true, delivery.StatusSucceeded
	if err := q.RecordTest(ctx, test, delivery.Attempt{Number: 1, Start: now, StatusCode: 200}); err != nil {
		t.Fatal(err)
	}
	noTTL("a Send Test delivery", DeliveryKey("dlv_test"), AttemptsKey("dlv_test"))

	back := newDelivery("dlv_back", now, now)
	back.Version = 7
	if ok, err := q.Restore(ctx, []delivery.Delivery{back}, [][]delivery.Attempt{{{Number: 1, Start: now, StatusCode: 500}}}, now); err != nil || !ok[0] {
		t.Fatalf("Restore = %v, %v", ok, err)
	}
	noTTL("restored from history", DeliveryKey("dlv_back"), AttemptsKey("dlv_back"))

	// An ended record with a TTL (written by the previous build) is
	// PERSISTed when the archiver reads it, before anything else happens.
	srv.Client.PExpire(ctx, DeliveryKey("dlv_end"), time.Hour)
	srv.Client.PExpire(ctx, AttemptsKey("dlv_end"), time.Hour)
	got, err := q.TakeEnded(ctx, Shard("dlv_end"), now.Add(time.Second), 100)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(got, func(e Ended) bool { return e.Delivery.ID == "dlv_end" }) {
		t.Fatalf("TakeEnded did not return dlv_end: %v", got)
	}
	noTTL("after TakeEnded", DeliveryKey("dlv_end"), AttemptsKey("dlv_end"))
}
