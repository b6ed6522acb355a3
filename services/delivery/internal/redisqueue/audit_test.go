package redisqueue

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// liveEntries is every audit entry of acct waiting in the shard hashes,
// by id.
func liveEntries(t *testing.T, rdb redis.UniversalClient, acct string) map[string]auditlog.Entry {
	t.Helper()
	got, err := auditlog.ShardLive(context.Background(), rdb, acct)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]auditlog.Entry{}
	for _, e := range got {
		out[e.ID] = e
	}
	return out
}

func retryEntry(id string, at time.Time) auditlog.Entry {
	return auditlog.New("acct_1", auditlog.Actor{Type: auditlog.ActorKey, KeyID: "key_1", KeyPrefix: "vsk_abcdefgh"},
		auditlog.DeliveryRetry, id, "manual retry of "+id, at)
}

// TestAManualRetryWritesItsAuditEntryInTheSameScript: the requeue script
// makes the delivery due and writes the entry in the delivery's own slot,
// so it runs on Redis Cluster too (one script, no CROSSSLOT); a retry
// refused (an attempt in flight, or a missing delivery) writes none; a
// repeat that makes the delivery due again writes its own.
func TestAManualRetryWritesItsAuditEntryInTheSameScript(t *testing.T) {
	for _, tc := range []struct {
		name string
		rdb  func(t *testing.T) redis.UniversalClient
	}{
		{"standalone", func(t *testing.T) redis.UniversalClient { return redistest.Start(t).Client }},
		{"cluster", func(t *testing.T) redis.UniversalClient {
			cl := redistest.StartCluster(t, 3)
			c, err := redisx.Open(context.Background(), cl.URL, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			return c
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := tc.rdb(t)
			q := New(rdb, time.Hour)
			ctx := context.Background()
			now := time.Now().Truncate(time.Millisecond)
			if _, err := q.Schedule(ctx, []delivery.Delivery{newDelivery("dlv_a", now, now), newDelivery("dlv_b", now, now.Add(time.Hour))}); err != nil {
				t.Fatal(err)
			}
			// dlv_a is claimed: an attempt in flight.
			jobs, _, err := q.Claim(ctx, now, now.Add(time.Minute), 10)
			if err != nil || len(jobs) != 1 || jobs[0].Delivery.ID != "dlv_a" {
				t.Fatalf("Claim = %v, %v", jobs, err)
			}
			refused := retryEntry("dlv_a", now)
			if ok, err := q.RequeueAudited(ctx, "dlv_a", now, &refused); ok || err != nil {
				t.Fatalf("retry of a delivery in flight = %v, %v; want refused", ok, err)
			}
			if _, err := q.RequeueAudited(ctx, "dlv_missing", now, &refused); err == nil {
				t.Fatal("retry of a missing delivery succeeded")
			}
			if got := liveEntries(t, rdb, "acct_1"); len(got) != 0 {
				t.Fatalf("a refused retry wrote entries: %+v", got)
			}

			// dlv_b is due in an hour: the retry makes it due now, with its entry.
			first := retryEntry("dlv_b", now)
			if ok, err := q.RequeueAudited(ctx, "dlv_b", now, &first); !ok || err != nil {
				t.Fatalf("retry = %v, %v", ok, err)
			}
			if due, err := rdb.ZScore(ctx, ScheduleKey("dlv_b"), "dlv_b").Result(); err != nil || int64(due) != now.UnixMilli() {
				t.Fatalf("due %v, %v; want now %d", due, err, now.UnixMilli())
			}
			got := liveEntries(t, rdb, "acct_1")
			if e, ok := got[first.ID]; len(got) != 1 || !ok || e.Action != auditlog.DeliveryRetry || e.Resource != "dlv_b" ||
				e.Actor.KeyID != "key_1" || !e.Time.Equal(first.Time) {
				t.Fatalf("entries after the retry = %+v, want %+v", got, first)
			}
			// In the delivery's slot, the account listed in its shard's index.
			n := Shard("dlv_b")
			if ok, _ := rdb.SIsMember(ctx, auditlog.ShardIndexKey(n), "acct_1").Result(); !ok {
				t.Fatalf("acct_1 not in %s", auditlog.ShardIndexKey(n))
			}
			// The same call again (a client retrying its request) writes
			// nothing new; a second retry makes it due again with its own.
			if ok, err := q.RequeueAudited(ctx, "dlv_b", now, &first); !ok || err != nil {
				t.Fatalf("repeated retry = %v, %v", ok, err)
			}
			second := retryEntry("dlv_b", now.Add(time.Millisecond))
			if ok, err := q.RequeueAudited(ctx, "dlv_b", now.Add(time.Millisecond), &second); !ok || err != nil {
				t.Fatalf("second retry = %v, %v", ok, err)
			}
			if got := liveEntries(t, rdb, "acct_1"); len(got) != 2 || got[second.ID].ID == "" {
				t.Fatalf("entries after two retries = %+v, want %s and %s", got, first.ID, second.ID)
			}
			// Without an entry (internal callers) nothing is written.
			if ok, err := q.Requeue(ctx, "dlv_b", now); !ok || err != nil {
				t.Fatalf("Requeue = %v, %v", ok, err)
			}
			if got := liveEntries(t, rdb, "acct_1"); len(got) != 2 {
				t.Fatalf("Requeue without an entry wrote one: %+v", got)
			}
		})
	}
}

// TestARestoreForARetryWritesItsEntryOnlyWhenItRestores: the restore of a
// delivery only history held writes the retry's entry in the same script;
// a delivery Redis holds already is left alone, and so is the log.
func TestARestoreForARetryWritesItsEntryOnlyWhenItRestores(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	d := newDelivery("dlv_r", now.Add(-time.Hour), now)
	d.Status, d.Attempts, d.Version = delivery.StatusFailed, 5, 7
	ent := retryEntry("dlv_r", now)
	ok, err := q.RestoreAudited(ctx, []delivery.Delivery{d}, [][]delivery.Attempt{nil}, now, map[string]auditlog.Entry{"dlv_r": ent})
	if err != nil || !ok[0] {
		t.Fatalf("RestoreAudited = %v, %v", ok, err)
	}
	live, _, err := q.Get(ctx, "dlv_r")
	if err != nil || live.Status != delivery.StatusPending {
		t.Fatalf("restored %+v, %v", live, err)
	}
	if got := liveEntries(t, srv.Client, "acct_1"); len(got) != 1 || got[ent.ID].ID == "" {
		t.Fatalf("entries after the restore = %+v, want %s", got, ent.ID)
	}
	other := retryEntry("dlv_r", now.Add(time.Millisecond))
	ok, err = q.RestoreAudited(ctx, []delivery.Delivery{d}, [][]delivery.Attempt{nil}, now, map[string]auditlog.Entry{"dlv_r": other})
	if err != nil || ok[0] {
		t.Fatalf("second RestoreAudited = %v, %v; want left alone", ok, err)
	}
	if got := liveEntries(t, srv.Client, "acct_1"); len(got) != 1 {
		t.Fatalf("a restore that changed nothing wrote an entry: %+v", got)
	}
}
