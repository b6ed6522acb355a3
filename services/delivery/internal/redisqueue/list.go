package redisqueue

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// maxScan bounds the index entries one List call reads; a page that is not
// full by then ends early with a token to continue.
const maxScan = 2000

// cursor is the position after the last index entry returned: entries with
// a lower score, or the same score past the first Skip of them (a reverse
// range lists equal scores in a fixed order).
type cursor struct {
	Max  int64 `json:"m"`
	Skip int64 `json:"s"`
}

func (c cursor) token() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parseToken(s string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.Skip < 0 {
		return cursor{}, apierr.Invalid("page_token", "is not a token returned by ListDeliveries")
	}
	return c, nil
}

// List pages through an account's index, newest first, reading the
// deliveries and keeping those q.Match accepts. Index entries whose
// delivery has expired, or belongs to another account (the index is only
// where ids are filed; the delivery's own record says whose it is), are
// skipped and removed.
func (q *Queue) List(ctx context.Context, accountID string, lq delivery.ListQuery) ([]delivery.Delivery, string, error) {
	key := accountKey(accountID)
	minS := "-inf"
	if !lq.Start.IsZero() {
		minS = strconv.FormatInt(lq.Start.UnixMilli(), 10)
	}
	cur := cursor{Max: -1}
	if !lq.End.IsZero() {
		cur.Max = lq.End.UnixMilli()
	}
	if lq.PageToken != "" {
		var err error
		if cur, err = parseToken(lq.PageToken); err != nil {
			return nil, "", err
		}
	}
	chunk := int64(max(lq.PageSize*2, 50))
	var out []delivery.Delivery
	scanned := 0
	for {
		maxS := "+inf"
		if cur.Max >= 0 {
			maxS = strconv.FormatInt(cur.Max, 10)
		}
		zs, err := q.rdb.ZRevRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{
			Min: minS, Max: maxS, Offset: cur.Skip, Count: chunk,
		}).Result()
		if err != nil {
			return nil, "", err
		}
		if len(zs) == 0 {
			return out, "", nil
		}
		hashes := make([]*redis.MapStringStringCmd, len(zs))
		if _, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, z := range zs {
				hashes[i] = p.HGetAll(ctx, DeliveryKey(z.Member.(string)))
			}
			return nil
		}); err != nil {
			return nil, "", err
		}
		var expired []redis.Z
		for i, z := range zs {
			id := z.Member.(string)
			if s := int64(z.Score); s == cur.Max {
				cur.Skip++
			} else {
				cur.Max, cur.Skip = s, 1
			}
			scanned++
			m := hashes[i].Val()
			if len(m) == 0 || m["account"] != accountID {
				expired = append(expired, z)
				continue
			}
			d := parseHash(id, m)
			d.Body = nil
			if lq.Match == nil || lq.Match(d) {
				out = append(out, *d)
				if len(out) == lq.PageSize {
					q.dropExpired(ctx, key, expired, &cur)
					return out, cur.token(), nil
				}
			}
		}
		q.dropExpired(ctx, key, expired, &cur)
		if int64(len(zs)) < chunk {
			return out, "", nil
		}
		if scanned >= maxScan {
			return out, cur.token(), nil
		}
	}
}

// dropExpired removes the index entries of expired (or foreign) deliveries, all of them
// already behind the cursor; those at the cursor's score no longer need
// skipping, so the cursor stays exact.
func (q *Queue) dropExpired(ctx context.Context, key string, gone []redis.Z, cur *cursor) {
	if len(gone) == 0 {
		return
	}
	ids := make([]any, len(gone))
	for i, z := range gone {
		ids[i] = z.Member
		if int64(z.Score) == cur.Max {
			cur.Skip--
		}
	}
	if err := q.rdb.ZRem(ctx, key, ids...).Err(); err != nil {
		for _, z := range gone { // not removed: they still need skipping
			if int64(z.Score) == cur.Max {
				cur.Skip++
			}
		}
	}
}

// attemptJSON is an attempt log entry.
type attemptJSON struct {
	Number     int               `json:"number"`
	Start      int64             `json:"start"`
	StatusCode int               `json:"status,omitempty"`
	LatencyMS  int64             `json:"latency_ms"`
	ErrorType  string            `json:"error_type,omitempty"`
	Error      string            `json:"error,omitempty"`
	Response   string            `json:"response,omitempty"`
	Headers    map[string]string `json:"request_headers,omitempty"`
	TraceID    string            `json:"trace_id,omitempty"`
	SpanID     string            `json:"span_id,omitempty"`
	URL        string            `json:"url"`
}

func encodeAttempt(a *delivery.Attempt) ([]byte, error) {
	resp := a.Response
	if len(resp) > delivery.MaxResponseBytes {
		resp = strings.ToValidUTF8(resp[:delivery.MaxResponseBytes], "\uFFFD")
	}
	return json.Marshal(attemptJSON{
		Number: a.Number, Start: ms(a.Start), StatusCode: a.StatusCode, LatencyMS: a.Latency.Milliseconds(),
		ErrorType: string(a.ErrorType), Error: a.Error, Response: resp, Headers: a.RequestHeaders,
		TraceID: a.TraceID, SpanID: a.SpanID, URL: a.URL,
	})
}

func decodeAttempt(b []byte) (delivery.Attempt, error) {
	var j attemptJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return delivery.Attempt{}, err
	}
	return delivery.Attempt{
		Number: j.Number, Start: time.UnixMilli(j.Start).UTC(), StatusCode: j.StatusCode,
		Latency: time.Duration(j.LatencyMS) * time.Millisecond, ErrorType: delivery.ErrorType(j.ErrorType),
		Error: j.Error, Response: j.Response, RequestHeaders: j.Headers, TraceID: j.TraceID,
		SpanID: j.SpanID, URL: j.URL,
	}, nil
}

// Listen calls wake whenever another process (or this one) schedules due
// work, until the returned stop function is called.
func (q *Queue) Listen(wake func()) (stop func()) {
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
		cancel()
		_ = ps.Close()
		<-done
	}
}
