package history

import (
	"context"
	"fmt"
	"strings"
	"time"
)

var timeZero time.Time

// Point is one minute of an endpoint's (or an account's) attempts.
type Point struct {
	Minute time.Time
	// Outcomes: a 2xx answer; another answer; no answer (DNS, connect,
	// TLS, timeout, blocked).
	OK, HTTPError, NetworkError int
	// P50 and P99 of the attempts' latency, estimated from the fixed
	// histogram (LatencyBuckets); zero when the minute had no attempt.
	P50, P99 time.Duration
}

// Series returns one point per minute in [from, to) for an account's
// endpoint, or for the whole account when endpointID is empty, from the
// per-minute rollups Archive maintains (never from raw attempts). A minute
// counts the attempts that started in it and have been archived.
func (s *Store) Series(ctx context.Context, accountID, endpointID string, from, to time.Time) ([]Point, error) {
	acct, ok := idBytes(prefixAccount, accountID)
	if !ok {
		return nil, nil
	}
	from, to = from.UTC().Truncate(time.Minute), to.UTC()
	var sums []string
	for i := 0; i <= len(LatencyBuckets); i++ {
		sums = append(sums, fmt.Sprintf("sum(h%d)::bigint", i))
	}
	q := `SELECT minute, sum(ok)::bigint, sum(http_error)::bigint, sum(net_error)::bigint, ` + strings.Join(sums, ", ") + `
		FROM delivery_rollups WHERE account_id = $1 AND minute >= $2 AND minute < $3`
	args := []any{acct, from, to}
	if endpointID != "" {
		ep, ok := idBytes(prefixEndpoint, endpointID)
		if !ok {
			return nil, nil
		}
		q += ` AND endpoint_id = $4`
		args = append(args, ep)
	}
	q += ` GROUP BY minute ORDER BY minute`
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, wrapErr("series", err)
	}
	defer rows.Close()
	got := map[time.Time]Point{}
	for rows.Next() {
		var p Point
		var ok, he, ne int64
		h := make([]int64, len(LatencyBuckets)+1)
		dest := []any{&p.Minute, &ok, &he, &ne}
		for i := range h {
			dest = append(dest, &h[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, wrapErr("series", err)
		}
		p.Minute = p.Minute.UTC()
		p.OK, p.HTTPError, p.NetworkError = int(ok), int(he), int(ne)
		p.P50, p.P99 = quantile(h, 0.50), quantile(h, 0.99)
		got[p.Minute] = p
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr("series", err)
	}
	var out []Point
	for m := from; m.Before(to); m = m.Add(time.Minute) {
		p, ok := got[m]
		if !ok {
			p = Point{Minute: m}
		}
		out = append(out, p)
	}
	return out, nil
}

// quantile estimates the q-quantile of a histogram over LatencyBuckets by
// linear interpolation inside the bucket it falls in (the last, unbounded
// bucket reports its lower bound).
func quantile(h []int64, q float64) time.Duration {
	var total int64
	for _, c := range h {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var cum int64
	for i, c := range h {
		if c == 0 || float64(cum+c) < rank {
			cum += c
			continue
		}
		var lo time.Duration
		if i > 0 {
			lo = LatencyBuckets[i-1]
		}
		if i == len(LatencyBuckets) {
			return lo
		}
		hi := LatencyBuckets[i]
		frac := (rank - float64(cum)) / float64(c)
		return lo + time.Duration(frac*float64(hi-lo))
	}
	return LatencyBuckets[len(LatencyBuckets)-1]
}
