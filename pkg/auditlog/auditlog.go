// Package auditlog is the format of the account audit log (issue #16) and
// its live tier in Redis, shared by the registry (endpoint, key, settings
// and account changes) and delivery (manual retries and replays).
//
// An entry is written in the same MULTI (or Lua script) as the change it
// records, so a change never happens without its entry. The registry's
// changes live in the account's slot, and so do their entries:
//
//	wh:{a:<acct>}:audit       hash  entry id → entry JSON (entries not yet moved to PostgreSQL)
//	wh:audit:pending          set   account ids that may have entries in `:audit` (the mover's list)
//
// Delivery's changes (a manual retry makes a delivery due) live in the
// delivery's shard slot `{s<n>}` (pkg/shard), which on Redis Cluster cannot
// share a transaction with the account's slot. Their entries go to
// per-shard keys of that slot instead, written by the same Lua script as
// the change (ForShard passes the keys and ARGV, ShardLua is the code):
//
//	wh:audit:{s<n>}           set   accounts with entries in shard n (the mover's list of it)
//	wh:audit:{s<n>}:<acct>    hash  entry id → entry JSON, the same JSON as `:audit` holds
//
// An entry of shard n is written with its account's membership of the
// index in one script, so the mover (which reads the Count indexes, a
// fixed set, every pass) never misses one; the listing reads the Count
// hashes of the one account it lists (ShardLive), never other accounts'.
//
// The pending set is in another slot than the account's hash, so it is
// written right after the change's transaction (Announce); an account whose
// Announce was lost is found by the mover's periodic SCAN of the audit
// hashes, and its entries are read from Redis meanwhile (the listing reads
// both tiers). The registry's mover (services/registry/internal/audit)
// copies entries of both kinds to history's audit_log table and deletes
// them from Redis only after the commit (history dedupes by entry id and
// time, so a copy repeated after a crash is one row). Entries are immutable
// and their ids are time-ordered (aud_ + ids.New), so the merged listing is
// ordered by id, newest first.
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
	"github.com/voxscriber/webhooks/pkg/shard"
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

// Live returns the account's entries still in Redis, in no order.
func Live(ctx context.Context, rdb redis.Cmdable, acct string) ([]Entry, error) {
	m, err := rdb.HGetAll(ctx, Key(acct)).Result()
	if err != nil {
		return nil, fmt.Errorf("read audit entries: %w", err)
	}
	return decodeAll(m)
}

// ---- per-shard entries (changes that live in a delivery shard's slot) ----

// ShardIndexKey is the set of accounts with entries in shard n.
func ShardIndexKey(n int) string { return "wh:audit:" + shard.Tag(n) }

// ShardKey is the hash of an account's entries written in shard n.
func ShardKey(n int, acct string) string { return ShardIndexKey(n) + ":" + acct }

// ShardLua writes an entry from a script of the shard's slot, given the
// keys and ARGV of ForShard at 1-based offsets k (KEYS) and a (ARGV): it
// substitutes them for the placeholders and returns Lua that writes
// nothing when the entry id is empty (NoShardWrite). A script splices it
// into the branch that makes the change, so it writes the entry exactly
// when it changes something.
func ShardLua(k, a int) string {
	return fmt.Sprintf("if ARGV[%[3]d] ~= '' then redis.call('HSET', KEYS[%[2]d], ARGV[%[3]d], ARGV[%[4]d]); redis.call('SADD', KEYS[%[1]d], ARGV[%[5]d]) end",
		k, k+1, a, a+1, a+2)
}

// ForShard returns the two KEYS (index, hash) and three ARGV (entry id,
// entry JSON, account) with which a script of shard n writes e (ShardLua).
func (e Entry) ForShard(n int) (keys []string, args []any) {
	return []string{ShardIndexKey(n), ShardKey(n, e.AccountID)}, []any{e.ID, e.Encode(), e.AccountID}
}

// NoShardWrite is ForShard for a call that records nothing: keys of the
// same slot (a script must name every key it could touch), an empty id.
func NoShardWrite(n int) (keys []string, args []any) {
	return []string{ShardIndexKey(n), ShardKey(n, "")}, []any{"", "", ""}
}

var writeShardScript = redis.NewScript(ShardLua(1, 1) + "\nreturn 1")

// WriteShard stores one entry on its own in shard n (for a change that
// touches many shards, such as a replay, whose entry is written before
// the change starts).
func WriteShard(ctx context.Context, rdb redis.Scripter, n int, e Entry) error {
	keys, args := e.ForShard(n)
	if err := writeShardScript.Run(ctx, rdb, keys, args...).Err(); err != nil {
		return fmt.Errorf("write audit entry: %w", err)
	}
	return nil
}

// ShardLive returns the account's entries waiting in the shard hashes, in
// no order: Count reads in one pipeline, each of this account's entries
// only.
func ShardLive(ctx context.Context, rdb redis.Cmdable, acct string) ([]Entry, error) {
	cmds := make([]*redis.MapStringStringCmd, shard.Count)
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for n := range shard.Count {
			cmds[n] = p.HGetAll(ctx, ShardKey(n, acct))
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read audit entries: %w", err)
	}
	var out []Entry
	for _, c := range cmds {
		got, err := decodeAll(c.Val())
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// ShardAccounts returns up to limit accounts of shard n's index.
func ShardAccounts(ctx context.Context, rdb redis.Cmdable, n, limit int) ([]string, error) {
	return rdb.SRandMemberN(ctx, ShardIndexKey(n), int64(limit)).Result()
}

// ShardEntries returns an account's entries in shard n, in no order.
func ShardEntries(ctx context.Context, rdb redis.Cmdable, n int, acct string) ([]Entry, error) {
	m, err := rdb.HGetAll(ctx, ShardKey(n, acct)).Result()
	if err != nil {
		return nil, fmt.Errorf("read audit entries: %w", err)
	}
	return decodeAll(m)
}

// deleteShardScript deletes moved entries and, when none is left, the
// account's index membership, in one step: an entry written meanwhile
// keeps the account listed.
var deleteShardScript = redis.NewScript(`
if #ARGV > 1 then redis.call('HDEL', KEYS[2], unpack(ARGV, 2)) end
if redis.call('HLEN', KEYS[2]) == 0 then redis.call('SREM', KEYS[1], ARGV[1]) end
return 1
`)

// DeleteShard deletes entries of an account from shard n (the mover, after
// the history commit that holds them), and the account from the shard's
// index when it has none left.
func DeleteShard(ctx context.Context, rdb redis.Scripter, n int, acct string, ids []string) error {
	args := make([]any, 0, len(ids)+1)
	args = append(args, acct)
	for _, id := range ids {
		args = append(args, id)
	}
	if err := deleteShardScript.Run(ctx, rdb, []string{ShardIndexKey(n), ShardKey(n, acct)}, args...).Err(); err != nil {
		return fmt.Errorf("delete moved audit entries: %w", err)
	}
	return nil
}

func decodeAll(m map[string]string) ([]Entry, error) {
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
