// Package redisstore keeps the registry's state in Redis, with the key
// layout of docs/architecture.md:
//
//	wh:apikey:<sha256 hex>     string  account id of an API key (the lookup index)
//	wh:{a:<acct>}:account      hash    name, notification_email, credits_low_threshold, created
//	wh:{a:<acct>}:keys         hash    key id → JSON {name, prefix, hash, created}: the account's live keys
//	wh:{a:<acct>}:keys:used    hash    key id → last use (ms of Redis time), written at most once a minute
//	wh:{a:<acct>}:ep:<ep_id>   string  endpoint JSON (secrets sealed)
//	wh:{a:<acct>}:eps          zset    endpoint ids, score = creation time (ms)
//	wh:{a:<acct>}:ver          string  counter bumped by every endpoint change
//	wh:{a:<acct>}:audit        hash    audit entries not yet moved to history (pkg/auditlog)
//	wh:secrets:keycheck        string  sealed constant proving SECRETS_KEY
//
// Every change writes its audit entry (pkg/auditlog) in the same MULTI or
// script as the change itself, so a change never happens without its
// entry and neither depends on PostgreSQL; the account is then announced
// to the audit mover (auditlog.Announce).
//
// Every key of one account shares the {a:<acct>} hash tag, so the writes of
// one change go in one MULTI/EXEC, also on Redis Cluster. After each
// endpoint change the account id is published on changefeed.Channel.
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/auditlog"
	"github.com/voxscriber/webhooks/pkg/changefeed"
	"github.com/voxscriber/webhooks/services/registry/internal/registry"
)

// KeyCheckKey holds the sealed SECRETS_KEY check value.
const KeyCheckKey = "wh:secrets:keycheck"

// Account hash fields (other services may read credits_low_threshold).
const (
	FieldName                = "name"
	FieldNotificationEmail   = "notification_email"
	FieldCreditsLowThreshold = "credits_low_threshold"
	FieldCreated             = "created"
)

// maxTxRetries bounds optimistic-lock retries of one update.
const maxTxRetries = 16

// Key names.
func apiKeyKey(hash string) string       { return "wh:apikey:" + hash }
func tag(acct string) string             { return "wh:{a:" + acct + "}" }
func accountKey(acct string) string      { return tag(acct) + ":account" }
func endpointKey(acct, id string) string { return tag(acct) + ":ep:" + id }
func endpointsKey(acct string) string    { return tag(acct) + ":eps" }
func versionKey(acct string) string      { return tag(acct) + ":ver" }
func keysKey(acct string) string         { return tag(acct) + ":keys" }
func keysUsedKey(acct string) string     { return tag(acct) + ":keys:used" }

// Store is the Redis implementation of registry.Store.
type Store struct {
	rdb redis.UniversalClient
}

var _ registry.Store = (*Store)(nil)

// New returns a Store on rdb.
func New(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

// ---- accounts ----

// CreateAccount writes the lookup entry of the first API key, then the
// account hash and the key's record in one MULTI (the lookup lives in
// another slot, so it cannot join). If the MULTI fails the lookup entry is
// removed again; if that fails too it is an orphan that resolves to
// nothing (ResolveKey needs the key's record).
func (s *Store) CreateAccount(ctx context.Context, a registry.Account, first registry.APIKey, ent auditlog.Entry) error {
	if err := s.claimLookup(ctx, first.Hash, a.ID); err != nil {
		return err
	}
	rec, err := encodeKey(first)
	if err != nil {
		return err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, accountKey(a.ID),
			FieldName, a.Name,
			FieldNotificationEmail, a.Settings.NotificationEmail,
			FieldCreditsLowThreshold, formatFloat(a.Settings.CreditsLowThreshold),
			FieldCreated, a.CreateTime.UTC().Format(time.RFC3339Nano),
		)
		p.HSet(ctx, keysKey(a.ID), first.ID, rec)
		auditlog.Add(ctx, p, ent)
		return nil
	})
	if err != nil {
		_ = s.rdb.Del(context.WithoutCancel(ctx), apiKeyKey(first.Hash)).Err()
		return fmt.Errorf("store account: %w", err)
	}
	auditlog.Announce(ctx, s.rdb, a.ID)
	return nil
}

// claimLookup writes the lookup entry of a new key (create-only).
func (s *Store) claimLookup(ctx context.Context, hash, acct string) error {
	ok, err := s.rdb.SetNX(ctx, apiKeyKey(hash), acct, 0).Result()
	if err == nil && !ok {
		err = errors.New("API key hash collision")
	}
	if err != nil {
		return fmt.Errorf("store API key: %w", err)
	}
	return nil
}

// resolveKeyScript checks, on the account's slot, that the key with the
// lookup entry's hash is live, and notes its use. KEYS: keys, keys:used,
// account; ARGV: id, hash, prefix, name. A key from before keys were
// listed (the account has no keys hash at all, which a live account of
// today's layout never lacks: its last key cannot be revoked) is the
// account's only key: it is adopted as ARGV, created with the account.
// No key of an account being erased resolves. Returns 1 for a live key, 0
// otherwise.
var resolveKeyScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[3], 'erasing') == 1 then return 0 end
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if rec then
  if cjson.decode(rec).hash ~= ARGV[2] then return 0 end
else
  if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
  local created = redis.call('HGET', KEYS[3], 'created') or ''
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({name = ARGV[4], prefix = ARGV[3], hash = ARGV[2], created = created}))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local used = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if now - used >= 60000 then
  redis.call('HSET', KEYS[2], ARGV[1], string.format('%.0f', now))
end
return 1`)

// ResolveKey implements registry.Store: the lookup entry names the
// account, whose keys hash (authoritative) must hold the key.
func (s *Store) ResolveKey(ctx context.Context, k registry.APIKey) (string, error) {
	acct, err := s.rdb.Get(ctx, apiKeyKey(k.Hash)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up API key: %w", err)
	}
	live, err := resolveKeyScript.Run(ctx, s.rdb, []string{keysKey(acct), keysUsedKey(acct), accountKey(acct)},
		k.ID, k.Hash, k.Prefix, k.Name).Int()
	if err != nil {
		return "", fmt.Errorf("check API key: %w", err)
	}
	if live != 1 {
		return "", nil // revoked (its lookup entry is left over) or its account is gone
	}
	return acct, nil
}

// CreateAPIKey implements registry.Store: the lookup entry first (create-
// only, another slot), then the record in the account's transaction.
func (s *Store) CreateAPIKey(ctx context.Context, acct string, k registry.APIKey, limit int, ent auditlog.Entry) error {
	rec, err := encodeKey(k)
	if err != nil {
		return err
	}
	if err := s.claimLookup(ctx, k.Hash, acct); err != nil {
		return err
	}
	err = s.changeKeys(ctx, acct, func(keys map[string]registry.APIKey) (func(redis.Pipeliner), error) {
		if len(keys) >= limit {
			return nil, apierr.Wrap(apierr.ErrFailedPrecondition,
				"the account has %d API keys, the most it may hold (%d): revoke one before creating another", len(keys), limit)
		}
		return func(p redis.Pipeliner) {
			p.HSet(ctx, keysKey(acct), k.ID, rec)
			auditlog.Add(ctx, p, ent)
		}, nil
	})
	if err != nil {
		_ = s.rdb.Del(context.WithoutCancel(ctx), apiKeyKey(k.Hash)).Err()
		return err
	}
	s.changed(ctx, acct)
	return nil
}

// RevokeAPIKey implements registry.Store: the record leaves in the
// account's transaction (from then on the key resolves to nothing), then
// its lookup entry is removed (an entry left over by a failure resolves to
// nothing too) and the change is announced, so caches drop it at once.
func (s *Store) RevokeAPIKey(ctx context.Context, acct, id string, ent auditlog.Entry) (registry.APIKey, error) {
	var revoked registry.APIKey
	err := s.changeKeys(ctx, acct, func(keys map[string]registry.APIKey) (func(redis.Pipeliner), error) {
		k, ok := keys[id]
		if !ok {
			return nil, apierr.NotFound("API key", id)
		}
		if len(keys) == 1 {
			return nil, apierr.Wrap(apierr.ErrFailedPrecondition,
				"API key %s is the account's last key and cannot be revoked: create another first", id)
		}
		revoked = k
		return func(p redis.Pipeliner) {
			p.HDel(ctx, keysKey(acct), id)
			p.HDel(ctx, keysUsedKey(acct), id)
			auditlog.Add(ctx, p, ent)
		}, nil
	})
	if err != nil {
		return registry.APIKey{}, err
	}
	_ = s.rdb.Del(context.WithoutCancel(ctx), apiKeyKey(revoked.Hash)).Err()
	s.changed(ctx, acct)
	return revoked, nil
}

// changeKeys is the one transaction of every API key change: WATCH the
// account's keys, read them, let decide check the change and say what to
// write, and write it in one MULTI on the account's slot (the audit entry
// of the change joins this MULTI). A concurrent change makes EXEC fail and
// decide runs again on the fresh keys.
func (s *Store) changeKeys(ctx context.Context, acct string, decide func(map[string]registry.APIKey) (func(redis.Pipeliner), error)) error {
	for range maxTxRetries {
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			keys, err := readKeys(ctx, tx, acct)
			if err != nil {
				return err
			}
			write, err := decide(keys)
			if err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				write(p)
				return nil
			})
			return err
		}, keysKey(acct))
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil && !isDomain(err) {
			return fmt.Errorf("change API keys: %w", err)
		}
		return err
	}
	return apierr.Wrap(apierr.ErrUnavailable, "the account's API keys are being changed concurrently; try again")
}

func isDomain(err error) bool {
	return errors.Is(err, apierr.ErrNotFound) || errors.Is(err, apierr.ErrFailedPrecondition)
}

// APIKeys implements registry.Store.
func (s *Store) APIKeys(ctx context.Context, acct string) ([]registry.APIKey, error) {
	keys, err := readKeys(ctx, s.rdb, acct)
	if err != nil {
		return nil, err
	}
	out := make([]registry.APIKey, 0, len(keys))
	for _, k := range keys {
		out = append(out, k)
	}
	return out, nil
}

// readKeys reads an account's key records and their last uses.
func readKeys(ctx context.Context, c redis.Cmdable, acct string) (map[string]registry.APIKey, error) {
	recs := c.HGetAll(ctx, keysKey(acct))
	used := c.HGetAll(ctx, keysUsedKey(acct))
	if err := recs.Err(); err != nil {
		return nil, fmt.Errorf("read API keys: %w", err)
	}
	if err := used.Err(); err != nil {
		return nil, fmt.Errorf("read API keys: %w", err)
	}
	out := make(map[string]registry.APIKey, len(recs.Val()))
	for id, rec := range recs.Val() {
		k, err := decodeKey(id, rec)
		if err != nil {
			return nil, err
		}
		if ms, err := strconv.ParseInt(used.Val()[id], 10, 64); err == nil && ms > 0 {
			k.LastUsedTime = time.UnixMilli(ms).UTC()
		}
		out[id] = k
	}
	return out, nil
}

// keyRecord is the stored form of an API key (a storage format; the
// resolve script writes it too).
type keyRecord struct {
	Name    string `json:"name"`
	Prefix  string `json:"prefix"`
	Hash    string `json:"hash"`
	Created string `json:"created"` // RFC 3339; "" if unknown
}

func encodeKey(k registry.APIKey) (string, error) {
	b, err := json.Marshal(keyRecord{Name: k.Name, Prefix: k.Prefix, Hash: k.Hash, Created: k.CreateTime.UTC().Format(time.RFC3339Nano)})
	if err != nil {
		return "", fmt.Errorf("encode API key %s: %w", k.ID, err)
	}
	return string(b), nil
}

func decodeKey(id, rec string) (registry.APIKey, error) {
	var r keyRecord
	if err := json.Unmarshal([]byte(rec), &r); err != nil {
		return registry.APIKey{}, fmt.Errorf("decode API key %s: %w", id, err)
	}
	k := registry.APIKey{ID: id, Name: r.Name, Prefix: r.Prefix, Hash: r.Hash}
	if r.Created != "" {
		t, err := time.Parse(time.RFC3339Nano, r.Created)
		if err != nil {
			return registry.APIKey{}, fmt.Errorf("API key %s: bad created %q", id, r.Created)
		}
		k.CreateTime = t
	}
	return k, nil
}

// GetAccount implements registry.Store.
func (s *Store) GetAccount(ctx context.Context, acct string) (registry.Account, error) {
	m, err := s.rdb.HGetAll(ctx, accountKey(acct)).Result()
	if err != nil {
		return registry.Account{}, fmt.Errorf("read account: %w", err)
	}
	if len(m) == 0 {
		return registry.Account{}, apierr.NotFound("account", acct)
	}
	a := registry.Account{ID: acct, Name: m[FieldName]}
	a.Settings.NotificationEmail = m[FieldNotificationEmail]
	if v := m[FieldCreditsLowThreshold]; v != "" {
		if a.Settings.CreditsLowThreshold, err = strconv.ParseFloat(v, 64); err != nil {
			return registry.Account{}, fmt.Errorf("account %s: bad %s %q", acct, FieldCreditsLowThreshold, v)
		}
	}
	if v := m[FieldCreated]; v != "" {
		if a.CreateTime, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return registry.Account{}, fmt.Errorf("account %s: bad %s %q", acct, FieldCreated, v)
		}
	}
	return a, nil
}

// updateSettingsScript writes settings fields only if the account exists,
// so a settings update never resurrects a deleted account as a stub.
// KEYS: account, audit; ARGV: entry id, entry JSON, then field, value...
// The audit entry is written by the same script.
var updateSettingsScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1`)

// UpdateSettings implements registry.Store.
func (s *Store) UpdateSettings(ctx context.Context, acct string, st registry.Settings, mask registry.SettingsMask, ent auditlog.Entry) error {
	args := []any{ent.ID, ent.Encode()}
	if mask.NotificationEmail {
		args = append(args, FieldNotificationEmail, st.NotificationEmail)
	}
	if mask.CreditsLowThreshold {
		args = append(args, FieldCreditsLowThreshold, formatFloat(st.CreditsLowThreshold))
	}
	if len(args) == 2 {
		return nil
	}
	n, err := updateSettingsScript.Run(ctx, s.rdb, []string{accountKey(acct), auditlog.Key(acct)}, args...).Int()
	if err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	if n == 0 {
		return apierr.NotFound("account", acct)
	}
	s.changed(ctx, acct)
	return nil
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// ---- endpoints ----

// CreateEndpoint implements registry.Store: the endpoint JSON, its place in
// the list and the version bump in one MULTI.
func (s *Store) CreateEndpoint(ctx context.Context, e registry.Endpoint, ent auditlog.Entry) error {
	data, err := encodeEndpoint(e)
	if err != nil {
		return err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, endpointKey(e.AccountID, e.ID), data, 0)
		p.ZAdd(ctx, endpointsKey(e.AccountID), redis.Z{Score: float64(e.CreateTime.UnixMilli()), Member: e.ID})
		p.Incr(ctx, versionKey(e.AccountID))
		auditlog.Add(ctx, p, ent)
		return nil
	})
	if err != nil {
		return fmt.Errorf("store endpoint: %w", err)
	}
	s.changed(ctx, e.AccountID)
	return nil
}

// changed announces an endpoint change. The change is already committed, so
// a failed PUBLISH is not the caller's failure: caches also compare the
// :ver counter.
func (s *Store) changed(ctx context.Context, acct string) {
	_ = s.rdb.Publish(context.WithoutCancel(ctx), changefeed.Channel, acct).Err()
	auditlog.Announce(ctx, s.rdb, acct)
}

// GetEndpoint implements registry.Store.
func (s *Store) GetEndpoint(ctx context.Context, acct, id string) (registry.Endpoint, error) {
	data, err := s.rdb.Get(ctx, endpointKey(acct, id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return registry.Endpoint{}, apierr.NotFound("endpoint", id)
	}
	if err != nil {
		return registry.Endpoint{}, fmt.Errorf("read endpoint: %w", err)
	}
	return decodeEndpoint(acct, data)
}

// ListEndpoints implements registry.Store. Endpoints created in the same
// millisecond share a score and are ordered by id, so the cursor is
// (score, id): the scan starts at the score and skips ids up to the
// cursor's.
func (s *Store) ListEndpoints(ctx context.Context, acct string, after registry.Cursor, limit int) ([]registry.Endpoint, bool, error) {
	start := "-inf"
	if after.ID != "" {
		start = strconv.FormatInt(after.CreateMillis, 10)
	}
	var idList []string
	for offset := 0; len(idList) <= limit; {
		batch, err := s.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
			Key: endpointsKey(acct), Start: start, Stop: "+inf", ByScore: true,
			Offset: int64(offset), Count: int64(limit + 1),
		}).Result()
		if err != nil {
			return nil, false, fmt.Errorf("list endpoints: %w", err)
		}
		for _, z := range batch {
			id, _ := z.Member.(string)
			if after.ID != "" && int64(z.Score) == after.CreateMillis && id <= after.ID {
				continue
			}
			idList = append(idList, id)
		}
		offset += len(batch)
		if len(batch) < limit+1 {
			break
		}
	}
	more := len(idList) > limit
	if more {
		idList = idList[:limit]
	}
	eps, err := s.load(ctx, acct, idList)
	return eps, more, err
}

// AllEndpoints implements registry.Store.
func (s *Store) AllEndpoints(ctx context.Context, acct string) ([]registry.Endpoint, error) {
	idList, err := s.rdb.ZRange(ctx, endpointsKey(acct), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("list endpoints: %w", err)
	}
	return s.load(ctx, acct, idList)
}

// load reads endpoints in one MGET (same slot); ids deleted meanwhile are
// skipped.
func (s *Store) load(ctx context.Context, acct string, idList []string) ([]registry.Endpoint, error) {
	out := make([]registry.Endpoint, 0, len(idList))
	if len(idList) == 0 {
		return out, nil
	}
	keys := make([]string, len(idList))
	for i, id := range idList {
		keys[i] = endpointKey(acct, id)
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("read endpoints: %w", err)
	}
	for _, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		e, err := decodeEndpoint(acct, []byte(str))
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// UpdateEndpoint implements registry.Store with WATCH on the endpoint key:
// a concurrent change makes EXEC fail and the change is applied again.
func (s *Store) UpdateEndpoint(ctx context.Context, acct, id string, change func(*registry.Endpoint) (bool, error), ent *auditlog.Entry) (registry.Endpoint, error) {
	key := endpointKey(acct, id)
	for range maxTxRetries {
		var out registry.Endpoint
		var wrote bool
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			data, err := tx.Get(ctx, key).Bytes()
			if errors.Is(err, redis.Nil) {
				return apierr.NotFound("endpoint", id)
			}
			if err != nil {
				return fmt.Errorf("read endpoint: %w", err)
			}
			e, err := decodeEndpoint(acct, data)
			if err != nil {
				return err
			}
			ok, err := change(&e)
			if err != nil {
				return err
			}
			out = e
			if !ok {
				return nil
			}
			enc, err := encodeEndpoint(e)
			if err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, key, enc, 0)
				p.Incr(ctx, versionKey(acct))
				if ent != nil {
					auditlog.Add(ctx, p, *ent)
				}
				return nil
			})
			wrote = err == nil
			return err
		}, key)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil {
			return registry.Endpoint{}, err
		}
		if wrote {
			s.changed(ctx, acct)
		}
		return out, nil
	}
	return registry.Endpoint{}, apierr.Wrap(apierr.ErrUnavailable, "endpoint %s is being changed concurrently; try again", id)
}

// deleteEndpointScript removes an endpoint and writes its audit entry only
// if it existed. KEYS: endpoint, eps, ver, audit; ARGV: id, entry id,
// entry JSON.
var deleteEndpointScript = redis.NewScript(`
if redis.call('DEL', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
return 1`)

// DeleteEndpoint implements registry.Store: the endpoint, its place in the
// list, the version bump and the audit entry in one script.
func (s *Store) DeleteEndpoint(ctx context.Context, acct, id string, ent auditlog.Entry) error {
	n, err := deleteEndpointScript.Run(ctx, s.rdb,
		[]string{endpointKey(acct, id), endpointsKey(acct), versionKey(acct), auditlog.Key(acct)},
		id, ent.ID, ent.Encode()).Int()
	if err != nil {
		return fmt.Errorf("delete endpoint: %w", err)
	}
	if n == 0 {
		return apierr.NotFound("endpoint", id)
	}
	s.changed(ctx, acct)
	return nil
}

// EnsureKeyCheck implements registry.Store.
func (s *Store) EnsureKeyCheck(ctx context.Context, sealed string) (string, error) {
	if err := s.rdb.SetNX(ctx, KeyCheckKey, sealed, 0).Err(); err != nil {
		return "", err
	}
	return s.rdb.Get(ctx, KeyCheckKey).Result()
}

// ---- JSON ----

// endpointRecord is the stored form of an endpoint; its field names are a
// storage format, kept stable independently of the domain types.
type endpointRecord struct {
	ID          string            `json:"id"`
	URL         string            `json:"url"`
	EventTypes  []string          `json:"event_types"`
	Description string            `json:"description,omitempty"`
	Status      string            `json:"status"`
	Headers     map[string]string `json:"headers,omitempty"`
	RateLimit   int               `json:"rate_limit,omitempty"`
	// Ordering is absent in records written before orderings existed:
	// they read as unordered.
	Ordering       string         `json:"ordering,omitempty"`
	DisabledReason string         `json:"disabled_reason,omitempty"`
	DisableTime    time.Time      `json:"disable_time,omitzero"`
	CreateTime     time.Time      `json:"create_time"`
	UpdateTime     time.Time      `json:"update_time"`
	Secrets        []secretRecord `json:"secrets"`
}

type secretRecord struct {
	Sealed     string    `json:"sealed"`
	ExpireTime time.Time `json:"expire_time,omitzero"`
}

func encodeEndpoint(e registry.Endpoint) ([]byte, error) {
	r := endpointRecord{
		ID: e.ID, URL: e.URL, EventTypes: e.EventTypes, Description: e.Description,
		Status: string(e.Status), Headers: e.Headers, RateLimit: e.RateLimit, Ordering: string(e.Ordering),
		DisabledReason: e.DisabledReason, DisableTime: e.DisableTime.UTC(), CreateTime: e.CreateTime.UTC(), UpdateTime: e.UpdateTime.UTC(),
	}
	for _, sec := range e.Secrets {
		sr := secretRecord{Sealed: sec.Sealed}
		if !sec.ExpireTime.IsZero() {
			sr.ExpireTime = sec.ExpireTime.UTC()
		}
		r.Secrets = append(r.Secrets, sr)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode endpoint %s: %w", e.ID, err)
	}
	return data, nil
}

func decodeEndpoint(acct string, data []byte) (registry.Endpoint, error) {
	var r endpointRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return registry.Endpoint{}, fmt.Errorf("decode endpoint of %s: %w", acct, err)
	}
	e := registry.Endpoint{
		ID: r.ID, AccountID: acct, URL: r.URL, EventTypes: r.EventTypes, Description: r.Description,
		Status: registry.Status(r.Status), Headers: r.Headers, RateLimit: r.RateLimit, DisabledReason: r.DisabledReason,
		Ordering:    registry.Ordering(r.Ordering),
		DisableTime: r.DisableTime, CreateTime: r.CreateTime, UpdateTime: r.UpdateTime,
	}
	if e.Ordering == "" {
		e.Ordering = registry.OrderingUnordered
	}
	for _, sr := range r.Secrets {
		e.Secrets = append(e.Secrets, registry.SealedSecret{Sealed: sr.Sealed, ExpireTime: sr.ExpireTime})
	}
	return e, nil
}
