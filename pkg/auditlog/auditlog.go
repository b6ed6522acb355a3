// Package auditlog is the format of the account audit log (issue #16) and
// its live tier in Redis, shared by the registry (endpoint, key, settings
// and account changes) and delivery (manual retries and replays).
//
// An entry is written in the same MULTI (or Lua script) as the change it
// records, into the account's slot:
//
//	wh:{a:<acct>}:audit   hash   entry id → entry JSON (entries not yet moved to PostgreSQL)
//	wh:audit:pending      set    account ids that may have entries in Redis (the mover's list)
//
// The pending set is in another slot, so it is written right after the
// change's transaction (Announce); an account whose Announce was lost is
// found by the mover's periodic SCAN of the audit hashes, and its entries
// are read from Redis meanwhile (the listing reads both tiers). The
// registry's mover (services/registry/internal/auditmove) copies entries
// to history's audit_log table and deletes them from Redis only after the
// commit. Entries are immutable and their ids are time-ordered (aud_ +
// ids.New), so the merged listing is ordered by id, newest first.
//
// An entry never holds a secret or an API key: summaries are built from
// field names and non-secret values only.
package auditlog

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/ids"
)

// Prefix of audit entry ids.
const Prefix = "aud_"

// PendingKey is the set of accounts whose entries may wait in Redis.
const PendingKey = "wh:audit:pending"

// Key is the account's hash of entries not yet moved to history.
func Key(acct string) string { return "wh:{a:" + acct + "}:audit" }

// KeyPattern matches every account's audit hash (the mover's sweep).
const KeyPattern = "wh:{a:*}:audit"

// Actor kinds.
const (
	ActorKey    = "api_key"
	ActorAdmin  = "admin"
	ActorSystem = "system"
)

// Actions.
const (
	AccountCreate   = "account.create"
	EndpointCreate  = "endpoint.create"
	EndpointUpdate  = "endpoint.update"
	EndpointDelete  = "endpoint.delete"
	EndpointEnable  = "endpoint.enable"
	EndpointDisable = "endpoint.disable"
	EndpointRotate  = "endpoint.rotate_secret"
	EndpointReplay  = "endpoint.replay"
	APIKeyCreate    = "api_key.create"
	APIKeyRevoke    = "api_key.revoke"
	SettingsUpdate  = "settings.update"
	DeliveryRetry   = "delivery.retry"
)

// Actor is who made a change: an API key (id and prefix, never the key),
// the admin token, or the system (e.g. the auto-disable).
type Actor struct {
	Type      string `json:"type"`
	KeyID     string `json:"keyId,omitempty"`
	KeyPrefix string `json:"keyPrefix,omitempty"`
}

// Entry is one audit log record.
type Entry struct {
	ID        string    `json:"id"`
	AccountID string    `json:"account"`
	Time      time.Time `json:"time"`
	Actor     Actor     `json:"actor"`
	Action    string    `json:"action"`
	// Resource is the id of what changed (endpoint, key, delivery, account).
	Resource string `json:"resource"`
	// Summary says what changed, in words (no secret, no key).
	Summary string `json:"summary,omitempty"`
}

// ActorFrom names the caller: the API key of the request when there is
// one, else the system (internal calls).
func ActorFrom(ctx context.Context) Actor {
	if id, prefix, ok := authn.KeyOf(ctx); ok {
		return Actor{Type: ActorKey, KeyID: id, KeyPrefix: prefix}
	}
	return Actor{Type: ActorSystem}
}

// New returns an entry made now.
func New(acct string, actor Actor, action, resource, summary string, now time.Time) Entry {
	now = now.UTC()
	return Entry{ID: ids.New(Prefix, now), AccountID: acct, Time: now, Actor: actor, Action: action, Resource: resource, Summary: summary}
}

// Encode is the stored form of an entry.
func (e Entry) Encode() string {
	b, _ := json.Marshal(e) // plain strings and a time: cannot fail
	return string(b)
}

// Decode reads a stored entry.
func Decode(s string) (Entry, error) {
	var e Entry
	if err := json.Unmarshal([]byte(s), &e); err != nil {
		return Entry{}, fmt.Errorf("decode audit entry: %w", err)
	}
	return e, nil
}

// Add queues the entry's write on p (a MULTI of the account's slot).
func Add(ctx context.Context, p redis.Pipeliner, e Entry) {
	p.HSet(ctx, Key(e.AccountID), e.ID, e.Encode())
}

// Announce adds the account to the mover's list; a failure is not the
// change's (the mover's sweep finds the entry anyway).
func Announce(ctx context.Context, rdb redis.Cmdable, acct string) {
	_ = rdb.SAdd(context.WithoutCancel(ctx), PendingKey, acct).Err()
}

// Write stores one entry on its own (for changes whose writes live in
// another slot, such as delivery's retries and replays) and announces it.
func Write(ctx context.Context, rdb redis.UniversalClient, e Entry) error {
	if err := rdb.HSet(ctx, Key(e.AccountID), e.ID, e.Encode()).Err(); err != nil {
		return fmt.Errorf("write audit entry: %w", err)
	}
	Announce(ctx, rdb, e.AccountID)
	return nil
}

// Live returns the account's entries still in Redis, in no order.
func Live(ctx context.Context, rdb redis.Cmdable, acct string) ([]Entry, error) {
	m, err := rdb.HGetAll(ctx, Key(acct)).Result()
	if err != nil {
		return nil, fmt.Errorf("read audit entries: %w", err)
	}
	out := make([]Entry, 0, len(m))
	for _, v := range m {
		e, err := Decode(v)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}
