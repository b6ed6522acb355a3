package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/redistest"
)

// ingestionAt is a producer client of one ingestion process.
func (s *Suite) ingestionAt(addr string) (ingestionv1.IngestionServiceClient, context.Context) {
	s.t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { cc.Close() })
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+producerToken)
	return ingestionv1.NewIngestionServiceClient(cc), ctx
}

// startSecond starts another process of service on a free port and waits
// until it serves; it returns the address.
func (s *Suite) startSecond(service string) string {
	s.t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(s.t))
	s.Start(service, map[string]string{listenVarOf(service): addr})
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.t.Fatal(err)
	}
	defer cc.Close()
	eventually(s.t, 20*time.Second, service+" on "+addr, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	return addr
}

func listenVarOf(service string) string {
	return map[string]string{"ingestion": "INGESTION_ADDR", "delivery": "DELIVERY_ADDR", "registry": "REGISTRY_ADDR"}[service]
}

// publishProgress publishes n transcription.progress events in batches of
// 500, spread round-robin over the ingestion clients, from 4 goroutines.
func publishProgress(t testing.TB, clients []ingestionv1.IngestionServiceClient, ctx context.Context, acct string, n int, tag string) {
	t.Helper()
	const batch = 500
	var wg sync.WaitGroup
	errs := make(chan error, n/batch+1)
	sem := make(chan struct{}, 4)
	for b := 0; b*batch < n; b++ {
		reqs := make([]*ingestionv1.PublishEventRequest, 0, batch)
		for i := b * batch; i < n && i < (b+1)*batch; i++ {
			st, _ := structpb.NewStruct(map[string]any{"uploadId": fmt.Sprintf("upl_%s_%d", tag, i), "percentage": 50, "estimate": 3})
			reqs = append(reqs, &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.progress", Data: st})
		}
		c := clients[b%len(clients)]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := c.PublishEvents(ctx, &ingestionv1.PublishEventsRequest{Events: reqs}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("PublishEvents: %v", err)
	}
}

// TestScaleTwoDeliveryTwoIngestion: two ingestion and two delivery
// processes against one Redis; 10,000 events, each delivered, none sent
// twice at the same time.
func TestScaleTwoDeliveryTwoIngestion(t *testing.T) {
	if testing.Short() {
		t.Skip("short: 10,000 events")
	}
	s := startSuite(t, SuiteOptions{})
	s.startSecond("delivery")
	ing2 := s.startSecond("ingestion")
	rc := newReceiver()
	defer rc.Close()
	acct, key := s.NewAccount("acme")
	s.NewEndpoint(key, rc.URL, "transcription.progress")
	c1, ctx := s.Ingestion()
	c2, _ := s.ingestionAt(ing2)
	const n = 10_000
	start := time.Now()
	publishProgress(t, []ingestionv1.IngestionServiceClient{c1, c2}, ctx, acct, n, "scale")
	published := time.Since(start)
	eventually(t, 180*time.Second, "10,000 deliveries", func() bool { return rc.Count() >= n })
	took := time.Since(start)
	time.Sleep(time.Second)
	rc.RequireEachOnceAtATime(t, n)
	dups := rc.Count() - n
	t.Logf("10,000 events through 2 ingestion + 2 delivery processes: published in %v, all delivered in %v (%.0f/s); %d repeated sends (at-least-once)",
		published.Round(time.Millisecond), took.Round(time.Millisecond), n/took.Seconds(), dups)
}

// TestScaleThroughputTwoDeliveryProcesses: a receiver taking 20 ms per
// request and DELIVERY_WORKERS=32, so one process is latency-bound near
// 32/20ms = 1,600 requests/s; a second process should approach twice that.
// The ratio is logged, and only a generous bound is asserted.
func TestScaleThroughputTwoDeliveryProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("short: throughput measurement")
	}
	s := startSuite(t, SuiteOptions{Env: map[string]string{"DELIVERY_WORKERS": "32"}})
	rc := newReceiver()
	defer rc.Close()
	rc.Respond = func(int, *http.Request) int { time.Sleep(20 * time.Millisecond); return 200 }
	acct, key := s.NewAccount("acme")
	// Eight endpoints: the per-endpoint concurrency limit (10 per process)
	// must not be what bounds the run; the 32 worker slots are.
	const endpoints = 8
	for i := 0; i < endpoints; i++ {
		s.NewEndpoint(key, rc.URL+"/ep"+strconv.Itoa(i), "transcription.progress")
	}
	c, ctx := s.Ingestion()
	const events = 400 // x 8 endpoints = 3,200 deliveries per run
	run := func(tag string) float64 {
		before := rc.Count()
		publishProgress(t, []ingestionv1.IngestionServiceClient{c}, ctx, acct, events, tag)
		want := before + events*endpoints
		eventually(t, 120*time.Second, tag+" deliveries", func() bool { return rc.Count() >= want })
		reqs := rc.Requests()[before:want]
		first, last := reqs[0].At, reqs[len(reqs)-1].At
		rate := float64(len(reqs)) / last.Sub(first).Seconds()
		t.Logf("%s: %d deliveries in %v = %.0f/s", tag, len(reqs), last.Sub(first).Round(time.Millisecond), rate)
		return rate
	}
	one := run("one delivery process")
	s.startSecond("delivery")
	two := run("two delivery processes")
	ratio := two / one
	t.Logf("throughput ratio, 2 vs 1 delivery processes (20 ms receiver, 32 workers each): %.2fx", ratio)
	if o := rc.Overlaps(); o != 0 {
		t.Fatalf("%d attempts were sent twice at the same time", o)
	}
	if ratio < 1.2 {
		t.Errorf("a second delivery process added little: ratio %.2f", ratio)
	}
}
