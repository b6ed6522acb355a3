package redisqueue

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

var resultsPath = flag.String("results", "", "append the figures to the benchmark report (markdown table) at this path (make bench)")

func usedMemory(b *testing.B, srv *redistest.Server) int64 {
	info, err := srv.Client.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("no used_memory")
	return 0
}

// BenchmarkMillionPending (issue 4): schedules PENDING_N (default
// 1,000,000) pending retries, as after a failed first attempt, and reports
// the Redis memory per pending retry (the payload lives once per event in
// the event store and is not part of it), then the lateness of 2,000
// retries coming due over two seconds while the schedule holds them all,
// claimed in batches of 100 the way the worker does.
func BenchmarkMillionPending(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("PENDING_N")); err == nil && v > 0 {
		n = v
	}
	srv := redistest.Start(b)
	q := New(srv.Client, 7*24*time.Hour)
	ctx := context.Background()
	now := time.Now()
	tp := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	// Event ids of today (the account index keeps DELIVERY_RETENTION of
	// them by the id's time: fixed ids of another day were trimmed at
	// once, which measured the index as 0 B), the same for each i.
	base := ids.New(ids.Event, now)
	mk := func(i int, due time.Time) delivery.Delivery {
		evt := ids.Derive(ids.Event, base, strconv.Itoa(i))
		id := delivery.DeliveryID(evt, "ep_01KBXYZ0000000000000000001")
		return delivery.Delivery{
			ID: id, EventID: evt, EndpointID: "ep_01KBXYZ0000000000000000001",
			AccountID: "acct_01KBXYZ000000000000000001", EventType: "transcription.completed",
			Status: delivery.StatusPending, Attempts: 1, CreateTime: now, UpdateTime: now, NextTime: due,
			TraceParent: tp,
		}
	}
	b.ResetTimer()
	for range b.N {
		before := usedMemory(b, srv)
		const batch = 1000
		for i := 0; i < n; i += batch {
			ds := make([]delivery.Delivery, 0, batch)
			for j := i; j < min(i+batch, n); j++ {
				ds = append(ds, mk(j, now.Add(time.Hour+time.Duration(j)*time.Millisecond)))
			}
			if _, err := q.Schedule(ctx, ds); err != nil {
				b.Fatal(err)
			}
		}
		after := usedMemory(b, srv)
		perItem := float64(after-before) / float64(n)
		b.ReportMetric(perItem, "B/pending")
		// Where the bytes are: one delivery's hash (key included), and the
		// schedule shards' and the account index's bytes per entry.
		var schedBytes int64
		for sh := range Shards {
			schedBytes += srv.Client.MemoryUsage(ctx, schedKey(sh), 0).Val()
		}
		hashBytes := srv.Client.MemoryUsage(ctx, DeliveryKey(mk(0, now).ID), 0).Val()
		acctBytes := srv.Client.MemoryUsage(ctx, accountKey("acct_01KBXYZ000000000000000001"), 0).Val()
		b.Logf("per pending: delivery hash %d B (MEMORY USAGE), schedule entry %.0f B, account index entry %.0f B",
			hashBytes, float64(schedBytes)/float64(n), float64(acctBytes)/float64(n))

		// Lateness: 2,000 more due over the next 2 s, claimed as they come due.
		const dueN = 2000
		start := time.Now().Add(500 * time.Millisecond)
		var ds []delivery.Delivery
		dueAt := map[string]time.Time{}
		for i := range dueN {
			d := mk(n+i, start.Add(time.Duration(i)*time.Millisecond))
			ds = append(ds, d)
			dueAt[d.ID] = d.NextTime.Truncate(time.Millisecond)
		}
		if _, err := q.Schedule(ctx, ds); err != nil {
			b.Fatal(err)
		}
		var late []time.Duration
		for len(late) < dueN {
			t := time.Now()
			jobs, next, err := q.Claim(ctx, t, t.Add(15*time.Second), 100)
			if err != nil {
				b.Fatal(err)
			}
			got := time.Now()
			for _, j := range jobs {
				late = append(late, got.Sub(dueAt[j.Delivery.ID]))
				if _, _, err := q.Complete(ctx, j, delivery.Outcome{Status: delivery.StatusSucceeded, Now: got}); err != nil {
					b.Fatal(err)
				}
			}
			if len(jobs) < 100 && !next.IsZero() {
				time.Sleep(min(max(time.Until(next), time.Millisecond), 100*time.Millisecond))
			}
		}
		slices.Sort(late)
		p := func(q float64) float64 { return float64(late[int(q*float64(len(late)-1))].Microseconds()) / 1000 }
		b.ReportMetric(p(0.5), "ms-late-p50")
		b.ReportMetric(p(0.99), "ms-late-p99")
		b.Logf("%d pending: %.0f B each (used_memory %d -> %d); lateness p50 %.1f ms, p99 %.1f ms, max %.1f ms",
			n, perItem, before, after, p(0.5), p(0.99), p(1))
		if *resultsPath != "" {
			f, err := os.OpenFile(*resultsPath, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(f, "| Redis memory per pending delivery, %d pending (delivery hash / schedule entry / account index entry) | %.0f B (%d / %.0f / %.0f B) | ≤ 200 B (issue 4) |\n",
				n, perItem, hashBytes, float64(schedBytes)/float64(n), float64(acctBytes)/float64(n))
			fmt.Fprintf(f, "| lateness of 2,000 due deliveries with %d pending (p50 / p99 / max) | %.1f / %.1f / %.1f ms | p99 ≤ 1 s (issue 4) |\n",
				n, p(0.5), p(0.99), p(1))
			_ = f.Close()
		}
	}
}
