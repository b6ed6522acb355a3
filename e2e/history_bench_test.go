package e2e

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/pgtest"
)

// BenchmarkHistoryTier measures the history tier (issue 12) in one run, on
// a PostgreSQL server of its own (initdb'd by pgtest: fsync off, like
// every test server here):
//   - under a steady load (single PublishEvent at 500 events/s for 10 s,
//     one endpoint), the archive lag of each delivery: from its 2xx at the
//     receiver to its row being visible in PostgreSQL (polled every 20 ms,
//     so the figures are up to 20 ms high), and the CPU per 1,000
//     deliveries by process, PostgreSQL included, until all of it is
//     archived;
//   - PostgreSQL bytes per archived event (one delivery, one attempt):
//     growth of every table and index over that load;
//   - the backlog of a 10-minute outage at 100 events/s: PostgreSQL
//     stopped, 60,000 events published (in batches, as fast as the suite
//     takes them: what waits in Redis is the same) and delivered, then
//     PostgreSQL started; Redis bytes per waiting delivery and the time
//     until Redis holds no record of them.
func BenchmarkHistoryTier(b *testing.B) {
	const (
		rate         = 500
		load         = 10 * time.Second
		outageEvents = 60_000 // 10 minutes at 100 events/s
		outageBatch  = 500
	)
	pgsrv := pgtest.StartServer(b)
	s := startSuite(b, SuiteOptions{PG: pgsrv, Env: map[string]string{"LOG_LEVEL": "error", "API_RATE_LIMIT": "0"}})
	rcv := &arrivals{first: map[string]time.Time{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	acct, key := s.NewAccount("bench-history")
	s.NewEndpoint(key, srv.URL+"/hook", "transcription.progress")
	ing, ctx := s.Ingestion()
	bg := context.Background()
	conn, err := pgx.Connect(bg, pgsrv.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(bg)

	// Warm-up: scripts loaded, today's partitions and the endpoint's keys
	// in place, the first rows written.
	runSingles(b, ctx, grpcOne(ing, acct), 0, 200)
	waitFor(b, func() bool { return rcv.n.Load() >= 200 }, time.Minute)
	waitArchived(b, s, time.Minute)

	// The steady load, with the archive lag of each delivery.
	sizeBefore := historyBytes(b, conn)
	cpuBefore := s.cpu(b)
	start := time.Now()
	lagOf := pollArchived(b, conn, acct, rcv, start)
	_, _, _, note := latencyAt(b, grpcOne(ing, acct), ctx, rcv, rate, load)
	waitArchived(b, s, 2*time.Minute)
	lags := lagOf()
	n := len(lags)
	cpuParts, cpuTotal := perThousand(cpuBefore, s.cpu(b), n)
	perEvent := float64(historyBytes(b, conn)-sizeBefore) / float64(n)
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	q := func(p float64) time.Duration {
		return lags[min(len(lags)-1, int(p*float64(len(lags))))].Round(time.Millisecond)
	}
	lagRow := fmt.Sprintf("%v / %v / %v (%d deliveries%s)", q(0.5), q(0.99), lags[len(lags)-1].Round(time.Millisecond), n, note)
	cpuRow := fmt.Sprintf("%d ms: %s", cpuTotal.Milliseconds(), cpuParts)

	// The backlog of a 10-minute outage, and its drain.
	if err := pgsrv.Stop(true); err != nil {
		b.Fatal(err)
	}
	memBefore := memory(b, s.Redis.Client)
	delivered := rcv.n.Load()
	runBatches(b, ctx, grpcMany(ing, acct), 20_000_000, outageEvents, outageBatch)
	waitFor(b, func() bool { return rcv.n.Load() >= delivered+outageEvents }, 5*time.Minute)
	waitFor(b, func() bool { return archiveBacklog(b, s) >= outageEvents }, time.Minute)
	backlog := archiveBacklog(b, s)
	perWaiting := float64(memory(b, s.Redis.Client)-memBefore) / float64(backlog)
	if err := pgsrv.Start(); err != nil {
		b.Fatal(err)
	}
	up := time.Now()
	waitArchived(b, s, 15*time.Minute)
	drain := time.Since(up)

	rows := []string{
		fmt.Sprintf("| history: archive lag under load, receiver's 2xx → row in PostgreSQL (single PublishEvent at %d events/s for %v; p50 / p99 / max; polled every 20 ms) | %s | — |", rate, load, lagRow),
		fmt.Sprintf("| history: CPU per 1,000 deliveries by process, PostgreSQL included (that load, until all of it was archived) | %s | — |", cpuRow),
		fmt.Sprintf("| history: PostgreSQL bytes per archived event, one delivery and one attempt (tables + indexes, growth over that load) | %.0f B | — |", perEvent),
		fmt.Sprintf("| history: backlog of a 10-minute PostgreSQL outage at 100 events/s (%d deliveries): Redis used_memory per waiting delivery; drain time once PostgreSQL is back (deliveries/s) | %.0f B; %v (%.0f /s) | — |",
			backlog, perWaiting, drain.Round(100*time.Millisecond), float64(backlog)/drain.Seconds()),
	}
	for _, r := range rows {
		b.Log(r)
	}
	appendRows(b, *resultsPath, rows...)
}

// historyBytes is the size of every table of the history database with
// its indexes and TOAST (partitions included).
func historyBytes(b *testing.B, conn *pgx.Conn) int64 {
	b.Helper()
	var n int64
	if err := conn.QueryRow(context.Background(), `SELECT coalesce(sum(pg_total_relation_size(oid)), 0)::bigint FROM pg_class
		WHERE relkind = 'r' AND relnamespace = to_regnamespace(current_schema())::oid`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// pollArchived watches, every 20 ms, which deliveries of acct's events
// that reached rcv after since are visible in PostgreSQL; the returned
// func stops it and gives, per delivery seen, the time from the event's
// first 2xx at rcv to the poll that first saw its row.
func pollArchived(b *testing.B, conn *pgx.Conn, acct string, rcv *arrivals, since time.Time) func() []time.Duration {
	acctUUID := uuidOf(b, acct)
	stop := make(chan struct{})
	done := make(chan []time.Duration)
	go func() {
		seen := map[string]bool{}
		var lags []time.Duration
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for stopped := false; ; {
			// The oldest event arrived and not yet seen bounds the query
			// (deliveries are partitioned and indexed by the event's time).
			rcv.mu.Lock()
			arrived := map[string]time.Time{}
			for id, at := range rcv.first {
				if at.After(since) && !seen[id] {
					arrived[id] = at
				}
			}
			rcv.mu.Unlock()
			from := time.Now()
			byUUID := map[string]string{}
			for id := range arrived {
				if t, ok := ids.Time(id); ok && t.Before(from) {
					from = t
				}
				byUUID[uuidOf(b, id)] = id
			}
			if len(arrived) > 0 {
				// A row seen was committed before the query's snapshot.
				now := time.Now()
				rows, err := conn.Query(context.Background(), `SELECT event_id::text FROM deliveries WHERE account_id = $1 AND t >= $2`, acctUUID, from.Add(-time.Millisecond))
				if err != nil {
					b.Error(err)
					<-stop
					done <- lags
					return
				}
				got, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					b.Error(err)
				}
				for _, u := range got {
					if id, ok := byUUID[u]; ok {
						seen[id] = true
						lags = append(lags, now.Sub(arrived[id]))
					}
				}
			}
			if stopped { // one last look after the caller saw it all archived
				done <- lags
				return
			}
			select {
			case <-stop:
				stopped = true
			case <-tick.C:
			}
		}
	}()
	return func() []time.Duration {
		close(stop)
		return <-done
	}
}
