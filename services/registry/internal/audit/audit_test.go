package audit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/pgtest"
	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/pkg/shard"
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
	rdb   redis.UniversalClient
	store *history.Store
	mover *Mover
	log   *Log
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
	lazy := history.Opened(s)
	return &fixture{rdb: srv.Client, store: s, mover: &Mover{RDB: srv.Client, History: lazy, Log: quiet}, log: &Log{RDB: srv.Client, History: lazy}}
}

// listIDs is every entry id of the account's log, newest first, through
// pages of 2 (so the merge of the tiers is paged too).
func (f *fixture) listIDs(t *testing.T, acct string) []string {
	t.Helper()
	var out []string
	token := ""
	for range 100 {
		es, next, err := f.log.List(context.Background(), acct, Query{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			out = append(out, e.ID)
		}
		if next == "" {
			return out
		}
		token = next
	}
	t.Fatal("too many pages")
	return nil
}

func countShardKeys(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	var n int64
	for s := range shard.Count {
		c, err := rdb.Exists(context.Background(), auditlog.ShardIndexKey(s)).Result()
		if err != nil {
			t.Fatal(err)
		}
		n += c
	}
	keys, err := rdb.Keys(context.Background(), "wh:audit:{s*}:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return n + int64(len(keys))
}

// TestShardEntriesAreListedThenMovedToHistoryOnce: delivery's entries in
// the shards' slots are listed with the account's (and never another
// account's), reach PostgreSQL once, and leave Redis, index included;
// after a crash between the commit and the delete they are listed once
// and moved again harmlessly.
func TestShardEntriesAreListedThenMovedToHistoryOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := time.Now()
	acct, other := ids.New(ids.Account, now), ids.New(ids.Account, now)
	actor := auditlog.Actor{Type: auditlog.ActorKey, KeyID: "key_1", KeyPrefix: "vsk_abcdefgh"}
	var want []string // oldest first
	// A registry change: the account's hash.
	reg := auditlog.New(acct, actor, auditlog.EndpointCreate, "ep_1", "endpoint created", now)
	if _, err := f.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error { auditlog.Add(ctx, p, reg); return nil }); err != nil {
		t.Fatal(err)
	}
	auditlog.Announce(ctx, f.rdb, acct)
	want = append(want, reg.ID)
	// Delivery's retries in several shards, and one of another account.
	for i := range 5 {
		e := auditlog.New(acct, actor, auditlog.DeliveryRetry, fmt.Sprintf("dlv_%d", i), "manual retry", now.Add(time.Duration(i+1)*time.Millisecond))
		if err := auditlog.WriteShard(ctx, f.rdb, i*3%shard.Count, e); err != nil {
			t.Fatal(err)
		}
		want = append(want, e.ID)
	}
	foreign := auditlog.New(other, actor, auditlog.DeliveryRetry, "dlv_x", "manual retry", now)
	if err := auditlog.WriteShard(ctx, f.rdb, 0, foreign); err != nil {
		t.Fatal(err)
	}
	newestFirst := func() []string {
		out := make([]string, len(want))
		for i, id := range want {
			out[len(want)-1-i] = id
		}
		return out
	}()
	same := func(got []string) bool {
		if len(got) != len(newestFirst) {
			return false
		}
		for i := range got {
			if got[i] != newestFirst[i] {
				return false
			}
		}
		return true
	}
	// Before the move: listed from Redis.
	if got := f.listIDs(t, acct); !same(got) {
		t.Fatalf("listed before the move %v, want %v", got, newestFirst)
	}
	// A crash after a commit and before the delete: in both tiers.
	if _, err := f.store.ArchiveAudit(ctx, []history.AuditEntry{toHistory(auditlog.Entry{ID: want[2], AccountID: acct, Time: now.Add(2 * time.Millisecond).UTC(),
		Actor: actor, Action: auditlog.DeliveryRetry, Resource: "dlv_1", Summary: "manual retry"})}); err != nil {
		t.Fatal(err)
	}
	if got := f.listIDs(t, acct); !same(got) {
		t.Fatalf("listed with one entry in both tiers %v, want %v", got, newestFirst)
	}
	moved, err := f.mover.RunOnce(ctx)
	if err != nil || moved != len(want)+1 {
		t.Fatalf("RunOnce = %d, %v; want %d moved", moved, err, len(want)+1)
	}
	if n := countShardKeys(t, f.rdb); n != 0 {
		t.Fatalf("%d per-shard audit keys left in Redis after the move", n)
	}
	if n, _ := f.rdb.HLen(ctx, auditlog.Key(acct)).Result(); n != 0 {
		t.Fatalf("%d entries left in the account's hash", n)
	}
	hs, err := f.store.ListAudit(ctx, acct, history.AuditQuery{Limit: 100})
	if err != nil || len(hs) != len(want) {
		t.Fatalf("history holds %d entries (%v), want %d, each once", len(hs), err, len(want))
	}
	if got := f.listIDs(t, acct); !same(got) {
		t.Fatalf("listed after the move %v, want %v", got, newestFirst)
	}
	if got := f.listIDs(t, other); len(got) != 1 || got[0] != foreign.ID {
		t.Fatalf("the other account's log %v, want only %s", got, foreign.ID)
	}
	// Nothing left: a pass moves nothing.
	if moved, err := f.mover.RunOnce(ctx); err != nil || moved != 0 {
		t.Fatalf("idle RunOnce = %d, %v", moved, err)
	}
}

// TestAShardEntryWrittenDuringAMoveStays: the delete after the commit
// removes only what was copied; the account stays in the shard's index
// while it has entries.
func TestAShardEntryWrittenDuringAMoveStays(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	acct := ids.New(ids.Account, time.Now())
	a := auditlog.New(acct, auditlog.Actor{Type: auditlog.ActorSystem}, auditlog.DeliveryRetry, "dlv_a", "", time.Now())
	b := auditlog.New(acct, auditlog.Actor{Type: auditlog.ActorSystem}, auditlog.DeliveryRetry, "dlv_b", "", time.Now())
	for _, e := range []auditlog.Entry{a, b} {
		if err := auditlog.WriteShard(ctx, f.rdb, 5, e); err != nil {
			t.Fatal(err)
		}
	}
	// Only a was copied.
	if err := auditlog.DeleteShard(ctx, f.rdb, 5, acct, []string{a.ID}); err != nil {
		t.Fatal(err)
	}
	left, err := auditlog.ShardEntries(ctx, f.rdb, 5, acct)
	if err != nil || len(left) != 1 || left[0].ID != b.ID {
		t.Fatalf("left %+v, %v; want %s", left, err, b.ID)
	}
	if ok, _ := f.rdb.SIsMember(ctx, auditlog.ShardIndexKey(5), acct).Result(); !ok {
		t.Fatal("the account left the shard's index with an entry still there")
	}
	if moved, err := f.mover.RunOnce(ctx); err != nil || moved != 1 {
		t.Fatalf("RunOnce = %d, %v", moved, err)
	}
	if n := countShardKeys(t, f.rdb); n != 0 {
		t.Fatalf("%d per-shard audit keys left", n)
	}
}
