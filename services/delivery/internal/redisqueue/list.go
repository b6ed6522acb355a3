package redisqueue

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// maxScan bounds the index entries one List call reads; a page that is not
// full by then ends early with a token to continue.
const maxScan = 2000

// Scan is one tier's part of a merged listing (pkg/history's merged-read
// contract): the matching deliveries before the cursor, newest first, and
// the version of every delivery it read, matching or not, so that a
// history copy it supersedes is not listed.
type Scan struct {
	Matches []delivery.Delivery
	Seen    map[string]int64
	// Floor is the id of the last index entry read when the scan stopped
	// at maxScan before the index ended ("" when it ended): nothing below
	// it was looked at.
	Floor string
}

// idScore is the account index's score of a delivery: the time part of
// its id (ms), so that the index's reverse order (score, then member) is
// the ids' own order, the order of the merged listing.
func idScore(id string, fallback time.Time) float64 {
	if t, ok := ids.Time(id); ok {
		return float64(t.UnixMilli())
	}
	return float64(ms(fallback))
}

// ScanAccount reads the account's index newest first, strictly before the
// id after ("" from the start), within [start, end) of the ids' time
// (zero: unbounded), keeping up to limit deliveries match accepts. Index
// entries whose delivery is gone (moved to history, expired) or belongs to
// another account are skipped and removed.
func (q *Queue) ScanAccount(ctx context.Context, accountID, after string, start, end time.Time, limit int, match func(*delivery.Delivery) bool) (Scan, error) {
	key := accountKey(accountID)
	out := Scan{Seen: map[string]int64{}}
	minS := "-inf"
	if !start.IsZero() {
		minS = strconv.FormatInt(start.UnixMilli(), 10)
	}
	maxS := "+inf"
	if !end.IsZero() {
		maxS = "(" + strconv.FormatInt(end.UnixMilli(), 10)
	}
	var afterScore float64 = -1
	if after != "" {
		t, ok := ids.Time(after)
		if !ok {
			return out, apierr.Invalid("page_token", "is not a token returned by ListDeliveries")
		}
		afterScore = float64(t.UnixMilli())
		if end.IsZero() || t.UnixMilli() < end.UnixMilli() {
			maxS = strconv.FormatInt(t.UnixMilli(), 10)
		}
	}
	chunk := int64(max(limit*2, 50))
	scanned := 0
	for off := int64(0); ; off += chunk {
		zs, err := q.rdb.ZRevRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Min: minS, Max: maxS, Offset: off, Count: chunk}).Result()
		if err != nil {
			return out, err
		}
		hashes := make([]*redis.MapStringStringCmd, len(zs))
		if len(zs) > 0 {
			if _, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i, z := range zs {
					hashes[i] = p.HGetAll(ctx, DeliveryKey(z.Member.(string)))
				}
				return nil
			}); err != nil && !errors.Is(err, redis.Nil) {
				return out, err
			}
		}
		var gone []any
		for i, z := range zs {
			id := z.Member.(string)
			if after != "" && z.Score == afterScore && id >= after {
				continue // at the cursor's time but not before it
			}
			scanned++
			m := hashes[i].Val()
			if len(m) == 0 || m["account"] != accountID {
				gone = append(gone, id)
				continue
			}
			d := parseHash(id, m)
			d.Body = nil
			out.Seen[id] = d.Version
			if match == nil || match(d) {
				out.Matches = append(out.Matches, *d)
				if len(out.Matches) == limit {
					q.dropGone(ctx, key, gone)
					return out, nil
				}
			}
			if scanned >= maxScan {
				out.Floor = id
				q.dropGone(ctx, key, gone)
				return out, nil
			}
		}
		q.dropGone(ctx, key, gone)
		if int64(len(zs)) < chunk {
			return out, nil
		}
		off -= int64(len(gone)) // removed entries no longer count in the offset
	}
}

func (q *Queue) dropGone(ctx context.Context, key string, gone []any) {
	if len(gone) > 0 {
		_ = q.rdb.ZRem(ctx, key, gone...).Err()
	}
}

// List pages through an account's deliveries in Redis, newest first (by
// id); the page token is the last id returned.
func (q *Queue) List(ctx context.Context, accountID string, lq delivery.ListQuery) ([]delivery.Delivery, string, error) {
	sc, err := q.ScanAccount(ctx, accountID, lq.PageToken, lq.Start, lq.End, lq.PageSize, lq.Match)
	if err != nil {
		return nil, "", err
	}
	next := sc.Floor
	if len(sc.Matches) == lq.PageSize {
		next = sc.Matches[len(sc.Matches)-1].ID
	}
	return sc.Matches, next, nil
}

// Listen calls wake whenever another process (or this one) schedules due
// work, and whenever a Complete of this process released the next delivery
// of an ordered line, until the returned stop function is called.
func (q *Queue) Listen(wake func()) (stop func()) {
	key := &wake
	q.wakers.Store(key, struct{}{})
	ctx, cancel := context.WithCancel(context.Background())
	ps := q.rdb.Subscribe(ctx, WakeChannel)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ch := ps.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-ch:
				if !ok {
					return
				}
				wake()
			}
		}
	}()
	return func() {
		q.wakers.Delete(key)
		cancel()
		_ = ps.Close()
		<-done
	}
}
