package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/pgtest"
	"github.com/voxscriber/webhooks/pkg/redistest"
)

// paceLoad publishes rate events/s for d (4 publishers, a batch of
// rate/20 each every 200 ms) and returns the acknowledged event ids.
func paceLoad(t testing.TB, ing ingestionv1.IngestionServiceClient, ctx context.Context, acct string, rate int, d time.Duration) []string {
	t.Helper()
	per := max(1, rate/20)
	var mu sync.Mutex
	var out []string
	var firstErr error
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for b := 0; time.Now().Before(end); b++ {
				reqs := make([]*ingestionv1.PublishEventRequest, per)
				for i := range reqs {
					st, _ := structpb.NewStruct(map[string]any{"uploadId": fmt.Sprintf("upl_%d_%d_%d", w, b, i), "percentage": 50, "estimate": 3})
					reqs[i] = &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.progress", Data: st}
				}
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				resp, err := ing.PublishEvents(pctx, &ingestionv1.PublishEventsRequest{Events: reqs})
				cancel()
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				for _, r := range resp.GetResults() {
					out = append(out, r.GetEvent().GetId())
				}
				mu.Unlock()
				<-tick.C
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("PublishEvents with PostgreSQL down: %v", firstErr)
	}
	return out
}

// healthz returns /healthz's status code and its historyStore field.
func healthz(s *Suite) (int, string) {
	resp, err := s.HTTP.Get(s.BaseURL + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var h map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&h)
	st, _ := h["historyStore"].(string)
	return resp.StatusCode, st
}

// TestPostgresOutageBacklogWaitsInRedisAndDrainsOnItsOwn: PostgreSQL is
// killed (SIGKILL of its postmaster) under a steady load. Publishing and
// delivery go on, the archive backlog grows in Redis (and in the
// webhook_archive_backlog gauge), /healthz stays 200 naming the history
// store unreachable, history reads answer 503 "history store unreachable",
// live records are still read by id. Then PostgreSQL starts again and,
// with nothing else done, the backlog drains: Redis holds no delivery nor
// event record, GET /v1/deliveries lists every delivery once, each with
// its attempt, and every event is read by id. It logs the drain rate and
// what it means for a 10-minute outage at this load.
func TestPostgresOutageBacklogWaitsInRedisAndDrainsOnItsOwn(t *testing.T) {
	const rate = 200 // events/s during the outage
	load := 10 * time.Second
	if testing.Short() {
		load = 5 * time.Second
	}
	pgsrv := pgtest.StartServer(t)
	metricsAddr := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
	s := startSuite(t, SuiteOptions{
		Env:        map[string]string{"DATABASE_URL": pgsrv.URL, "API_RATE_LIMIT": "0"},
		ServiceEnv: map[string]map[string]string{"delivery": {"METRICS_ADDR": metricsAddr}},
	})
	rc := newReceiver()
	defer rc.Close()
	acct, key := s.NewAccount("outage")
	ep, _ := s.NewEndpoint(key, rc.URL, "transcription.progress")
	ing, ctx := s.Ingestion()

	// Before: history works, nothing waits in Redis.
	events := paceLoad(t, ing, ctx, acct, 50, time.Second)
	eventually(t, 30*time.Second, "the first events delivered", func() bool { return rc.Count() >= len(events) })
	waitArchived(t, s, 30*time.Second)
	memBefore, _ := s.Redis.Client.Info(context.Background(), "memory").Result()

	pgtest.Kill(t, pgsrv)
	down := time.Now()
	outage := paceLoad(t, ing, ctx, acct, rate, load)
	published := time.Since(down)
	events = append(events, outage...)
	eventually(t, 60*time.Second, "every event delivered with PostgreSQL down", func() bool { return rc.Count() >= len(events) })
	delivered := time.Since(down)
	eventually(t, 30*time.Second, "the backlog to hold every delivery of the outage", func() bool { return archiveBacklog(t, s) >= int64(len(outage)) })
	backlog := archiveBacklog(t, s)
	memAfter, _ := s.Redis.Client.Info(context.Background(), "memory").Result()
	perEvent := float64(usedMemory(memAfter)-usedMemory(memBefore)) / float64(len(outage))
	eventually(t, 30*time.Second, "webhook_archive_backlog to count the backlog", func() bool {
		v, ok := sum(scrape(t, metricsAddr), "webhook_archive_backlog")
		return ok && v >= float64(len(outage))
	})

	// Health and reads while it is down.
	var st string
	eventually(t, 15*time.Second, "/healthz 200 naming the history store unreachable", func() bool {
		var code int
		code, st = healthz(s)
		return code == http.StatusOK && strings.HasPrefix(st, "unreachable: ")
	})
	for _, path := range []string{"/v1/events", "/v1/deliveries", "/v1/events?uploadId=upl_0_0_0"} {
		code, body, err := s.try("GET", path, key)
		if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(string(body), "history store unreachable") {
			t.Errorf("GET %s with PostgreSQL down: %d %v %s, want 503 naming the history store", path, code, err, body)
		}
	}
	live := outage[len(outage)-1]
	s.MustDo(200, "GET", "/v1/events/"+live, key, nil, nil) // both still in Redis
	if d := s.delivery(key, ids.Derive(ids.Delivery, live, ep.ID)); !strings.HasSuffix(d.Status, "SUCCEEDED") || len(d.Attempts) != 1 {
		t.Errorf("a delivery of the backlog read with PostgreSQL down: %+v", d)
	}

	// PostgreSQL back: the archiver finds it on its own (backoff 1 s
	// doubling to 30 s) and drains.
	if err := pgsrv.Start(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	// first: the last time the backlog was seen whole (polled every 50 ms),
	// so the drain time counts the whole of the first pass.
	first := up
	seenDrop := false
	deadline := up.Add(2 * time.Minute)
	for {
		at := time.Now()
		n := archiveBacklog(t, s)
		if n >= backlog && !seenDrop {
			first = at
		} else {
			seenDrop = true
		}
		if n == 0 && redisHistoryKeys(t, s) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PostgreSQL back 2 min ago, the backlog is still %d of %d; Redis:\n%s", n, backlog, leftovers(s, 3))
		}
		time.Sleep(50 * time.Millisecond)
	}
	drained := time.Now()
	eventually(t, 15*time.Second, "/healthz naming the history store reachable", func() bool {
		code, st := healthz(s)
		return code == http.StatusOK && st == "reachable"
	})

	// Every event listed once, with its history.
	all := listAllDeliveries(t, s, key)
	byEvent := map[string]bool{}
	var dlvIDs []string
	for _, d := range all {
		byEvent[d.EventID] = true
		dlvIDs = append(dlvIDs, d.ID)
	}
	if len(all) != len(events) {
		t.Errorf("GET /v1/deliveries lists %d deliveries, want %d (one per event)", len(all), len(events))
	}
	for _, id := range events {
		if !byEvent[id] {
			t.Fatalf("event %s has no delivery listed", id)
		}
	}
	bad, incomplete := incompleteHistories(t, s, key, dlvIDs, nil)
	bad = append(bad, parallelGET(t, s, key, events, func(id string) string { return "/v1/events/" + id }, nil)...)
	if len(bad)+len(incomplete) > 0 {
		t.Fatalf("%d reads by id failed, e.g. %v; %d deliveries with incomplete history, e.g. %v", len(bad), bad[:min(3, len(bad))], len(incomplete), incomplete[:min(3, len(incomplete))])
	}

	// The figures.
	load1 := float64(len(outage)) / published.Seconds()
	drainS := drained.Sub(first).Seconds()
	drainRate := float64(backlog) / max(drainS, 0.001)
	perMinute := load1 * 60
	tenMin := perMinute * 10
	t.Logf("outage: %d events published at %.0f events/s over %v (all delivered %v after the kill); backlog %d deliveries, Redis +%.0f B per backlogged event (~%.0f MB per minute at this load); /healthz 200, historyStore %q",
		len(outage), load1, published.Round(100*time.Millisecond), delivered.Round(100*time.Millisecond), backlog, perEvent, perEvent*perMinute/1e6, st)
	t.Logf("drain: PostgreSQL back, first archive after %v (the archiver's backoff), backlog of %d drained in %.2f s: %.0f deliveries/s (with their events)",
		first.Sub(up).Round(100*time.Millisecond), backlog, drainS, drainRate)
	t.Logf("estimate for a 10-minute outage at %.0f events/s: backlog %.0f deliveries (~%.0f MB in Redis); drained in ~%.0f s after the archiver's first retry (up to 30 s) with the load stopped, ~%.0f s with the load going on (drain rate minus load)",
		load1, tenMin, perEvent*tenMin/1e6, tenMin/drainRate, tenMin/max(drainRate-load1, 1))
}
