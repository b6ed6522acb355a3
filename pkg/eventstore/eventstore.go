// Package eventstore keeps each event once in Redis: ingestion writes it,
// the delivery service reads its payload at send time. The key layout lives
// here only.
package eventstore

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/apierr"
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
	TraceID        string
	// FanoutDone is set once every delivery of the event is scheduled.
	FanoutDone    bool
	DeliveryCount int
}

// Store reads and writes events.
type Store struct {
	rdb       redis.UniversalClient
	retention time.Duration
}

// New returns a Store whose events expire after retention.
func New(rdb redis.UniversalClient, retention time.Duration) *Store {
	return &Store{rdb: rdb, retention: retention}
}

// Key is the Redis key of an event (one hash per event).
func Key(id string) string { return "wh:evt:" + id }

// Put writes the event (FanoutDone false) with its expiry.
func (s *Store) Put(ctx context.Context, e *Event) error {
	return s.PutMany(ctx, []*Event{e})
}

// PutMany writes events in one round trip. Each event's hash and its expiry
// are written in one MULTI, so no event is ever stored without its expiry.
func (s *Store) PutMany(ctx context.Context, evs []*Event) error {
	if len(evs) == 0 {
		return nil
	}
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range evs {
			k := Key(e.ID)
			p.HSet(ctx, k,
				"account", e.AccountID, "type", e.Type, "payload", e.Payload,
				"created", e.CreateTime.UnixMilli(), "idem", e.IdempotencyKey,
				"upload", e.UploadID, "trace", e.TraceID, "fanout", 0, "count", 0)
			p.PExpire(ctx, k, s.retention)
		}
		return nil
	})
	return err
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

// MarkFannedOutMany records the fan-out of several events in one round trip.
func (s *Store) MarkFannedOutMany(ctx context.Context, fs []Fanout) error {
	if len(fs) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, f := range fs {
			p.HSet(ctx, Key(f.ID), "fanout", 1, "count", f.Count)
		}
		return nil
	})
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
	ms, _ := strconv.ParseInt(m["created"], 10, 64)
	n, _ := strconv.Atoi(m["count"])
	return &Event{
		ID: id, AccountID: m["account"], Type: m["type"], Payload: []byte(m["payload"]),
		CreateTime: time.UnixMilli(ms).UTC(), IdempotencyKey: m["idem"], UploadID: m["upload"],
		TraceID: m["trace"], FanoutDone: m["fanout"] == "1", DeliveryCount: n,
	}, nil
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
// names the account its events belong to.
func (s *Store) Accounts(ctx context.Context, ids []string) ([]string, error) {
	out := make([]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	cmds := make([]*redis.StringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGet(ctx, Key(id), "account")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	for i, c := range cmds {
		v, cerr := c.Result()
		switch {
		case errors.Is(cerr, redis.Nil):
		case cerr != nil:
			return nil, cerr
		default:
			out[i] = v
		}
	}
	return out, nil
}
