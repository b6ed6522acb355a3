// Package eventstore keeps each event once in Redis: ingestion writes it,
// the delivery service reads its payload at send time. The key layout lives
// here only.
package eventstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/pkg/shard"
)

// Event is a stored event.
type Event struct {
	ID             string
	AccountID      string
	Type           string
	Payload        []byte // the exact JSON body receivers get
	CreateTime     time.Time
	IdempotencyKey string
	UploadID       string
	// OrderingKey is the producer's ordering key ("" when it set none).
	OrderingKey string
	TraceID     string
	// FanoutDone is set once every delivery of the event is scheduled.
	FanoutDone    bool
	DeliveryCount int
}

// Store reads and writes events.
//
// Expiry. An event with deliveries never expires once its fan-out is
// marked done (MarkFannedOutMany PERSISTs it): its deliveries may stay
// live, retrying or parked for up to the schedule's total plus
// PARKED_RETENTION, and afterwards wait in Redis for the archiver however
// long PostgreSQL is unreachable; it leaves Redis only by DeleteDone, after
// history holds it and all its deliveries. Two kinds keep a TTL:
//   - an event whose fan-out is not marked done: its publish was not
//     acknowledged (ingestion failed or died between storing it and marking
//     the fan-out). The producer's retry (same idempotency key or id) fans it
//     out again and marks it, which removes the TTL; without a retry nothing
//     else ever ends it, so it expires after the unfinished TTL
//     (SetUnfinishedTTL; ingestion uses max(DELIVERY_RETENTION,
//     HISTORY_RETENTION), and HISTORY_RETENTION is at least
//     PARKED_RETENTION plus the schedule's total plus 1 day, so the deliveries of a partial fan-out
//     have all ended long before), and the archiver's waiting list then drops
//     it.
//
// An event fanned out to no delivery at all is filed on the archiver's
// waiting list when its fan-out is marked, and moves to history from there.
type Store struct {
	rdb        redis.UniversalClient
	retention  time.Duration
	unfinished time.Duration
}

// New returns a Store. Events whose fan-out is not marked done expire
// after the unfinished TTL (SetUnfinishedTTL; retention until set); other
// events never expire.
func New(rdb redis.UniversalClient, retention time.Duration) *Store {
	return &Store{rdb: rdb, retention: retention, unfinished: retention}
}

// SetUnfinishedTTL sets how long an event whose fan-out is never marked
// done stays in Redis; never less than retention.
func (s *Store) SetUnfinishedTTL(d time.Duration) {
	s.unfinished = max(d, s.retention)
}

// Key is the Redis key of an event (one hash per event).
func Key(id string) string { return "wh:evt:" + id }

// ListKey is the key of an account's event list (a zset of event ids
// scored by the time part of the id): ingestion's index adds to it and
// pages it; DeleteDone removes the events it deletes.
func ListKey(accountID string) string { return "wh:{a:" + accountID + "}:events" }

// Put stores the event (FanoutDone false) with the unfinished TTL, unless an event
// of its id is already stored: then it changes nothing and returns an
// apierr.ErrAlreadyExists error.
func (s *Store) Put(ctx context.Context, e *Event) error {
	found, err := s.CreateMany(ctx, []*Event{e})
	if err != nil {
		return err
	}
	if found[0] != nil {
		return apierr.Wrap(apierr.ErrAlreadyExists, "event %s is already stored", e.ID)
	}
	return nil
}

// createScript stores events create-only: when an event's hash already
// holds an event (it has an account) it changes nothing and answers that
// event's fields; otherwise it writes the hash (replacing a fragment
// without an account, which is no event) and its expiry together, and
// answers 1. Written for many keys (redisx.RunForKeys).
//
//	KEYS: the events' hashes
//	ARGV: per key createArity values: expiry (ms), account, type, payload,
//	      created, idem, upload, trace, okey ('' for none)
var createScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS do
  local k, a = KEYS[i], (i - 1) * 9
  if redis.call('HEXISTS', k, 'account') == 1 then
    out[i] = redis.call('HGETALL', k)
  else
    redis.call('DEL', k)
    redis.call('HSET', k, 'account', ARGV[a+2], 'type', ARGV[a+3], 'payload', ARGV[a+4],
      'created', ARGV[a+5], 'idem', ARGV[a+6], 'upload', ARGV[a+7], 'trace', ARGV[a+8],
      'fanout', 0, 'count', 0)
    if ARGV[a+9] ~= '' then redis.call('HSET', k, 'okey', ARGV[a+9]) end
    redis.call('PEXPIRE', k, ARGV[a+1])
    out[i] = 1
  end
end
return out
`)

// createArity is the number of createScript's arguments per event.
const createArity = 9

// CreateMany stores each event (FanoutDone false) unless an event of its id
// is already stored, in one round trip. Each check and write is one atomic
// step, so of any number of concurrent calls for one id exactly one stores
// it and no stored event is ever overwritten. It returns, per event, nil
// when this call stored it, else the event already stored under its id
// (which may belong to another account).
func (s *Store) CreateMany(ctx context.Context, evs []*Event) ([]*Event, error) {
	return s.CreateManyAlso(ctx, evs, nil)
}

// CreateManyAlso is CreateMany that queues also's commands in the same
// round trip, after the creates (another owner's keys written with the
// events, such as their accounts' event lists; nil: none). Their replies
// are not read: also's caller owns them.
func (s *Store) CreateManyAlso(ctx context.Context, evs []*Event, also func(redis.Pipeliner)) ([]*Event, error) {
	found := make([]*Event, len(evs))
	if len(evs) == 0 {
		return found, nil
	}
	keys := make([]string, len(evs))
	args := make([]any, 0, len(evs)*createArity)
	for i, e := range evs {
		keys[i] = Key(e.ID)
		args = append(args, s.unfinished.Milliseconds(), e.AccountID, e.Type, e.Payload,
			e.CreateTime.UnixMilli(), e.IdempotencyKey, e.UploadID, e.TraceID, e.OrderingKey)
	}
	res, err := redisx.RunForKeys(ctx, s.rdb, createScript, keys, args, createArity, also)
	if err != nil {
		return nil, err
	}
	for i, r := range res {
		if fields, ok := r.([]any); ok {
			found[i] = fromFields(evs[i].ID, fields)
		}
	}
	return found, nil
}

// LineKey is the key that orders the event's deliveries to endpoints
// ordered by key: the producer's ordering key, else the upload it is about
// (data.uploadId), else its account (SPEC, "Ordering").
func (e *Event) LineKey() string {
	switch {
	case e.OrderingKey != "":
		return e.OrderingKey
	case e.UploadID != "":
		return e.UploadID
	}
	return e.AccountID
}

// fromFields makes an event of a flat HGETALL reply.
func fromFields(id string, fields []any) *Event {
	m := make(map[string]string, len(fields)/2)
	for k := 0; k+1 < len(fields); k += 2 {
		f, _ := fields[k].(string)
		v, _ := fields[k+1].(string)
		m[f] = v
	}
	return fromHash(id, m)
}

// Fanout records how many deliveries an event got.
type Fanout struct {
	ID    string
	Count int
}

// MarkFannedOut records that n deliveries were scheduled.
func (s *Store) MarkFannedOut(ctx context.Context, id string, n int) error {
	return s.MarkFannedOutMany(ctx, []Fanout{{ID: id, Count: n}})
}

// fanoutScript marks events' fan-out done and removes their expiry: the
// archiver moves each to history once its deliveries did (at once when it
// has none: MarkFannedOutMany files it on the waiting list first). An
// event that is not stored is left so: no fragment is created. Written for
// many keys (redisx.RunForKeys).
//
//	KEYS: the events' hashes
//	ARGV: per event its delivery count
//	returns per event 1 when marked, 0 when it is not stored
var fanoutScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS do
  out[i] = 0
  if redis.call('HEXISTS', KEYS[i], 'account') == 1 then
    redis.call('HSET', KEYS[i], 'fanout', 1, 'count', ARGV[i])
    redis.call('PERSIST', KEYS[i])
    out[i] = 1
  end
end
return out
`)

// WaitKey is the archiver's list of events of shard n to look at without
// a delivery ending (an event with no delivery; one whose deliveries all
// moved before its fan-out was marked): event id → when filed (ms).
func WaitKey(n int) string { return "wh:evtwait:" + shard.Tag(n) }

// WaitShard is the shard of an event id in WaitKey.
func WaitShard(eventID string) int { return shard.Of(eventID) }

// MarkFannedOutMany records the fan-out of several events in one round
// trip. An event with no delivery is first filed on the archiver's waiting
// list (another slot, so a round trip of its own, before the mark): no
// delivery's end will move it, the archiver's waiting pass does.
func (s *Store) MarkFannedOutMany(ctx context.Context, fs []Fanout) error {
	if len(fs) == 0 {
		return nil
	}
	var none []Fanout
	for _, f := range fs {
		if f.Count == 0 {
			none = append(none, f)
		}
	}
	if len(none) > 0 {
		now := float64(time.Now().UnixMilli())
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, f := range none {
				p.ZAddNX(ctx, WaitKey(WaitShard(f.ID)), redis.Z{Score: now, Member: f.ID})
			}
			return nil
		}); err != nil {
			return err
		}
	}
	keys, counts := make([]string, len(fs)), make([]any, len(fs))
	for i, f := range fs {
		keys[i], counts[i] = Key(f.ID), f.Count
	}
	_, err := redisx.RunForKeys(ctx, s.rdb, fanoutScript, keys, counts, 1, nil)
	return err
}

// Get returns the event or an apierr.ErrNotFound error.
func (s *Store) Get(ctx context.Context, id string) (*Event, error) {
	m, err := s.rdb.HGetAll(ctx, Key(id)).Result()
	if err != nil {
		return nil, err
	}
	if len(m) == 0 || m["account"] == "" {
		return nil, apierr.NotFound("event", id)
	}
	return fromHash(id, m), nil
}

// fromHash makes an event of its hash's fields.
func fromHash(id string, m map[string]string) *Event {
	ms, _ := strconv.ParseInt(m["created"], 10, 64)
	n, _ := strconv.Atoi(m["count"])
	return &Event{
		ID: id, AccountID: m["account"], Type: m["type"], Payload: []byte(m["payload"]),
		CreateTime: time.UnixMilli(ms).UTC(), IdempotencyKey: m["idem"], UploadID: m["upload"],
		OrderingKey: m["okey"], TraceID: m["trace"], FanoutDone: m["fanout"] == "1", DeliveryCount: n,
	}
}

// Payload returns only the body of an event.
func (s *Store) Payload(ctx context.Context, id string) ([]byte, error) {
	b, err := s.rdb.HGet(ctx, Key(id), "payload").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, apierr.NotFound("event", id)
	}
	return b, err
}

// PayloadMany reads several events' payloads in one round trip; an event
// that is not stored gets a NotFound error.
func (s *Store) PayloadMany(ctx context.Context, ids []string) ([][]byte, []error) {
	out, errs := make([][]byte, len(ids)), make([]error, len(ids))
	cmds := make([]*redis.StringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGet(ctx, Key(id), "payload")
		}
		return nil
	})
	for i, c := range cmds {
		b, cerr := c.Bytes()
		switch {
		case errors.Is(cerr, redis.Nil):
			errs[i] = apierr.NotFound("event", ids[i])
		case cerr != nil:
			errs[i] = cerr
		case err != nil && !errors.Is(err, redis.Nil):
			errs[i] = err
		default:
			out[i] = b
		}
	}
	return out, errs
}

// Accounts returns the account of each event in one round trip; "" for an
// event that is not stored. Delivery checks with it that a Schedule call
// names the account its events belong to. With payloads, the same read
// returns each stored event's payload too (nil for one not stored), for
// the deliveries that Schedule call starts at once.
func (s *Store) Accounts(ctx context.Context, ids []string, payloads bool) ([]string, [][]byte, error) {
	out := make([]string, len(ids))
	var bodies [][]byte
	if payloads {
		bodies = make([][]byte, len(ids))
	}
	if len(ids) == 0 {
		return out, bodies, nil
	}
	fields := []string{"account"}
	if payloads {
		fields = append(fields, "payload")
	}
	cmds := make([]*redis.SliceCmd, len(ids))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HMGet(ctx, Key(id), fields...)
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	for i, c := range cmds {
		vs, err := c.Result()
		if err != nil {
			return nil, nil, err
		}
		acct, _ := vs[0].(string)
		if acct == "" {
			continue
		}
		out[i] = acct
		if payloads {
			b, _ := vs[1].(string)
			bodies[i] = []byte(b)
		}
	}
	return out, bodies, nil
}

// Moving events to history (issue #12). The delivery service's archiver
// marks the deliveries of an event that have ended (or moved to history
// parked) in the event's own hash: a field "x:<delivery id>" per delivery,
// counted in "ended" only the first time, so marking again after a crash
// counts nothing twice. An event is done when its fan-out is marked done
// and "ended" reaches its delivery count: the archiver archives it with
// the batch that ends its last delivery, then deletes it here.

// markScript marks deliveries of events as ended and reports each event's
// state. An event fanned out to deliveries is PERSISTed here too: one an
// earlier build wrote with a TTL (DELIVERY_RETENTION) is adopted when the
// archiver first meets it, so it waits for its deliveries like a new one.
// Written for many keys (redisx.RunForKeys).
//
//	KEYS: the events' hashes
//	ARGV: per key, its delivery ids joined by commas
//	returns per event {} when it is not stored, else {done (0|1), {fields...}}
var markScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS do
  local k = KEYS[i]
  if redis.call('HEXISTS', k, 'account') == 0 then
    out[i] = {}
  else
    for d in string.gmatch(ARGV[i], '[^,]+') do
      if redis.call('HSETNX', k, 'x:' .. d, 1) == 1 then
        redis.call('HINCRBY', k, 'ended', 1)
      end
    end
    local f = redis.call('HMGET', k, 'fanout', 'count', 'ended')
    if f[1] == '1' and (tonumber(f[2]) or 0) > 0 then redis.call('PERSIST', k) end
    local done = 0
    if f[1] == '1' and (tonumber(f[3]) or 0) >= (tonumber(f[2]) or 0) then done = 1 end
    out[i] = {done, redis.call('HMGET', k, 'account', 'type', 'payload', 'created', 'idem', 'upload', 'trace', 'fanout', 'count')}
  end
end
return out
`)

// deleteDoneScript deletes events that are done (see markScript).
// Written for many keys (redisx.RunForKeys).
//
//	KEYS: the events' hashes
//	returns per event its account when deleted, else 0
var deleteDoneScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS do
  out[i] = 0
  local f = redis.call('HMGET', KEYS[i], 'fanout', 'count', 'ended', 'account')
  if f[1] == '1' and (tonumber(f[3]) or 0) >= (tonumber(f[2]) or 0) then
    redis.call('DEL', KEYS[i])
    out[i] = f[4] or ''
  end
end
return out
`)

// EventState is an event as the archiver sees it.
type EventState struct {
	Event *Event // nil when the event is not stored (expired or moved)
	// Done: fanned out, and every delivery ended or moved.
	Done bool
}

// MarkEnded marks, per event, the given deliveries as ended and returns
// each event's state, in one round trip.
func (s *Store) MarkEnded(ctx context.Context, byEvent map[string][]string) (map[string]EventState, error) {
	ids := make([]string, 0, len(byEvent))
	keys := make([]string, 0, len(byEvent))
	args := make([]any, 0, len(byEvent))
	for id, dlvs := range byEvent {
		ids = append(ids, id)
		keys = append(keys, Key(id))
		args = append(args, strings.Join(dlvs, ","))
	}
	replies, err := redisx.RunForKeys(ctx, s.rdb, markScript, keys, args, 1, nil)
	if err != nil {
		return nil, err
	}
	out := make(map[string]EventState, len(ids))
	names := []string{"account", "type", "payload", "created", "idem", "upload", "trace", "fanout", "count"}
	for i, id := range ids {
		res, _ := replies[i].([]any)
		if len(res) != 2 {
			out[id] = EventState{}
			continue
		}
		vals, _ := res[1].([]any)
		m := make(map[string]string, len(names))
		for j, n := range names {
			if j < len(vals) {
				v, _ := vals[j].(string)
				m[n] = v
			}
		}
		out[id] = EventState{Event: fromHash(id, m), Done: res[0] == int64(1)}
	}
	return out, nil
}

// DeleteDone deletes each event that is still done (an event history
// holds), in one round trip, and reports which it deleted; then it removes
// the deleted ones from their accounts' event lists (ListKey), in a second
// round trip: another slot, so a crash in between leaves entries whose
// event is gone, which ingestion's listing drops as it meets them.
func (s *Store) DeleteDone(ctx context.Context, ids []string) ([]bool, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = Key(id)
	}
	replies, err := redisx.RunForKeys(ctx, s.rdb, deleteDoneScript, keys, nil, 0, nil)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(ids))
	listed := map[string][]any{} // account -> deleted event ids
	var order []string
	for i, id := range ids {
		acct, ok := replies[i].(string)
		if !ok {
			continue
		}
		out[i] = true
		if acct == "" {
			continue
		}
		if _, seen := listed[acct]; !seen {
			order = append(order, acct)
		}
		listed[acct] = append(listed[acct], id)
	}
	if len(order) > 0 {
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, acct := range order {
				p.ZRem(ctx, ListKey(acct), listed[acct]...)
			}
			return nil
		}); err != nil {
			return out, err
		}
	}
	return out, nil
}

// EraseAccount deletes the events in an account's list (the list itself is
// left to the caller, which deletes the account's whole slot last) and
// returns how many it found. Idempotent.
func (s *Store) EraseAccount(ctx context.Context, accountID string) (int, error) {
	n := 0
	err := redisx.ZMembers(ctx, s.rdb, ListKey(accountID), 1000, func(ctx context.Context, list []string) error {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range list {
				p.Del(ctx, Key(id)) // one key per command: events hash to many slots
			}
			return nil
		})
		if err == nil {
			n += len(list)
		}
		return err
	})
	return n, err
}
