package e2e

import (
	"flag"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/pgtest"
)

var abAgainst = flag.String("ab-against", "", "BenchmarkHistoryTierAgainstTheBuildBefore: compare with this revision (one with the history tier) instead of the build before it")

// BenchmarkHistoryTierAgainstTheBuildBefore is issue #12's A/B: the build
// before the history tier (preHistoryRev, built from this repository's
// history; history kept in Redis) against this one (history in a
// PostgreSQL server of the benchmark's own), both suites running side by
// side, their phases alternated A, B, A, B so that the machine's noise
// hits both alike:
//   - throughput: 10,000 events in PublishEvents batches of 100 (8
//     producers) to one endpoint, deliveries/s end to end and CPU per 1,000
//     deliveries by process (PostgreSQL included);
//   - latency: single PublishEvent paced at 500 and at 1,000 events/s for
//     5 s each, publish→receiver p50 / p99.
//
// The idle suite's pollers run meanwhile (a few ms of CPU a second).
//
// With -ab-against REV the first arm is instead REV, a build with the
// history tier, with a PostgreSQL of its own: an A/B of a change against
// the build before it (-ab-against HEAD for an uncommitted change), with
// the same phases.
func BenchmarkHistoryTierAgainstTheBuildBefore(b *testing.B) {
	if testing.Short() {
		b.Skip("builds the previous version of the suite")
	}
	const (
		events = 10_000
		paced  = 5 * time.Second
	)
	rev := preHistoryRev
	if *abAgainst != "" {
		rev = *abAgainst
	}
	before := buildRevision(b, rev)
	type arm struct {
		name string
		s    *Suite
		rcv  *arrivals
		acct string
	}
	start := func(name string, o SuiteOptions) arm {
		o.Env = map[string]string{"LOG_LEVEL": "error", "API_RATE_LIMIT": "0"}
		s := startSuite(b, o)
		rcv := &arrivals{first: map[string]time.Time{}}
		srv := httptest.NewServer(rcv)
		b.Cleanup(srv.Close)
		acct, key := s.NewAccount("bench-ab")
		s.NewEndpoint(key, srv.URL+"/hook", "transcription.progress")
		return arm{name, s, rcv, acct}
	}
	var first arm
	if *abAgainst != "" {
		first = start(rev+" (history in PostgreSQL)", SuiteOptions{BinDir: before, PG: pgtest.StartServer(b)})
	} else {
		first = start("before (history in Redis)", SuiteOptions{BinDir: before, HistoryDown: true})
	}
	arms := []arm{first, start("this build (history in PostgreSQL)", SuiteOptions{PG: pgtest.StartServer(b)})}
	type result struct {
		tput    []phase
		p99     map[int][]time.Duration
		p50     map[int][]time.Duration
		reached map[int][]string
	}
	res := make([]result, len(arms))
	for i := range res {
		res[i] = result{p99: map[int][]time.Duration{}, p50: map[int][]time.Duration{}, reached: map[int][]string{}}
	}
	for _, a := range arms { // warm-up: scripts loaded, keys and partitions in place
		ing, ctx := a.s.Ingestion()
		runSingles(b, ctx, grpcOne(ing, a.acct), 0, 300)
		waitFor(b, func() bool { return a.rcv.n.Load() >= 300 }, time.Minute)
	}
	base := 1_000_000
	for round := range 2 {
		for i, a := range arms {
			ing, ctx := a.s.Ingestion()
			res[i].tput = append(res[i].tput, measure(b, a.s, a.rcv, events, func() {
				runBatches(b, ctx, grpcMany(ing, a.acct), base, events, 100)
			}))
			base += events
			for _, rate := range []int{500, 1000} {
				lats, note := pacedLatencies(b, grpcOne(ing, a.acct), ctx, rate, paced, base, a.rcv)
				base += rate * int(paced.Seconds())
				p50, p99, _, _ := quantiles(lats[0], nil)
				res[i].p50[rate] = append(res[i].p50[rate], p50)
				res[i].p99[rate] = append(res[i].p99[rate], p99)
				res[i].reached[rate] = append(res[i].reached[rate], note)
			}
			b.Logf("round %d, %s: %.0f deliveries/s, p99 at 500/s %v, at 1000/s %v", round+1, a.name,
				res[i].tput[round].rate, res[i].p99[500][round], res[i].p99[1000][round])
		}
	}
	var rows []string
	tp := func(i int) string {
		r := res[i]
		bp := best(r.tput...)
		return fmt.Sprintf("%.0f /s (%s), %d ms CPU per 1,000 (%s)", bp.rate, spread(r.tput...), bp.suiteCPU().Milliseconds(), bp.parts())
	}
	rows = append(rows, fmt.Sprintf("| history A/B, throughput: %d events in PublishEvents batches of 100, one endpoint; best of 2 alternated (spread), CPU of the suite's processes in that phase — %s / this build | %s / %s = %.2f | no worse than the build before (issue 12) |",
		events, arms[0].name, tp(0), tp(1), best(res[1].tput...).rate/best(res[0].tput...).rate))
	for _, rate := range []int{500, 1000} {
		lat := func(i int) string {
			return fmt.Sprintf("p50 %v, %v; p99 %v, %v", res[i].p50[rate][0].Round(100*time.Microsecond), res[i].p50[rate][1].Round(100*time.Microsecond),
				res[i].p99[rate][0].Round(100*time.Microsecond), res[i].p99[rate][1].Round(100*time.Microsecond))
		}
		rows = append(rows, fmt.Sprintf("| history A/B, single PublishEvent paced at %d events/s for %v, publish→receiver, rounds 1, 2 — %s / this build | %s / %s (this build reached%s%s) | no worse than the build before (issue 12) |",
			rate, paced, arms[0].name, lat(0), lat(1), res[1].reached[rate][0], res[1].reached[rate][1]))
	}
	for _, r := range rows {
		b.Log(r)
	}
	appendRows(b, *resultsPath, rows...)
}
