package redisqueue

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

func pending(ep string, at time.Time) delivery.PendingDisable {
	return delivery.PendingDisable{AccountID: "acct_1", EndpointID: ep, URL: "https://hooks.example/x",
		Reason: "5 consecutive failed attempts", LastError: "HTTP 500", DecidedAt: at}
}

func TestDisableDecision(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	t0 := time.Now().Truncate(time.Millisecond)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	// A success after the event's first attempt: no disable.
	if err := q.MarkSuccess(ctx, "ep_1", at(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if ok, err := q.ClaimDisable(ctx, pending("ep_1", at(5*time.Second)), at(time.Second), false); err != nil || ok {
		t.Fatalf("with a success since: ClaimDisable = %v, %v", ok, err)
	}
	// An older success does not count; the decision is taken once.
	if ok, _ := q.ClaimDisable(ctx, pending("ep_1", at(6*time.Second)), at(3*time.Second), false); !ok {
		t.Fatal("no success since the first attempt: want disable")
	}
	if ok, _ := q.ClaimDisable(ctx, pending("ep_1", at(7*time.Second)), at(4*time.Second), false); ok {
		t.Fatal("second failure after the decision: want no second disable")
	}
	// A later round (after re-enabling) may disable again; a success
	// recorded earlier never lowers the mark.
	_ = q.MarkSuccess(ctx, "ep_1", at(time.Second))
	if ok, _ := q.ClaimDisable(ctx, pending("ep_1", at(9*time.Second)), at(8*time.Second), false); !ok {
		t.Fatal("new round: want disable")
	}
	// 410 forces the decision despite a recent success.
	_ = q.MarkSuccess(ctx, "ep_2", at(10*time.Second))
	if ok, _ := q.ClaimDisable(ctx, pending("ep_2", at(11*time.Second)), at(5*time.Second), true); !ok {
		t.Fatal("forced: want disable")
	}
	if ttl := srv.Client.PTTL(ctx, epStatKey("ep_2")).Val(); ttl <= 0 {
		t.Errorf("endpoint stats do not expire (ttl %v)", ttl)
	}
}

// TestDecisionAndPendingDisableShareASlot: the keys one decision writes
// together carry the endpoint's shard tag.
func TestDecisionAndPendingDisableShareASlot(t *testing.T) {
	tag := "{s" + strconv.Itoa(Shard("ep_1")) + "}"
	for _, k := range []string{epStatKey("ep_1"), disablesKey(Shard("ep_1")), disableJobKey("ep_1")} {
		if !strings.Contains(k, tag) {
			t.Errorf("%s lacks the tag %s", k, tag)
		}
	}
}

// TestDecisionIsStoredAsLeasedPendingWork: a decision is pending work that
// one claimer at a time holds, that comes back when its holder vanishes,
// keeps its progress, and goes when finished; a stale holder changes
// nothing.
func TestDecisionIsStoredAsLeasedPendingWork(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	if ok, err := q.ClaimDisable(ctx, pending("ep_1", now), now.Add(-time.Minute), false); !ok || err != nil {
		t.Fatalf("ClaimDisable = %v, %v", ok, err)
	}
	// A second decision of the same round adds nothing.
	if ok, _ := q.ClaimDisable(ctx, pending("ep_1", now.Add(time.Second)), now.Add(-time.Minute), false); ok {
		t.Fatal("decided twice")
	}
	got, err := q.ClaimDisables(ctx, now, now.Add(time.Minute), 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("ClaimDisables = %+v, %v", got, err)
	}
	p := got[0]
	if p.EndpointID != "ep_1" || p.AccountID != "acct_1" || p.URL != "https://hooks.example/x" || p.Reason == "" ||
		p.LastError != "HTTP 500" || !p.DecidedAt.Equal(now) || p.Notify || p.Tries != 0 {
		t.Fatalf("claimed %+v", p)
	}
	if again, _ := q.ClaimDisables(ctx, now.Add(time.Second), now.Add(time.Minute), 10); len(again) != 0 {
		t.Fatalf("claimed while leased: %+v", again)
	}
	// A failed try: due again later, its count kept.
	p.Tries = 1
	if ok, err := q.SaveDisable(ctx, p, now.Add(2*time.Second), "registry down"); !ok || err != nil {
		t.Fatalf("SaveDisable = %v, %v", ok, err)
	}
	if early, _ := q.ClaimDisables(ctx, now.Add(time.Second), now.Add(time.Minute), 10); len(early) != 0 {
		t.Fatalf("claimed before it was due: %+v", early)
	}
	got, _ = q.ClaimDisables(ctx, now.Add(2*time.Second), now.Add(time.Minute), 10)
	if len(got) != 1 || got[0].Tries != 1 {
		t.Fatalf("claimed after the backoff: %+v", got)
	}
	stale := got[0]
	// Its holder vanishes: at the lease's end another process takes over.
	got, _ = q.ClaimDisables(ctx, stale.LeaseUntil.Add(time.Millisecond), stale.LeaseUntil.Add(time.Minute), 10)
	if len(got) != 1 {
		t.Fatalf("not taken over after the lease: %+v", got)
	}
	fresh := got[0]
	stale.Notify = true
	if ok, _ := q.SaveDisable(ctx, stale, stale.LeaseUntil, ""); ok {
		t.Error("a stale holder saved progress")
	}
	if ok, _ := q.FinishDisable(ctx, stale); ok {
		t.Error("a stale holder finished it")
	}
	// The registry confirmed: only the notice is left, still held.
	fresh.Notify, fresh.Tries = true, 0
	if ok, _ := q.SaveDisable(ctx, fresh, fresh.LeaseUntil, ""); !ok {
		t.Fatal("holder could not save progress")
	}
	if ok, err := q.FinishDisable(ctx, fresh); !ok || err != nil {
		t.Fatalf("FinishDisable = %v, %v", ok, err)
	}
	if left, _ := q.ClaimDisables(ctx, now.Add(time.Hour), now.Add(2*time.Hour), 10); len(left) != 0 {
		t.Fatalf("left after finishing: %+v", left)
	}
	if n := srv.Client.Exists(ctx, disableJobKey("ep_1")).Val(); n != 0 {
		t.Error("pending disable hash left behind")
	}
}

// TestDecisionReadsStatsOfBeforeTheUpgrade: marks and decisions in the
// endpoint stats' former key still count.
func TestDecisionReadsStatsOfBeforeTheUpgrade(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	srv.Client.HSet(ctx, legacyEpStatKey("ep_ok"), "ok", now.Add(-time.Second).UnixMilli())
	srv.Client.HSet(ctx, legacyEpStatKey("ep_dis"), "dis", now.Add(-time.Second).UnixMilli())
	for _, ep := range []string{"ep_ok", "ep_dis"} {
		if ok, err := q.ClaimDisable(ctx, pending(ep, now), now.Add(-time.Minute), false); ok || err != nil {
			t.Errorf("%s: ClaimDisable = %v, %v; want no disable", ep, ok, err)
		}
	}
}

// TestSuccessMarkErrorsAreReturned: a mark the batch could not write is
// reported to its caller, not dropped.
func TestSuccessMarkErrorsAreReturned(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	srv.Client.Set(ctx, epStatKey("ep_bad"), "not a hash", 0) // the script's HGET fails: WRONGTYPE
	if err := q.MarkSuccess(ctx, "ep_bad", time.Now()); err == nil {
		t.Error("MarkSuccess of an unwritable mark returned nil")
	}
	if err := q.MarkSuccess(ctx, "ep_good", time.Now()); err != nil {
		t.Errorf("another endpoint's mark: %v", err)
	}
}

// TestConcurrentSuccessMarks: many successes of a few endpoints at once
// leave each endpoint's latest time, in fewer script calls than marks.
func TestConcurrentSuccessMarks(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	t0 := time.Now().Truncate(time.Millisecond)
	const n = 300
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := q.MarkSuccess(ctx, fmt.Sprintf("ep_%d", i%3), t0.Add(time.Duration(i)*time.Millisecond)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for e := range 3 {
		latest := t0.Add(time.Duration(n-3+e) * time.Millisecond).UnixMilli()
		if got, _ := srv.Client.HGet(ctx, epStatKey(fmt.Sprintf("ep_%d", e)), "ok").Int64(); got != latest {
			t.Errorf("ep_%d: ok %d, want the latest success %d", e, got, latest)
		}
	}
	if calls := commandCalls(t, srv, "evalsha") + commandCalls(t, srv, "eval"); calls >= n {
		t.Errorf("%d script calls for %d marks of 3 endpoints", calls, n)
	}
}

func TestParkRestartAndFind(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	ds := []delivery.Delivery{newDelivery("dlv_a", now, now), newDelivery("dlv_b", now, now), newDelivery("dlv_c", now, now)}
	if _, err := q.Schedule(ctx, ds); err != nil {
		t.Fatal(err)
	}
	jobs, _, err := q.Claim(ctx, now, now.Add(15*time.Second), 10)
	if err != nil || len(jobs) != 3 {
		t.Fatalf("Claim = %d, %v", len(jobs), err)
	}
	att := &delivery.Attempt{Number: 1, Start: now, StatusCode: 500, ErrorType: delivery.ErrorHTTPStatus, Error: "HTTP 500"}
	for _, j := range jobs {
		o := delivery.Outcome{Status: delivery.StatusParked, Now: now, LastError: "endpoint off"}
		switch j.Delivery.ID {
		case "dlv_b":
			o = delivery.Outcome{Status: delivery.StatusFailed, Now: now, Attempt: att}
		case "dlv_c":
			o = delivery.Outcome{Status: delivery.StatusSucceeded, Now: now, Attempt: &delivery.Attempt{Number: 1, Start: now, StatusCode: 200}}
		}
		if ok, _, err := q.Complete(ctx, j, o); !ok || err != nil {
			t.Fatalf("Complete %s = %v, %v", j.Delivery.ID, ok, err)
		}
	}
	d, _, _ := q.Get(ctx, "dlv_b")
	if !d.FirstAttempt.Equal(now) {
		t.Errorf("first attempt %v, want %v", d.FirstAttempt, now)
	}

	parked, err := q.Parked(ctx, 100)
	if err != nil || len(parked) != 1 || parked[0].EndpointID != "ep_1" || parked[0].AccountID != "acct_1" || len(parked[0].IDs) != 1 || parked[0].IDs[0] != "dlv_a" {
		t.Fatalf("Parked = %+v, %v", parked, err)
	}
	found, err := q.Find(ctx, "acct_1", "ep_1", []delivery.Status{delivery.StatusFailed, delivery.StatusParked}, now.Add(-time.Second), 10)
	if err != nil || len(found) != 2 {
		t.Fatalf("Find = %v, %v", found, err)
	}
	if found, _ := q.Find(ctx, "acct_1", "ep_1", []delivery.Status{delivery.StatusFailed}, now.Add(time.Second), 10); len(found) != 0 {
		t.Fatalf("Find since later = %v", found)
	}

	// Restart only the statuses asked for; a fresh round; out of the parked set.
	srv.Client.ScriptFlush(ctx) // as after a Redis restart: the script is sent again
	n, err := q.Restart(ctx, []string{"dlv_a", "dlv_b", "dlv_c", "dlv_missing"}, []delivery.Status{delivery.StatusParked, delivery.StatusFailed}, now.Add(time.Second))
	if err != nil || n != 2 {
		t.Fatalf("Restart = %d, %v", n, err)
	}
	for _, id := range []string{"dlv_a", "dlv_b"} {
		d, _, _ := q.Get(ctx, id)
		if d.Status != delivery.StatusPending || d.Base != d.Attempts || !d.FirstAttempt.IsZero() {
			t.Errorf("%s after restart: %+v", id, d)
		}
	}
	if d, _, _ := q.Get(ctx, "dlv_c"); d.Status != delivery.StatusSucceeded {
		t.Errorf("succeeded delivery restarted: %v", d.Status)
	}
	if parked, _ := q.Parked(ctx, 100); len(parked) != 0 {
		t.Errorf("parked after restart: %+v", parked)
	}
	jobs, _, _ = q.Claim(ctx, now.Add(2*time.Second), now.Add(20*time.Second), 10)
	if len(jobs) != 2 {
		t.Errorf("claimed %d restarted deliveries, want 2", len(jobs))
	}

	// A parked entry whose delivery expired is dropped by the sweep.
	if err := srv.Client.SAdd(ctx, parkedKey(Shard("dlv_gone")), "ep_1|dlv_gone").Err(); err != nil {
		t.Fatal(err)
	}
	if parked, _ := q.Parked(ctx, 100); len(parked) != 0 {
		t.Errorf("expired entry listed: %+v", parked)
	}
	if ok, _ := srv.Client.SIsMember(ctx, parkedKey(Shard("dlv_gone")), "ep_1|dlv_gone").Result(); ok {
		t.Error("expired parked entry not removed")
	}
}

// TestTestDeliveriesAreNeverFoundNorRestarted: a failed Send Test delivery
// is not among an endpoint's failed deliveries for replay, and Restart
// refuses it even when asked by id.
func TestTestDeliveriesAreNeverFoundNorRestarted(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	test := newDelivery("dlv_test", now, now)
	test.Test, test.Status, test.Attempts, test.Body = true, delivery.StatusFailed, 1, []byte(`{"test":true}`)
	att := delivery.Attempt{Number: 1, Start: now, StatusCode: 500, ErrorType: delivery.ErrorHTTPStatus, Error: "HTTP 500"}
	if err := q.RecordTest(ctx, test, att); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Schedule(ctx, []delivery.Delivery{newDelivery("dlv_real", now, now)}); err != nil {
		t.Fatal(err)
	}
	jobs, _, err := q.Claim(ctx, now, now.Add(15*time.Second), 10)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("Claim = %d, %v", len(jobs), err)
	}
	if ok, _, err := q.Complete(ctx, jobs[0], delivery.Outcome{Status: delivery.StatusFailed, Now: now, Attempt: &att}); !ok || err != nil {
		t.Fatalf("Complete = %v, %v", ok, err)
	}
	failed := []delivery.Status{delivery.StatusFailed, delivery.StatusParked}
	found, err := q.Find(ctx, "acct_1", "ep_1", failed, now.Add(-time.Second), 10)
	if err != nil || len(found) != 1 || found[0] != "dlv_real" {
		t.Fatalf("Find = %v, %v; want [dlv_real]", found, err)
	}
	if n, err := q.Restart(ctx, []string{"dlv_test"}, failed, now); err != nil || n != 0 {
		t.Fatalf("Restart of a test delivery = %d, %v; want 0", n, err)
	}
	if d, _, _ := q.Get(ctx, "dlv_test"); d.Status != delivery.StatusFailed {
		t.Errorf("test delivery status %v after Restart, want failed", d.Status)
	}
	if err := srv.Client.ZScore(ctx, ScheduleKey("dlv_test"), "dlv_test").Err(); err == nil {
		t.Error("test delivery scheduled by Restart")
	}
}

// TestCompleteMarksTheEndpointsSuccess: an outcome with MarkEndpoint
// raises its endpoint's success mark in the script that records it (never
// lowering a later mark), also when the lease was lost; one without it
// marks nothing.
func TestCompleteMarksTheEndpointsSuccess(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	mark := func(ep string) string { return srv.Client.HGet(ctx, epStatKey(ep), "ok").Val() }
	a, b, c := newDelivery("dlv_a", now, now), newDelivery("dlv_b", now, now), newDelivery("dlv_c", now, now)
	b.EndpointID, c.EndpointID = "ep_2", "ep_3"
	if _, err := q.Schedule(ctx, []delivery.Delivery{a, b, c}); err != nil {
		t.Fatal(err)
	}
	jobs, _, err := q.Claim(ctx, now, now.Add(15*time.Second), 10)
	if err != nil || len(jobs) != 3 {
		t.Fatalf("Claim = %v, %v", jobs, err)
	}
	byID := map[string]delivery.Job{}
	for _, j := range jobs {
		byID[j.Delivery.ID] = j
	}
	at := now.Add(time.Second)
	succeeded := delivery.Outcome{Status: delivery.StatusSucceeded, Now: at, MarkEndpoint: true,
		Attempt: &delivery.Attempt{Number: 1, Start: now, StatusCode: 200}}
	if ok, _, err := q.Complete(ctx, byID["dlv_a"], succeeded); err != nil || !ok {
		t.Fatalf("Complete = %v, %v", ok, err)
	}
	if got, want := mark("ep_1"), strconv.FormatInt(at.UnixMilli(), 10); got != want {
		t.Errorf("ep_1's mark = %q, want %q", got, want)
	}
	if ttl := srv.Client.PTTL(ctx, epStatKey("ep_1")).Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("ep_1's stats ttl = %v, want the retention", ttl)
	}
	// An expiry that ran down is renewed by the next mark.
	srv.Client.PExpire(ctx, epStatKey("ep_1"), 10*time.Minute)
	if err := q.MarkSuccess(ctx, "ep_1", at.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if ttl := srv.Client.PTTL(ctx, epStatKey("ep_1")).Val(); ttl < 59*time.Minute {
		t.Errorf("ep_1's stats ttl after a mark = %v, want the retention again", ttl)
	}
	// An earlier success recorded later does not lower the mark.
	earlier := succeeded
	earlier.Now = now
	lost := byID["dlv_b"]
	lost.LeaseUntil = lost.LeaseUntil.Add(time.Second) // another claim's lease: not recorded
	if err := q.MarkSuccess(ctx, "ep_2", at); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := q.Complete(ctx, lost, earlier); err != nil || ok {
		t.Fatalf("Complete with a lost lease = %v, %v; want not recorded", ok, err)
	}
	if got, want := mark("ep_2"), strconv.FormatInt(at.UnixMilli(), 10); got != want {
		t.Errorf("ep_2's mark = %q, want %q (not lowered)", got, want)
	}
	lost.Delivery.EndpointID = "ep_4" // the same lost lease, a fresh endpoint: marked anyway
	if ok, _, _ := q.Complete(ctx, lost, succeeded); ok || mark("ep_4") == "" {
		t.Errorf("a success whose lease was lost: recorded %v, mark %q; want not recorded, marked", ok, mark("ep_4"))
	}
	plain := succeeded
	plain.MarkEndpoint = false
	if ok, _, err := q.Complete(ctx, byID["dlv_c"], plain); err != nil || !ok {
		t.Fatalf("Complete = %v, %v", ok, err)
	}
	if got := mark("ep_3"); got != "" {
		t.Errorf("an outcome without MarkEndpoint marked its endpoint: %q", got)
	}
}
