// Package index keeps ingestion's own Redis keys (see docs/architecture.md):
//
//	wh:{a:<acct>}:idem:<key>  string  idempotency key -> event id, expires with retention
//	wh:{a:<acct>}:events      zset    event ids scored by creation time (ms), for ListEvents
//
// Both carry the account's hash tag. The events themselves live in
// pkg/eventstore.
package index

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

// Redis implements ingest.Index.
type Redis struct {
	rdb       redis.UniversalClient
	retention time.Duration
}

var _ ingest.Index = (*Redis)(nil)

// New returns an index whose keys and entries live for retention.
func New(rdb redis.UniversalClient, retention time.Duration) *Redis {
	return &Redis{rdb: rdb, retention: retention}
}

// EventsKey is the key of an account's event list.
func EventsKey(accountID string) string { return "wh:{a:" + accountID + "}:events" }

// IdemKey is the key of an account's idempotency key.
func IdemKey(accountID, key string) string { return "wh:{a:" + accountID + "}:idem:" + key }

// Claim implements ingest.Index with SET NX plus a GET of the owner, all
// claims in one pipeline.
func (x *Redis) Claim(ctx context.Context, claims []ingest.Claim) ([]string, error) {
	gets := make([]*redis.StringCmd, len(claims))
	_, err := x.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range claims {
			k := IdemKey(c.AccountID, c.Key)
			p.SetNX(ctx, k, c.EventID, x.retention)
			gets[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	owners := make([]string, len(claims))
	for i, g := range gets {
		v, err := g.Result()
		switch {
		case errors.Is(err, redis.Nil): // expired in between: the key is free
			v = claims[i].EventID
		case err != nil:
			return nil, err
		}
		owners[i] = v
	}
	return owners, nil
}

// Add implements ingest.Index: ZADD per account, then drop entries older
// than retention and renew the list's expiry, in one pipeline.
func (x *Redis) Add(ctx context.Context, now time.Time, evs []*eventstore.Event) error {
	byAcct := make(map[string][]redis.Z)
	var order []string
	for _, e := range evs {
		if _, ok := byAcct[e.AccountID]; !ok {
			order = append(order, e.AccountID)
		}
		byAcct[e.AccountID] = append(byAcct[e.AccountID], redis.Z{Score: float64(e.CreateTime.UnixMilli()), Member: e.ID})
	}
	cutoff := "(" + strconv.FormatInt(now.Add(-x.retention).UnixMilli(), 10)
	_, err := x.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, acct := range order {
			k := EventsKey(acct)
			p.ZAdd(ctx, k, byAcct[acct]...)
			p.ZRemRangeByScore(ctx, k, "-inf", cutoff)
			p.PExpire(ctx, k, x.retention)
		}
		return nil
	})
	return err
}

// Page implements ingest.Index. A cursor is the score (ms) of the last entry
// returned and how many entries of that score were returned, so pages never
// skip an entry even when many events share one millisecond.
func (x *Redis) Page(ctx context.Context, accountID, cursor string, n int) ([]ingest.IndexEntry, bool, error) {
	rng := &redis.ZRangeBy{Max: "+inf", Min: "-inf", Count: int64(n) + 1}
	score, ties := int64(math.MinInt64), 0
	if cursor != "" {
		var ok bool
		if score, ties, ok = decodeCursor(cursor); !ok {
			return nil, false, apierr.Invalid("page_token", "is not a page token from a previous ListEvents call")
		}
		rng.Max, rng.Offset = strconv.FormatInt(score, 10), int64(ties)
	}
	zs, err := x.rdb.ZRevRangeByScoreWithScores(ctx, EventsKey(accountID), rng).Result()
	if err != nil {
		return nil, false, err
	}
	more := len(zs) > n
	if more {
		zs = zs[:n]
	}
	out := make([]ingest.IndexEntry, len(zs))
	for i, z := range zs {
		sc := int64(z.Score)
		if sc == score {
			ties++
		} else {
			score, ties = sc, 1
		}
		id, _ := z.Member.(string)
		out[i] = ingest.IndexEntry{ID: id, Cursor: encodeCursor(score, ties)}
	}
	return out, more, nil
}

func encodeCursor(score int64, ties int) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "e1.%d.%d", score, ties))
}

func decodeCursor(s string) (int64, int, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, 0, false
	}
	parts := strings.Split(string(b), ".")
	if len(parts) != 3 || parts[0] != "e1" {
		return 0, 0, false
	}
	score, err1 := strconv.ParseInt(parts[1], 10, 64)
	ties, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil || ties < 0 {
		return 0, 0, false
	}
	return score, ties, true
}
