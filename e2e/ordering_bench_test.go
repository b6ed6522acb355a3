package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
)

// Ordered delivery's latency (issue #15). One account has two endpoints
// subscribed to the same type, one unordered and one ordered by key, each
// with its own receiver, so every event goes to both at the same moment
// under the same load (paced single publishes, gRPC PublishEvent, 500
// events/s for 10 s, the ordering key data.uploadId drawn at random from
// 1,000): the ratio of the two endpoints' latencies is measured on the
// same events, and a stall of the machine (this one's p99s are set by
// short stalls that hit both endpoints alike) weighs on both sides.
const (
	orderedRate   = 500
	orderedKeys   = 1000
	orderedPhase  = 10 * time.Second
	orderedRounds = 3
)

// orderedResult is one phase's publish→first 2xx latencies.
type orderedResult struct {
	p50, p99, p999 time.Duration
	n              int    // events counted
	note           string // the rate reached (pacedLatencies), the first attempts failed
	allP99         time.Duration
}

func (r orderedResult) String() string {
	return fmt.Sprintf("%s / %s / %s", r.p50, r.p99, r.p999)
}

// BenchmarkOrderedLatency: phase "clean" (every first attempt answered
// 200) and phase "failing" (the first attempt of each event answered 500
// with probability 1/5 at both endpoints, retried after 300 ms), in
// orderedRounds rounds. In the failing phases the figures are those of the
// events of keys without failures: none of their events in the phase
// failed, so at the ordered endpoint they wait for no retry of their own
// key, and the ratio to the unordered endpoint is what the other keys'
// held-back lines cost them (target ≤ 2×).
//
//	go test -run '^$' -bench OrderedLatency -benchtime 1x ./e2e/
func BenchmarkOrderedLatency(b *testing.B) {
	s := startSuite(b, SuiteOptions{Env: map[string]string{
		"LOG_LEVEL":               "error",
		"DELIVERY_RETRY_SCHEDULE": "0s,300ms,1s,5s",
	}})
	ing, ctx := s.Ingestion()

	// One workload for every phase: event i's key, and whether its first
	// attempt fails (in the failing phases).
	total := int(orderedPhase.Seconds()) * orderedRate
	rnd := rand.New(rand.NewPCG(15, 500))
	keys, fails := make([]int, total), make([]bool, total)
	failedKey := map[int]bool{}
	for i := range keys {
		keys[i], fails[i] = rnd.IntN(orderedKeys), rnd.IntN(5) == 0
		if fails[i] {
			failedKey[keys[i]] = true
		}
	}
	cleanKey := func(i int) bool { return !failedKey[keys[i]] }
	// A receiver tells the event from its body: data.uploadId is
	// upl_<phase><round>_<key>, data.estimate is i.
	failFirst := func(r *http.Request) bool {
		d := dataOf(r)
		return strings.HasPrefix(d.UploadID, "upl_failing") && fails[int(d.Estimate)]
	}

	acct, key := s.NewAccount("bench-ordering")
	names := []string{"unordered", "ordered"}
	var rcvs []*arrivals
	for _, name := range names {
		rcv := &arrivals{first: map[string]time.Time{}, failFirst: failFirst}
		srv := httptest.NewServer(rcv)
		defer srv.Close()
		if name == "ordered" {
			s.newOrderedEndpoint(key, srv.URL+"/hook", "transcription.progress")
		} else {
			s.NewEndpoint(key, srv.URL+"/hook", "transcription.progress")
		}
		rcvs = append(rcvs, rcv)
	}

	results := map[string][]orderedResult{} // by "<phase> <endpoint>", round by round
	for round := 1; round <= orderedRounds; round++ {
		for _, phase := range []string{"clean", "failing"} {
			prefix := fmt.Sprintf("upl_%s%d_", phase, round) // a phase's keys are its own
			pub := grpcPublish(ing, func(i int) *ingestionv1.PublishEventRequest {
				st, _ := structpb.NewStruct(map[string]any{"uploadId": fmt.Sprintf("%s%d", prefix, keys[i]), "percentage": 50, "estimate": i})
				return &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.progress", Data: st}
			})
			rewrites := rewriteAOF(b, s) // as BenchmarkSuite: each phase in the steady state
			var failedBefore []int64
			for _, rcv := range rcvs {
				failedBefore = append(failedBefore, rcv.failed.Load())
			}
			lats, note := pacedLatencies(b, pub, ctx, orderedRate, orderedPhase, 0, rcvs...)
			if aofRewrites(b, s) != rewrites {
				note += " (an AOF rewrite ran during this phase)"
			}
			counts := cleanKey
			if phase == "clean" {
				counts = nil
			}
			for k, name := range names {
				r := orderedResult{note: note}
				if phase == "failing" {
					r.note += fmt.Sprintf(", %d first attempts answered 500", rcvs[k].failed.Load()-failedBefore[k])
				}
				r.p50, r.p99, r.p999, r.n = quantiles(lats[k], counts)
				_, r.allP99, _, _ = quantiles(lats[k], nil)
				results[phase+" "+name] = append(results[phase+" "+name], r)
			}
		}
	}

	byRound := func(key string, f func(orderedResult) string) string {
		var out []string
		for n, r := range results[key] {
			out = append(out, fmt.Sprintf("%d. %s", n+1, f(r)))
		}
		return strings.Join(out, "; ")
	}
	ratios := func(phase string) (text string, median, worst float64) {
		var parts []string
		var rs []float64
		for n, o := range results[phase+" ordered"] {
			u := results[phase+" unordered"][n]
			ratio := float64(o.p99) / float64(max(u.p99, time.Millisecond))
			parts = append(parts, fmt.Sprintf("%d. %s / %s = %.2f", n+1, o.p99, u.p99, ratio))
			rs = append(rs, ratio)
		}
		sort.Float64s(rs)
		median, worst = rs[len(rs)/2], rs[len(rs)-1]
		return fmt.Sprintf("%s (median %.2f, spread %.2f–%.2f)", strings.Join(parts, "; "), median, rs[0], worst), median, worst
	}
	var rep report
	load := fmt.Sprintf("single gRPC PublishEvent at %d events/s, each to both endpoints at once, %d s a phase, data.uploadId (the key) at random from %d; %d phases",
		orderedRate, int(orderedPhase.Seconds()), orderedKeys, orderedRounds)
	for _, name := range []string{"unordered", "ordered"} {
		rep.add(fmt.Sprintf("ordered delivery, no failures (%s): %s endpoint, publish→receiver p50 / p99 / p99.9 (the rate reached)", load, name),
			byRound("clean "+name, func(r orderedResult) string { return r.String() + r.note }), "reported (issue 15)")
	}
	cleanRatios, _, _ := ratios("clean")
	rep.add("ordered delivery, no failures: p99 ordered / unordered", cleanRatios, "—")
	failing := "ordered delivery, 20 % of first attempts failing (each event's with probability 1/5: 500, retried after 300 ms; the same load, the same events)"
	for _, name := range []string{"unordered", "ordered"} {
		rep.add(fmt.Sprintf("%s: %s endpoint, publish→first 2xx of the events of the %d keys none of whose events failed, p50 / p99 / p99.9 (events counted; p99 of all events; the rate reached)", failing, name, orderedKeys-len(failedKey)),
			byRound("failing "+name, func(r orderedResult) string {
				return fmt.Sprintf("%s (%d events; all %s)%s", r, r.n, r.allP99, r.note)
			}), "—")
	}
	failRatios, median, worst := ratios("failing")
	rep.add(failing+": p99 of the keys without failures, ordered / unordered", failRatios, "≤ 2× (issue 15)")
	b.ReportMetric(median, "median-p99-ratio")
	b.ReportMetric(worst, "worst-p99-ratio")
	b.Log("\n" + strings.Join(rep.rows, "\n"))
	appendRows(b, *resultsPath, rep.rows...)
}
