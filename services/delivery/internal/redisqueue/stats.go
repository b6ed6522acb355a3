package redisqueue

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// Stats reads the schedule gauges: ZCARD and the oldest due item of every
// shard, SCARD of every parked set and ZCARD of every pending-disables set, in one pipeline per shard (each
// command touches one key, so this works on Redis Cluster too).
func (q *Queue) Stats(ctx context.Context, now time.Time) (delivery.ScheduleStats, error) {
	var s delivery.ScheduleStats
	pipe := q.rdb.Pipeline()
	type shard struct {
		card, parked, disables, waiting *redis.IntCmd
		oldest                          *redis.ZSliceCmd
	}
	shards := make([]shard, Shards)
	nowMS := strconv.FormatInt(now.UnixMilli(), 10)
	for n := range Shards {
		shards[n] = shard{
			card:     pipe.ZCard(ctx, schedKey(n)),
			parked:   pipe.SCard(ctx, parkedKey(n)),
			disables: pipe.ZCard(ctx, disablesKey(n)),
			waiting:  pipe.ZCard(ctx, waitingKey(n)),
			oldest:   pipe.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{Key: schedKey(n), ByScore: true, Start: "-inf", Stop: nowMS, Count: 1}),
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return s, err
	}
	for _, sh := range shards {
		s.Depth += sh.card.Val()
		s.Parked += sh.parked.Val()
		s.PendingDisables += sh.disables.Val()
		s.Waiting += sh.waiting.Val()
		if z := sh.oldest.Val(); len(z) > 0 {
			t := time.UnixMilli(int64(z[0].Score))
			if s.OldestDue.IsZero() || t.Before(s.OldestDue) {
				s.OldestDue = t
			}
		}
	}
	return s, nil
}
