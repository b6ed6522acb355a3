// Package index keeps ingestion's own Redis keys (see docs/architecture.md):
//
//	wh:{a:<acct>}:idemb:<bucket>:<level>:<sub>  hash    idempotency markers (markers.go): key hash -> event id + claim time, for IDEMPOTENCY_WINDOW
//	wh:{a:<acct>}:idem:<key>                    string  the previous build's marker: read until it expires, never written
//	wh:{a:<acct>}:events                        zset    event ids scored by the time part of the id (ms), for ListEvents
//
// It is the only owner of the idempotency markers' layout: every publish
// (producers', credits.low, operational events) claims its key through
// Claim.
//
// Scored by the id's time, the list is in id order: members of one score
// sort by their bytes, which for ids of one prefix is id order (Crockford
// base32 is in ASCII order). That is the order of the history tier, so one
// cursor (the last id) continues both. The archiver removes an event's
// entry once it deleted the event (eventstore.DeleteDone); entries whose
// event left Redis otherwise (expired, or a crash in between) are dropped
// by Forget as ListEvents meets them (and by age on every Add).
//
// Both carry the account's hash tag. The events themselves live in
// pkg/eventstore.
package index

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

// Redis implements ingest.Index.
type Redis struct {
	rdb       redis.UniversalClient
	retention time.Duration
	window    time.Duration
}

var _ ingest.Index = (*Redis)(nil)

// New returns an index whose event-list entries live for retention and
// whose idempotency markers hold for window (IDEMPOTENCY_WINDOW).
func New(rdb redis.UniversalClient, retention, window time.Duration) *Redis {
	return &Redis{rdb: rdb, retention: retention, window: window}
}

// EventsKey is the key of an account's event list (defined by
// pkg/eventstore, whose DeleteDone removes the events the archiver moves).
func EventsKey(accountID string) string { return eventstore.ListKey(accountID) }

// IdemKey is the key of an idempotency key in the previous build's layout
// (one string per key, expiring with DELIVERY_RETENTION): still read, never
// written, so an upgrade honours the markers written before it until they
// expire.
func IdemKey(accountID, key string) string { return "wh:{a:" + accountID + "}:idem:" + key }

// Claim implements ingest.Index: one claim script per claim (markers.go),
// all in one pipeline.
func (x *Redis) Claim(ctx context.Context, claims []ingest.Claim) ([]ingest.KeyOwner, error) {
	replies, err := x.runMarkers(ctx, claims, true)
	if err != nil {
		return nil, err
	}
	owners := make([]ingest.KeyOwner, len(claims))
	for i, r := range replies {
		if r.found { // held within the window (or by an old-layout marker)
			owners[i] = ingest.KeyOwner{EventID: r.eventID}
			continue
		}
		owners[i] = ingest.KeyOwner{EventID: claims[i].EventID, New: true}
	}
	return owners, nil
}

// Owner returns the event that holds an account's idempotency key at
// time at (within the window, or an old-layout marker), if any. It changes
// nothing (tests and operators).
func (x *Redis) Owner(ctx context.Context, accountID, key string, at time.Time) (string, bool, error) {
	r, err := x.runMarkers(ctx, []ingest.Claim{{AccountID: accountID, Key: key, At: at}}, false)
	if err != nil {
		return "", false, err
	}
	return r[0].eventID, r[0].found, nil
}

// Add implements ingest.Index: ZADD per account, then drop entries older
// than retention and renew the list's expiry, in one pipeline.
func (x *Redis) Add(ctx context.Context, now time.Time, evs []*eventstore.Event) error {
	_, err := x.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		x.add(ctx, p, now, evs)
		return nil
	})
	return err
}

// add queues Add's commands on p.
func (x *Redis) add(ctx context.Context, p redis.Pipeliner, now time.Time, evs []*eventstore.Event) {
	byAcct := make(map[string][]redis.Z)
	var order []string
	for _, e := range evs {
		if _, ok := byAcct[e.AccountID]; !ok {
			order = append(order, e.AccountID)
		}
		byAcct[e.AccountID] = append(byAcct[e.AccountID], redis.Z{Score: float64(score(e)), Member: e.ID})
	}
	cutoff := "(" + strconv.FormatInt(now.Add(-x.retention).UnixMilli(), 10)
	for _, acct := range order {
		k := EventsKey(acct)
		p.ZAdd(ctx, k, byAcct[acct]...)
		p.ZRemRangeByScore(ctx, k, "-inf", cutoff)
		p.PExpire(ctx, k, x.retention)
	}
}

// ListingStore is the event store whose CreateManyListed lists the events
// it creates in their accounts' event lists (Add) in the same round trip
// (ingest.ListingStore): a publish then costs one fsync'd write less. An
// entry whose event was not created (a failed write) points at nothing
// and is dropped by the read that meets it, as an archived event's is;
// one whose id another account's event holds is skipped by reads and
// trimmed by age.
type ListingStore struct {
	*eventstore.Store
	Index *Redis
}

// CreateManyListed is eventstore.Store.CreateMany with Add of the same
// events in its round trip.
func (s ListingStore) CreateManyListed(ctx context.Context, now time.Time, evs []*eventstore.Event) ([]*eventstore.Event, error) {
	return s.CreateManyAlso(ctx, evs, func(p redis.Pipeliner) { s.Index.add(ctx, p, now, evs) })
}

// score is an entry's score: the time part of the event's id (ms).
func score(e *eventstore.Event) int64 {
	if t, ok := ids.Time(e.ID); ok {
		return t.UnixMilli()
	}
	return e.CreateTime.UnixMilli()
}

// Page implements ingest.Index: the entries of the cursor's millisecond
// that sort before it, then the older ones, in one pipeline.
func (x *Redis) Page(ctx context.Context, accountID string, r ingest.IndexRange, n int) ([]string, bool, error) {
	if n <= 0 {
		return nil, true, nil
	}
	key := EventsKey(accountID)
	hi, lo := "+inf", "-inf"
	if !r.Until.IsZero() {
		hi = "(" + strconv.FormatInt(r.Until.UnixMilli(), 10)
	}
	if !r.Since.IsZero() {
		lo = strconv.FormatInt(r.Since.UnixMilli(), 10)
	}
	var tie *redis.StringSliceCmd // the cursor's millisecond
	var tieMS int64
	if r.Before != "" {
		t, ok := ids.Time(r.Before)
		if !ok {
			return nil, false, nil
		}
		tieMS = t.UnixMilli()
		if r.Until.IsZero() || tieMS < r.Until.UnixMilli() {
			hi = "(" + strconv.FormatInt(tieMS, 10)
		} else {
			r.Before = "" // the cursor lies past Until: Until bounds alone
		}
	}
	var rest *redis.StringSliceCmd
	_, err := x.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if r.Before != "" && (r.Since.IsZero() || tieMS >= r.Since.UnixMilli()) {
			ms := strconv.FormatInt(tieMS, 10)
			tie = p.ZRangeByScore(ctx, key, &redis.ZRangeBy{Min: ms, Max: ms})
		}
		rest = p.ZRevRangeByScore(ctx, key, &redis.ZRangeBy{Max: hi, Min: lo, Count: int64(n) + 1})
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	var out []string
	if tie != nil {
		for _, id := range slices.Backward(tie.Val()) {
			if id < r.Before {
				out = append(out, id)
			}
		}
	}
	out = append(out, rest.Val()...)
	more := len(out) > n
	if more {
		out = out[:n]
	}
	return out, more, nil
}

// Forget implements ingest.Index.
func (x *Redis) Forget(ctx context.Context, accountID string, idList []string) error {
	if len(idList) == 0 {
		return nil
	}
	members := make([]any, len(idList))
	for i, id := range idList {
		members[i] = id
	}
	return x.rdb.ZRem(ctx, EventsKey(accountID), members...).Err()
}
