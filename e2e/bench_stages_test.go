package e2e

import (
	"flag"
	"fmt"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"
)

var stageRate = flag.Int("stage-rate", 1000, "single publishes per second in BenchmarkPublishStages")

// BenchmarkPublishStages breaks the latency of paced single publishes
// down by span: every service exports its spans to an in-process OTLP
// collector while single events are published at -stage-rate per second
// for 3 s over gRPC and over REST, and the log gets, per transport, the
// p50 and p99 of each span name by service (for development: go test
// -run '^$' -bench PublishStages ./e2e/). Tracing every span costs CPU of
// its own, so the absolute figures are above the untraced benchmark's;
// what it shows is where a publish waits.
func BenchmarkPublishStages(b *testing.B) {
	if *resultsPath != "" {
		b.Skip("not part of the results")
	}
	rcv := &arrivals{first: map[string]time.Time{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	c := newOTLPCollector(b)
	s := startSuite(b, SuiteOptions{Env: otelEnv(c.URL)})
	acct, key := s.NewAccount("bench-stages")
	s.NewEndpoint(key, srv.URL+"/hook", "transcription.progress")
	ing, ctx := s.Ingestion()
	for k, tr := range []struct {
		name string
		one  publishOne
	}{{"gRPC PublishEvent", grpcOne(ing, acct)}, {"REST POST /v1/events", restOne(s, acct)}} {
		c.mu.Lock()
		c.spans = nil
		c.mu.Unlock()
		_, note := pacedLatencies(b, tr.one, ctx, *stageRate, 3*time.Second, 30_000_000+10_000_000*k, rcv)
		time.Sleep(time.Second) // the last spans' export
		c.mu.Lock()
		by := map[string]map[int]time.Duration{}
		for i, sp := range c.spans {
			name := sp.Service + " " + sp.Name
			if by[name] == nil {
				by[name] = map[int]time.Duration{}
			}
			by[name][i] = sp.Duration
		}
		c.mu.Unlock()
		var rows []string
		for name, ds := range by {
			p50, p99, _, n := quantiles(ds, nil)
			rows = append(rows, fmt.Sprintf("%-60s %6d  p50 %9s  p99 %9s", name, n, p50, p99))
		}
		sort.Strings(rows)
		fmt.Printf("%s at %d/s%s\n%s\n", tr.name, *stageRate, note, strings.Join(rows, "\n"))
	}
}
