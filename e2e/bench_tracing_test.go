package e2e

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
)

// BenchmarkTracingOverhead compares end-to-end throughput (events
// published in batches → deliveries received) with every span exported
// over OTLP/HTTP to a local collector against tracing off (spans made for
// the trace ids, none exported). Each mode runs on a fresh suite, three times,
// alternating; the better run of each counts. Target ratio ≥ 0.85.
//
//	go test -run '^$' -bench TracingOverhead -benchtime 1x ./e2e/ -args -bench-events 10000
func BenchmarkTracingOverhead(b *testing.B) {
	col := newOTLPCollector(b)
	best := map[string]float64{}
	for round := 0; round < 3; round++ {
		for _, mode := range []string{"off", "exported"} {
			// One receiver endpoint: lift the per-endpoint cap so the
			// run measures the pipeline, not the politeness limit.
			env := map[string]string{"LOG_LEVEL": "error", "DELIVERY_ENDPOINT_CONCURRENCY": "256"}
			if mode == "exported" {
				for k, v := range otelEnv(col.URL) {
					env[k] = v
				}
				delete(env, "OTEL_BSP_SCHEDULE_DELAY") // the SDK's default batching
			}
			best[mode] = max(best[mode], suiteThroughput(b, env, *benchEvents))
		}
	}
	col.mu.Lock()
	spans := len(col.spans)
	col.mu.Unlock()
	ratio := best["exported"] / best["off"]
	b.ReportMetric(best["off"], "deliveries/s-off")
	b.ReportMetric(best["exported"], "deliveries/s-exported")
	b.ReportMetric(ratio, "ratio")
	b.Logf("tracing off: %.0f deliveries/s; exported to a local OTLP collector: %.0f deliveries/s (%d spans received); ratio %.2f (target ≥ 0.85)",
		best["off"], best["exported"], spans, ratio)
	appendRows(b, *resultsPath, fmt.Sprintf("| tracing overhead: deliveries/s with spans exported to a local OTLP collector / tracing off (best of 3 each) | %.0f / %.0f = %.2f | ≥ 0.85 (issue 5) |",
		best["exported"], best["off"], ratio))
}

// suiteThroughput starts a suite with env, publishes n events with 4
// producers in batches of 500 and returns deliveries per second until the
// last one arrived.
func suiteThroughput(b *testing.B, env map[string]string, n int) float64 {
	rcv := &arrivals{first: map[string]time.Time{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	s := startSuite(b, SuiteOptions{Env: env})
	defer s.StopAll()
	acct, key := s.NewAccount("bench")
	s.NewEndpoint(key, srv.URL+"/hook", "transcription.progress")
	ing, ctx := s.Ingestion()
	_, e2e := throughput(b, ing, ctx, rcv, n, func(i int) *ingestionv1.PublishEventRequest { return progressReq(acct, i) }, 1)
	return e2e
}
