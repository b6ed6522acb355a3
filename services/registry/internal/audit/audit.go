// Package audit serves and moves the account audit log (issue #16) for the
// registry: Log reads Redis (entries not yet moved, pkg/auditlog: the
// account's hash and, for delivery's retries and replays, the account's
// hashes in the delivery shards) and the history tier (pkg/history's
// audit_log) as one, newest first; Mover copies entries of both kinds from
// Redis to PostgreSQL and deletes them from Redis only after the commit (so
// an entry is in Redis, in both, or in history, never in neither, and the
// merged read de-duplicates by id).
package audit

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/pkg/shard"
)

// Paging bounds of List.
const (
	DefaultPageSize = 50
	MaxPageSize     = 100
)

// Query filters List (see history.AuditQuery).
type Query struct {
	Since, Until time.Time
	Resource     string
	PageSize     int
	PageToken    string // the id of the last entry of the previous page
}

// Log reads the audit log of both tiers.
type Log struct {
	RDB     redis.UniversalClient
	History *history.Lazy
}

// List returns a page of an account's entries, newest first, and the next
// page's token ("" at the end).
func (l *Log) List(ctx context.Context, acct string, q Query) ([]auditlog.Entry, string, error) {
	switch {
	case q.PageSize < 0:
		return nil, "", apierr.Invalid("page_size", "must not be negative")
	case q.PageSize == 0:
		q.PageSize = DefaultPageSize
	case q.PageSize > MaxPageSize:
		q.PageSize = MaxPageSize
	}
	if q.PageToken != "" && !ids.Valid(auditlog.Prefix, q.PageToken) {
		return nil, "", apierr.Invalid("page_token", "is not a token returned by ListAuditLog")
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return nil, "", apierr.Invalid("until", "must be after since")
	}
	live, err := auditlog.Live(ctx, l.RDB, acct)
	if err != nil {
		return nil, "", err
	}
	// Delivery's entries wait in the account's hash of each shard: one
	// pipeline of shard.Count reads of this account's entries only (never a
	// scan of other accounts'), normally empty, since the mover drains
	// them every pass.
	inShards, err := auditlog.ShardLive(ctx, l.RDB, acct)
	if err != nil {
		return nil, "", err
	}
	live = append(live, inShards...)
	live = slices.DeleteFunc(live, func(e auditlog.Entry) bool {
		return (!q.Since.IsZero() && e.Time.Before(q.Since)) || (!q.Until.IsZero() && !e.Time.Before(q.Until)) ||
			(q.Resource != "" && e.Resource != q.Resource) || (q.PageToken != "" && e.ID >= q.PageToken)
	})
	store, err := l.History.Store()
	if err != nil {
		return nil, "", err
	}
	old, err := store.ListAudit(ctx, acct, history.AuditQuery{Since: q.Since, Until: q.Until, Resource: q.Resource, Before: q.PageToken, Limit: q.PageSize})
	if err != nil {
		return nil, "", err
	}
	seen := make(map[string]bool, len(live))
	for _, e := range live {
		seen[e.ID] = true
	}
	for _, h := range old {
		if !seen[h.ID] {
			live = append(live, fromHistory(h))
		}
	}
	slices.SortFunc(live, func(a, b auditlog.Entry) int { return cmp.Compare(b.ID, a.ID) })
	next := ""
	if len(live) > q.PageSize {
		live = live[:q.PageSize]
		next = live[len(live)-1].ID
	} else if len(old) == q.PageSize && len(live) > 0 {
		next = live[len(live)-1].ID // history may hold more
	}
	return live, next, nil
}

func fromHistory(h history.AuditEntry) auditlog.Entry {
	return auditlog.Entry{ID: h.ID, AccountID: h.AccountID, Time: h.Time, Action: h.Action, Resource: h.Resource, Summary: h.Summary,
		Actor: auditlog.Actor{Type: h.ActorType, KeyID: h.ActorKeyID, KeyPrefix: h.ActorPrefix}}
}

func toHistory(e auditlog.Entry) history.AuditEntry {
	return history.AuditEntry{ID: e.ID, AccountID: e.AccountID, Time: e.Time, Action: e.Action, Resource: e.Resource, Summary: e.Summary,
		ActorType: e.Actor.Type, ActorKeyID: e.Actor.KeyID, ActorPrefix: e.Actor.KeyPrefix}
}

// Mover moves entries from Redis to history.
type Mover struct {
	RDB     redis.UniversalClient
	History *history.Lazy
	Log     *slog.Logger
	// Poll is the pause between passes (default 1 s); SweepEvery the
	// period of the SCAN for accounts whose announcement was lost
	// (default 5 min).
	Poll, SweepEvery time.Duration
}

// Run moves entries until ctx ends, backing off (to 30 s) while
// PostgreSQL fails; entries wait in Redis meanwhile.
func (m *Mover) Run(ctx context.Context) {
	poll := cmp.Or(m.Poll, time.Second)
	sweepEvery := cmp.Or(m.SweepEvery, 5*time.Minute)
	lastSweep := time.Time{}
	wait := poll
	for ctx.Err() == nil {
		if time.Since(lastSweep) >= sweepEvery {
			if err := m.Sweep(ctx); err == nil {
				lastSweep = time.Now()
			}
		}
		_, err := m.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			m.Log.Warn("audit mover: entries stay in Redis for now", "error", err.Error(), "retry_in", wait.String())
			wait = min(wait*2, 30*time.Second)
		} else {
			wait = poll
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// Sweep re-announces every account that has entries in Redis.
func (m *Mover) Sweep(ctx context.Context) error {
	// Every primary of a Redis Cluster (a SCAN reaches one node).
	return redisx.ScanKeys(ctx, m.RDB, auditlog.KeyPattern, func(ctx context.Context, keys []string) error {
		for _, k := range keys {
			if acct, ok := strings.CutPrefix(strings.TrimSuffix(k, "}:audit"), "wh:{a:"); ok {
				auditlog.Announce(ctx, m.RDB, acct)
			}
		}
		return nil
	})
}

// RunOnce moves the entries of up to 100 announced accounts, and of up to
// 100 accounts of each delivery shard's index, and returns how many
// entries it moved.
func (m *Mover) RunOnce(ctx context.Context) (int, error) {
	store, err := m.History.Store()
	if err != nil {
		return 0, err
	}
	accts, err := m.RDB.SRandMemberN(ctx, auditlog.PendingKey, 100).Result()
	if err != nil {
		return 0, err
	}
	moved := 0
	for _, acct := range accts {
		n, err := m.moveAccount(ctx, store, acct)
		moved += n
		if err != nil {
			return moved, err
		}
	}
	n, err := m.moveShards(ctx, store)
	return moved + n, err
}

// moveShards moves the entries delivery wrote in its shards' slots
// (auditlog.ShardKey), shard by shard: one read of the shard.Count
// indexes (a fixed set, so no announcement can be lost), then per shard
// the listed accounts' entries in one history transaction, and only after
// its commit the delete of exactly what was copied (an entry written
// meanwhile stays, its account listed).
func (m *Mover) moveShards(ctx context.Context, store *history.Store) (int, error) {
	cmds := make([]*redis.StringSliceCmd, shard.Count)
	if _, err := m.RDB.Pipelined(ctx, func(p redis.Pipeliner) error {
		for n := range shard.Count {
			cmds[n] = p.SRandMemberN(ctx, auditlog.ShardIndexKey(n), 100)
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return 0, err
	}
	moved := 0
	for n, c := range cmds {
		accts := c.Val()
		if len(accts) == 0 {
			continue
		}
		var batch []history.AuditEntry
		fields := make(map[string][]string, len(accts))
		for _, acct := range accts {
			live, err := auditlog.ShardEntries(ctx, m.RDB, n, acct)
			if err != nil {
				return moved, err
			}
			for _, e := range live {
				batch = append(batch, toHistory(e))
				fields[acct] = append(fields[acct], e.ID)
			}
		}
		if len(batch) > 0 {
			if _, err := store.ArchiveAudit(ctx, batch); err != nil {
				return moved, err
			}
		}
		// Committed: the Redis copies may go (entries never change).
		for _, acct := range accts {
			if err := auditlog.DeleteShard(ctx, m.RDB, n, acct, fields[acct]); err != nil {
				return moved, err
			}
		}
		moved += len(batch)
	}
	return moved, nil
}

func (m *Mover) moveAccount(ctx context.Context, store *history.Store, acct string) (int, error) {
	live, err := auditlog.Live(ctx, m.RDB, acct)
	if err != nil {
		return 0, err
	}
	if len(live) > 0 {
		batch := make([]history.AuditEntry, len(live))
		fields := make([]string, len(live))
		for i, e := range live {
			batch[i], fields[i] = toHistory(e), e.ID
		}
		if _, err := store.ArchiveAudit(ctx, batch); err != nil {
			return 0, err
		}
		// Committed: the Redis copies may go (entries never change).
		if err := m.RDB.HDel(ctx, auditlog.Key(acct), fields...).Err(); err != nil {
			return 0, err
		}
	}
	// Leave the list, then look again: an entry written meanwhile puts the
	// account back.
	if err := m.RDB.SRem(ctx, auditlog.PendingKey, acct).Err(); err != nil {
		return len(live), err
	}
	if n, err := m.RDB.HLen(ctx, auditlog.Key(acct)).Result(); err != nil || n > 0 {
		auditlog.Announce(ctx, m.RDB, acct)
	}
	return len(live), nil
}
