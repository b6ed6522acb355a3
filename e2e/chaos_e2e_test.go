package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/pgtest"
)

var chaosDuration = flag.Duration("chaos-duration", 12*time.Second, "how long TestChaos injects faults (make chaos: 90s)")

// current returns the newest process of a service.
func (s *Suite) current(name string) *exec.Cmd {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.procs[name]
	return ps[len(ps)-1]
}

// TestChaos: under steady load, every service is SIGKILLed at random
// moments and restarted, Redis (AOF, appendfsync always) is killed and
// restarted, the history tier's PostgreSQL (a server of the test's own) is
// restarted cleanly and killed with SIGKILL then started, the receiver
// flaps between 200, 500 and hanging, and delivered deliveries are revived
// (:retry) while the archiver moves them: so kills land between the
// archive's commit and its delete from Redis, and revives race that delete.
// A second account's ordered endpoint is disabled by a 410 every few
// seconds and enabled again once its parked lines moved to PostgreSQL:
// each upload's events must still be answered in publish order, and each
// of its deliveries end up in history once, with its whole attempt log.
// Then every event acknowledged to the producer must reach the receiver at
// least once: 0 lost. Once the archive backlog drained (Redis holds no
// delivery nor event record), GET /v1/deliveries paged to the end lists
// every delivered event's delivery exactly once, each read by id has its
// whole attempt log ending in the successful attempt, and GET
// /v1/events/{id} answers every acknowledged event. Duplicates are counted
// and reported.
func TestChaos(t *testing.T) {
	pgsrv := pgtest.StartServer(t) // restarted and killed below
	s := startSuite(t, SuiteOptions{Env: map[string]string{
		"DATABASE_URL":     pgsrv.URL,
		"API_RATE_LIMIT":   "0", // the checks read every delivery and event by id
		"DELIVERY_TIMEOUT": "1s",
		// Long enough that every event still has attempts after the faults end.
		"DELIVERY_RETRY_SCHEDULE": "0s,200ms,500ms,1s,2s,3s,5s,10s,20s,30s,60s,60s",
		"LOG_LEVEL":               "error",
		"PARKED_MOVE_AFTER":       "1s",
	}})
	rc := newReceiver()
	defer rc.Close()
	var mode atomic.Int32 // 0 ok, 1 fail, 2 hang
	var chaosOn atomic.Bool
	chaosOn.Store(true)
	var okMu sync.Mutex
	okCount := map[string]int{} // 2xx answers per event id
	var okIDs []string          // events answered 200, in that order
	respond := func(r *http.Request) int {
		if !chaosOn.Load() {
			return 200
		}
		switch mode.Load() {
		case 1:
			return 500
		case 2:
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
				return 499 // the sender gave up (timeout): not a success
			}
		}
		return 200
	}
	rc.Respond = func(n int, r *http.Request) int {
		code := respond(r)
		if code == 200 {
			id := r.Header.Get("X-Webhook-Id")
			okMu.Lock()
			if okCount[id] == 0 {
				okIDs = append(okIDs, id)
			}
			okCount[id]++
			okMu.Unlock()
		}
		return code
	}
	acct, key := s.NewAccount("chaos")
	ep, _ := s.NewEndpoint(key, rc.URL, "transcription.progress")
	ing, ctx := s.Ingestion()

	// Steady load: ~100 events/s; an event counts once acknowledged.
	var mu sync.Mutex
	acked := map[string]bool{}
	var published, failed atomic.Int64
	var refused []*ingestionv1.PublishEventRequest // retried after the faults, as a producer must
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(40 * time.Millisecond):
				}
				req := &ingestionv1.PublishEventRequest{
					AccountId: acct, Type: "transcription.progress", Data: progressReq(acct, i).Data,
					IdempotencyKey: fmt.Sprintf("chaos-%d-%d", w, i),
				}
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				resp, err := ing.PublishEvent(pctx, req)
				cancel()
				published.Add(1)
				if err != nil {
					failed.Add(1)
					mu.Lock()
					refused = append(refused, req)
					mu.Unlock()
					continue
				}
				mu.Lock()
				acked[resp.GetEvent().GetId()] = true
				mu.Unlock()
			}
		}(w)
	}

	// Ordered: a second account's endpoint is ordered by key, behind the
	// same faults. Two producers publish uploads of 5 events, each event
	// retried with its idempotency key until acknowledged before the next
	// (as a producer that needs order does); every upload's events must be
	// answered 2xx in publish order.
	rcO := newReceiver()
	defer rcO.Close()
	var oMu sync.Mutex
	var oOK []string                    // ordered endpoint: event ids answered 2xx, in that order
	oUpload := map[string]string{}      // acknowledged event id → upload
	oPublished := map[string][]string{} // upload → acknowledged event ids, in order
	var gone atomic.Bool                // the ordered receiver's next answer is 410 Gone
	var oTrail []string                 // what the ordered receiver saw, for the failure report
	tStart := time.Now()
	oNote := func(format string, args ...any) {
		oMu.Lock()
		oTrail = append(oTrail, fmt.Sprintf("%6.3fs ", time.Since(tStart).Seconds())+fmt.Sprintf(format, args...))
		oMu.Unlock()
	}
	rcO.Respond = func(n int, r *http.Request) int {
		id, att := r.Header.Get("X-Webhook-Id"), r.Header.Get("X-Webhook-Attempt")
		if gone.CompareAndSwap(true, false) {
			oNote("%s attempt %s: 410", id, att)
			return http.StatusGone
		}
		code := respond(r)
		oNote("%s attempt %s: %d", id, att, code)
		if code == 200 {
			oMu.Lock()
			oOK = append(oOK, id)
			oMu.Unlock()
		}
		return code
	}
	acctO, keyO := s.NewAccount("chaos-ordered")
	epO := s.newOrderedEndpoint(keyO, rcO.URL, "transcription.progress")
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := 0; ; u++ {
				select {
				case <-stop:
					return
				default:
				}
				up := fmt.Sprintf("upl_o%d_%d", w, u)
				for r := range 5 {
					st, _ := structpb.NewStruct(map[string]any{"uploadId": up, "percentage": float64(20 * (r + 1)), "estimate": 3})
					req := &ingestionv1.PublishEventRequest{AccountId: acctO, Type: "transcription.progress", Data: st,
						IdempotencyKey: fmt.Sprintf("%s/%d", up, r)}
					for giveUp := time.Now().Add(time.Minute); ; {
						pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
						resp, err := ing.PublishEvent(pctx, req)
						cancel()
						if err == nil {
							oMu.Lock()
							oUpload[resp.GetEvent().GetId()] = up
							oPublished[up] = append(oPublished[up], resp.GetEvent().GetId())
							oMu.Unlock()
							break
						}
						if time.Now().After(giveUp) {
							t.Errorf("ordered publish %s refused for a minute: %v", req.GetIdempotencyKey(), err)
							return
						}
						time.Sleep(50 * time.Millisecond)
					}
				}
			}
		}()
	}

	// Parking: every few seconds the ordered receiver answers 410 Gone
	// once, which disables its endpoint at once: its lines park and, past
	// PARKED_MOVE_AFTER, move to PostgreSQL while the producers go on
	// publishing into them. Then the customer enables it (retried through
	// the faults, as a customer would) and the resume brings history's part
	// of every line back ahead of what waited in Redis. Each cycle ends
	// with the endpoint enabled.
	var parks, parksSeen, parksMoved, linesClosed atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		status := func() string {
			code, raw, err := s.try("GET", "/v1/endpoints/"+epO.ID, keyO)
			if err != nil || code != http.StatusOK {
				return ""
			}
			var out struct {
				Endpoint Endpoint `json:"endpoint"`
			}
			_ = json.Unmarshal(raw, &out)
			return out.Endpoint.Status
		}
		for {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Second):
			}
			gone.Store(true)
			parks.Add(1)
			oNote("cycle %d: the next answer is 410", parks.Load())
			for until := time.Now().Add(5 * time.Second); time.Now().Before(until) && status() != "ENDPOINT_STATUS_DISABLED"; {
				time.Sleep(100 * time.Millisecond)
			}
			if status() == "ENDPOINT_STATUS_DISABLED" {
				parksSeen.Add(1)
				oNote("cycle %d: disabled", parks.Load())
				// Past PARKED_MOVE_AFTER the archiver moves the parked
				// lines; after a kill of a delivery process, once the
				// lease of the shards it archived lapsed.
				for until := time.Now().Add(15 * time.Second); time.Now().Before(until); time.Sleep(250 * time.Millisecond) {
					if n := closedLines(s, epO.ID); n > 0 {
						parksMoved.Add(1)
						linesClosed.Add(int64(n))
						oNote("cycle %d: %d lines closed (moved to history)", parks.Load(), n)
						break
					}
				}
			}
			gone.Store(false)
			for giveUp := time.Now().Add(time.Minute); ; {
				if code, _, err := s.try("POST", "/v1/endpoints/"+epO.ID+":enable", keyO); err == nil && code == http.StatusOK {
					oNote("cycle %d: enabled", parks.Load())
					break
				}
				if time.Now().After(giveUp) {
					t.Errorf("the ordered endpoint could not be enabled for a minute")
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()

	// Revives: a delivery the receiver already answered 200 is sent again
	// (POST :retry) while it is being archived, or after it moved (then it
	// is restored from history, its attempts continued). A revive bumps
	// the delivery's version, so the archiver's compare-and-delete leaves
	// it in Redis; it ends again and moves again with all its attempts.
	var revMu sync.Mutex
	revived := map[string]bool{} // event ids whose :retry was accepted
	var reviveTries atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		rrng := rand.New(rand.NewPCG(2, uint64(time.Now().UnixNano())))
		for {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
			okMu.Lock()
			var id string
			if n := len(okIDs); n > 0 {
				id = okIDs[n-1-rrng.IntN(min(n, 50))] // among the latest: ended moments ago
			}
			okMu.Unlock()
			if id == "" {
				continue
			}
			reviveTries.Add(1)
			if code, _, err := s.try("POST", "/v1/deliveries/"+ids.Derive(ids.Delivery, id, ep.ID)+":retry", key); err == nil && code == http.StatusOK {
				revMu.Lock()
				revived[id] = true
				revMu.Unlock()
			}
		}
	}()

	// Faults.
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	kills := map[string]int{}
	// PostgreSQL down for a moment after a SIGKILL of its postmaster
	// (crash recovery at start), or restarted cleanly (-m fast).
	postgres := func(kill bool) {
		if !kill {
			pgtest.Restart(t, pgsrv, true)
			kills["postgres-restart"]++
			return
		}
		pgtest.Kill(t, pgsrv)
		time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
		if err := pgsrv.Start(); err != nil {
			t.Fatal(err)
		}
		kills["postgres-kill9"]++
	}
	start := time.Now()
	deadline := start.Add(*chaosDuration)
	// At least one of each PostgreSQL fault and one Redis restart, early
	// enough that the archiver's backoff (1 s doubling) stays short.
	pgRestartAt, redisAt, pgKillAt := start.Add(*chaosDuration/4), start.Add(*chaosDuration/2), start.Add(*chaosDuration*5/8)
	for time.Now().Before(deadline) {
		if !redisAt.IsZero() && time.Now().After(redisAt) {
			s.Redis.Restart()
			kills["redis"]++
			redisAt = time.Time{}
		}
		if !pgRestartAt.IsZero() && time.Now().After(pgRestartAt) {
			postgres(false)
			pgRestartAt = time.Time{}
		}
		if !pgKillAt.IsZero() && time.Now().After(pgKillAt) {
			postgres(true)
			pgKillAt = time.Time{}
		}
		time.Sleep(time.Duration(500+rng.IntN(1000)) * time.Millisecond)
		mode.Store(int32([]int{0, 0, 0, 0, 0, 1, 1, 1, 2, 2}[rng.IntN(10)])) // 50% ok, 30% 500, 20% hang
		switch victim := []string{"registry", "ingestion", "delivery", "delivery", "gateway", "redis", "postgres"}[rng.IntN(7)]; victim {
		case "redis":
			s.Redis.Restart()
			kills["redis"]++
		case "postgres":
			postgres(rng.IntN(2) == 0)
		default:
			s.Kill(s.current(victim))
			kills[victim]++
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			s.Start(victim, nil)
		}
	}
	close(stop)
	wg.Wait()
	chaosOn.Store(false)
	s.WaitHealthy(30 * time.Second)
	// A refused publish may have stored its event (and even scheduled its
	// delivery) before failing: the producer retries it with the same
	// idempotency key until it is acknowledged, which completes its
	// fan-out. Until then such an event waits in Redis, unacknowledged.
	retryDeadline := time.Now().Add(time.Minute)
	for _, req := range refused {
		for {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := ing.PublishEvent(pctx, req)
			cancel()
			if err == nil {
				acked[resp.GetEvent().GetId()] = true
				break
			}
			if time.Now().After(retryDeadline) {
				t.Fatalf("publish %s still refused a minute after the faults: %v", req.GetIdempotencyKey(), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	mu.Lock()
	want := len(acked)
	mu.Unlock()
	if want == 0 {
		t.Fatal("no event was acknowledged under chaos")
	}
	missing := func() []string { // acknowledged, never answered 200
		var out []string
		mu.Lock()
		defer mu.Unlock()
		okMu.Lock()
		defer okMu.Unlock()
		for id := range acked {
			if okCount[id] == 0 {
				out = append(out, id)
			}
		}
		return out
	}
	// A delivery held by a killed worker returns after its lease
	// (DELIVERY_TIMEOUT + 10 s); retries follow the schedule above.
	deadlineAll := time.Now().Add(2 * time.Minute)
	for len(missing()) > 0 && time.Now().Before(deadlineAll) {
		time.Sleep(250 * time.Millisecond)
	}
	if m := missing(); len(m) > 0 {
		t.Fatalf("LOST %d of %d acknowledged events, e.g. %v", len(m), want, m[:min(5, len(m))])
	}
	// Ordered: each upload's first answers in publish order (a repeat of
	// one event, sent again after a kill, follows itself).
	oMissing := func() int {
		oMu.Lock()
		defer oMu.Unlock()
		got := map[string]bool{}
		for _, id := range oOK {
			got[id] = true
		}
		n := 0
		for id := range oUpload {
			if !got[id] {
				n++
			}
		}
		return n
	}
	for oMissing() > 0 && time.Now().Before(deadlineAll) {
		time.Sleep(250 * time.Millisecond)
	}
	if m := oMissing(); m > 0 {
		t.Fatalf("ordered endpoint: LOST %d of %d acknowledged events", m, len(oUpload))
	}
	oMu.Lock()
	oGot := map[string][]string{}
	for _, id := range oOK {
		up := oUpload[id]
		oGot[up] = append(oGot[up], id)
	}
	for up, want := range oPublished {
		if got := slices.Compact(oGot[up]); !slices.Equal(got, want) {
			t.Errorf("ordered endpoint: %s answered 2xx in the order %v, published %v; what the receiver saw of them, and the parking cycles:\n%s",
				up, got, want, strings.Join(slices.DeleteFunc(slices.Clone(oTrail), func(l string) bool {
					return !strings.Contains(l, "cycle") && !slices.ContainsFunc(want, func(id string) bool { return strings.Contains(l, id) })
				}), "\n"))
		}
	}
	nOrdered, nUploads := len(oUpload), len(oPublished)
	oMu.Unlock()

	// Duplicates: successful answers beyond one per event, revived ones
	// left out. A worker killed after the receiver answered but before it
	// recorded the outcome leaves the attempt to be sent again after its
	// lease: that is the only cause.
	tDelivered := time.Since(start)

	// History: everything ended, so once the archiver caught up Redis
	// holds no delivery and no event, and every one is read from
	// PostgreSQL. (After a delivery process was killed, the shards it
	// archived wait for its 30 s lease to lapse; after a PostgreSQL fault
	// the archiver retries within its backoff, at most 30 s.)
	waitArchived(t, s, 2*time.Minute)
	tArchived := time.Since(start)
	okMu.Lock()
	extra := 0
	delivered := map[string]bool{}
	for id, n := range okCount {
		delivered[id] = true
		if !revived[id] {
			extra += n - 1
		}
	}
	okMu.Unlock()
	all, byEvent := listedOnce(t, s, key)
	var dlvIDs []string
	for _, d := range all {
		dlvIDs = append(dlvIDs, d.ID)
		if !delivered[d.EventID] {
			t.Errorf("delivery %s (event %s) listed, but the receiver never answered 200 for that event", d.ID, d.EventID)
		}
	}
	var unlisted []string
	for id := range delivered {
		if _, ok := byEvent[id]; !ok {
			unlisted = append(unlisted, id)
		}
	}
	if len(unlisted) > 0 {
		sort.Strings(unlisted)
		t.Fatalf("%d of %d delivered events have no delivery in GET /v1/deliveries, e.g. %v", len(unlisted), len(delivered), unlisted[:min(5, len(unlisted))])
	}
	// Each delivery by id: its whole attempt log; a revived one shows its
	// second success (when the revive came after the first was recorded).
	revivedTwice := 0
	bad, incomplete := incompleteHistories(t, s, key, dlvIDs, func(oks int) {
		if oks >= 2 {
			revivedTwice++
		}
	})
	if len(bad)+len(incomplete) > 0 {
		t.Fatalf("GET /v1/deliveries/{id}: %d failed, e.g. %v; %d with incomplete history, e.g. %v",
			len(bad), bad[:min(3, len(bad))], len(incomplete), incomplete[:min(3, len(incomplete))])
	}
	mu.Lock()
	var ackedIDs []string
	for id := range acked {
		ackedIDs = append(ackedIDs, id)
	}
	mu.Unlock()
	if bad := parallelGET(t, s, key, ackedIDs, func(id string) string { return "/v1/events/" + id }, nil); len(bad) > 0 {
		t.Fatalf("GET /v1/events/{id} failed for %d of %d acknowledged events, e.g. %v", len(bad), len(ackedIDs), bad[:min(3, len(bad))])
	}
	// The ordered endpoint's history too: through the parking cycles (moves
	// to history, resumes, restores at line_seq), each acknowledged event's
	// delivery is listed once and read by id with its whole attempt log,
	// ending in its success.
	allO, byEventO := listedOnce(t, s, keyO)
	var dlvO []string
	for _, d := range allO {
		dlvO = append(dlvO, d.ID)
	}
	oMu.Lock()
	var unlistedO []string
	for id := range oUpload {
		if _, ok := byEventO[id]; !ok {
			unlistedO = append(unlistedO, id)
		}
	}
	oMu.Unlock()
	if len(unlistedO) > 0 {
		t.Fatalf("ordered endpoint: %d acknowledged events have no delivery in GET /v1/deliveries, e.g. %v", len(unlistedO), unlistedO[:min(5, len(unlistedO))])
	}
	bad, incompleteO := incompleteHistories(t, s, keyO, dlvO, nil)
	if len(bad)+len(incompleteO) > 0 {
		t.Fatalf("ordered endpoint: GET /v1/deliveries/{id}: %d failed, e.g. %v; %d with incomplete history, e.g. %v",
			len(bad), bad[:min(3, len(bad))], len(incompleteO), incompleteO[:min(3, len(incompleteO))])
	}

	revMu.Lock()
	nRevived := len(revived)
	revMu.Unlock()
	if nRevived >= 10 && revivedTwice == 0 {
		t.Errorf("%d revives accepted, yet no delivery's history shows a second successful attempt", nRevived)
	}
	t.Logf("chaos %v: kills %v; %d publishes, %d refused during faults (then retried until acknowledged), %d acknowledged, 0 lost; %d requests in all, %d duplicate successes (attempts in flight when a delivery process was killed)",
		*chaosDuration, kills, published.Load(), failed.Load(), want, len(rc.Requests()), extra)
	if parksSeen.Load() > 0 && parksMoved.Load() == 0 {
		t.Errorf("the ordered endpoint was disabled %d times, yet no parked line ever moved to PostgreSQL", parksSeen.Load())
	}
	t.Logf("ordered endpoint: %d events of %d uploads, each upload answered in publish order through %d 410s (%d seen disabling it; %d times parked lines had moved to PostgreSQL, %d lines in all, before the resume); %d deliveries listed once each with complete attempts",
		nOrdered, nUploads, parks.Load(), parksSeen.Load(), parksMoved.Load(), linesClosed.Load(), len(allO))
	t.Logf("history: %d revives tried, %d accepted, %d deliveries with two or more successful attempts; all delivered %v after the start, archived %v; %d deliveries listed once each with complete attempts, %d acknowledged events read by id",
		reviveTries.Load(), nRevived, revivedTwice, tDelivered.Round(100*time.Millisecond), tArchived.Round(100*time.Millisecond), len(all), len(ackedIDs))
}

// closedLines counts the lines of an ordered endpoint that some parked
// work left for history: a line whose head is the sentinel `~` (or `~r`
// while a resume runs), or one with nothing left in Redis, a field of the
// endpoint's wh:histlines hash (docs/architecture.md, the key table). Zero
// when Redis cannot be read.
func closedLines(s *Suite, endpointID string) int {
	ctx := context.Background()
	c := s.Redis.Client
	n := 0
	for _, match := range []string{"wh:histlines:*:" + endpointID, "wh:line:*:" + endpointID + "|*"} {
		keys, err := c.Keys(ctx, match).Result()
		if err != nil {
			return 0
		}
		for _, k := range keys {
			if strings.HasPrefix(k, "wh:histlines:") {
				n += int(c.HLen(ctx, k).Val())
				continue
			}
			if head, err := c.ZRange(ctx, k, 0, 0).Result(); err == nil && len(head) == 1 && strings.HasPrefix(head[0], "~") {
				n++
			}
		}
	}
	return n
}

// listedOnce lists every delivery of the account (listAllDeliveries) and
// fails the test when an event has two (each account here has one
// endpoint): it returns them and event id → delivery id.
func listedOnce(t testing.TB, s *Suite, key string) ([]delivery, map[string]string) {
	t.Helper()
	all := listAllDeliveries(t, s, key)
	byEvent := map[string]string{}
	for _, d := range all {
		if other, ok := byEvent[d.EventID]; ok {
			t.Fatalf("event %s has two deliveries listed to one endpoint: %s and %s", d.EventID, other, d.ID)
		}
		byEvent[d.EventID] = d.ID
	}
	return all, byEvent
}
