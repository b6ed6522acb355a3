package redisqueue

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/redistest"
)

// TestAdoptLegacyFilesThePreHistoryLayout: hashes without ver (the build
// before the history tier) get ver 1 and lose their TTL; ended ones join
// the ended index at their end, parked ones PARKED_MOVE_AFTER later,
// pending ones stay live; account-index entries are rescored by the id's
// time; a hash this build wrote is left alone; a repeat adopts nothing
// and records the sweep done.
func TestAdoptLegacyFilesThePreHistoryLayout(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	q.SetParkedMoveAfter(time.Minute)
	ctx := context.Background()
	c := srv.Client
	upd := time.Now().Add(-time.Hour).UnixMilli()
	idOf := map[string]string{}
	for _, st := range []string{"succeeded", "failed", "canceled", "parked", "pending", "current"} {
		id := ids.New("dlv_", time.Now().Add(-time.Hour))
		idOf[st] = id
		k := DeliveryKey(id)
		status := st
		if st == "current" {
			status = "succeeded"
		}
		c.HSet(ctx, k, "event", "evt_x", "endpoint", "ep_1", "account", "acct_1", "status", status, "updated", upd, "created", upd)
		if st == "current" {
			c.HSet(ctx, k, "ver", 7)
		}
		c.PExpire(ctx, k, time.Hour)
		c.RPush(ctx, k+":att", `{"number":1}`)
		c.PExpire(ctx, k+":att", time.Hour)
		c.ZAdd(ctx, accountKey("acct_1"), redis.Z{Score: float64(upd + 5), Member: id})
	}
	n, err := q.AdoptLegacy(ctx)
	if err != nil || n != 5 {
		t.Fatalf("AdoptLegacy = %d, %v; want 5 adopted", n, err)
	}
	for st, id := range idOf {
		k := DeliveryKey(id)
		ver, _ := c.HGet(ctx, k, "ver").Result()
		score, zerr := c.ZScore(ctx, endedKey(Shard(id)), id).Result()
		switch st {
		case "current":
			if ver != "7" || zerr == nil {
				t.Fatalf("%s: this build's hash changed: ver %s, ended %v", st, ver, zerr == nil)
			}
			continue
		case "pending":
			if zerr == nil {
				t.Fatalf("pending: joined the ended index")
			}
		case "parked":
			if int64(score) != upd+time.Minute.Milliseconds() {
				t.Fatalf("parked: ended at %v, want %d", score, upd+time.Minute.Milliseconds())
			}
			if ok, _ := c.SIsMember(ctx, parkedKey(Shard(id)), "ep_1|"+id).Result(); !ok {
				t.Fatal("parked: not in its parked set")
			}
		default:
			if int64(score) != upd {
				t.Fatalf("%s: ended at %v (%v), want %d", st, score, zerr, upd)
			}
		}
		if ver != "1" {
			t.Fatalf("%s: ver %q, want 1", st, ver)
		}
		for _, key := range []string{k, k + ":att"} {
			if ttl, _ := c.PTTL(ctx, key).Result(); ttl != -1 {
				t.Fatalf("%s: %s still expires (%v)", st, key, ttl)
			}
		}
		tm, _ := ids.Time(id)
		if s, _ := c.ZScore(ctx, accountKey("acct_1"), id).Result(); int64(s) != tm.UnixMilli() {
			t.Fatalf("%s: account index score %v, want the id's time %d", st, s, tm.UnixMilli())
		}
	}
	if n, err := q.AdoptLegacy(ctx); err != nil || n != 0 {
		t.Fatalf("repeat AdoptLegacy = %d, %v; want 0", n, err)
	}
	if ok, _ := c.Exists(ctx, legacyDoneKey).Result(); ok != 1 {
		t.Fatal("a sweep that found nothing is not recorded")
	}
}

// TestRefileOrderedParkedMovesThePreviousBuildsFiling: an ordered parked
// delivery the previous build filed at PARKED_RETENTION is refiled at
// parked + PARKED_MOVE_AFTER; an unordered one, and one filed earlier
// already, are left alone; a repeat refiles none and records the sweep
// done.
func TestRefileOrderedParkedMovesThePreviousBuildsFiling(t *testing.T) {
	srv := redistest.Start(t)
	q := New(srv.Client, time.Hour)
	q.SetParkedMoveAfter(time.Minute)
	ctx := context.Background()
	c := srv.Client
	upd := time.Now().Add(-time.Hour).UnixMilli()
	retention := int64(7 * 24 * time.Hour / time.Millisecond)
	filed := map[string]int64{} // id → score the previous build gave it
	want := map[string]int64{}  // id → score after the refile
	for i, kind := range []string{"ordered", "unordered", "ordered-early"} {
		id := ids.New("dlv_", time.Now().Add(time.Duration(i)*time.Millisecond))
		k := DeliveryKey(id)
		c.HSet(ctx, k, "event", "evt_x", "endpoint", "ep_1", "account", "acct_1", "status", "parked", "updated", upd, "created", upd, "ver", 3)
		if kind != "unordered" {
			c.HSet(ctx, k, "okey", "upl_1")
		}
		c.SAdd(ctx, parkedKey(Shard(id)), "ep_1|"+id)
		filed[id], want[id] = upd+retention, upd+retention
		switch kind {
		case "ordered":
			want[id] = upd + time.Minute.Milliseconds()
		case "ordered-early":
			filed[id], want[id] = upd+1000, upd+1000
		}
		c.ZAdd(ctx, endedKey(Shard(id)), redis.Z{Score: float64(filed[id]), Member: id})
	}
	n, err := q.RefileOrderedParked(ctx)
	if err != nil || n != 1 {
		t.Fatalf("RefileOrderedParked = %d, %v; want 1", n, err)
	}
	for id, w := range want {
		if got := int64(c.ZScore(ctx, endedKey(Shard(id)), id).Val()); got != w {
			t.Fatalf("%s filed at %d, want %d", id, got, w)
		}
	}
	if n, err := q.RefileOrderedParked(ctx); err != nil || n != 0 {
		t.Fatalf("repeat = %d, %v", n, err)
	}
	if c.Exists(ctx, refiledDoneKey).Val() != 1 {
		t.Fatal("the sweep was not recorded done")
	}
}
