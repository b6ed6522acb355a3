package servicetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	"github.com/voxscriber/webhooks/pkg/signing"
)

const progress = "transcription.progress"

func orderedItem(event, endpoint, key string) *deliveryv1.ScheduleItem {
	return &deliveryv1.ScheduleItem{EventId: event, EndpointId: endpoint, OrderingKey: key}
}

// lineReceiver records, per ordering key, the events answered 2xx in the
// order they were answered, and every moment two requests of one key were
// in flight at once. It fails the first attempt of the events in failFirst.
type lineReceiver struct {
	*receiver
	mu        sync.Mutex
	keyOf     map[string]string // event id → key
	failFirst map[string]bool
	failed    map[string]bool
	inflight  map[string]int
	overlaps  []string
	ok        map[string][]string // key → event ids answered 2xx, in order
	done      map[string]time.Time
}

func newLineReceiver(t testing.TB) *lineReceiver {
	lr := &lineReceiver{keyOf: map[string]string{}, failFirst: map[string]bool{}, failed: map[string]bool{},
		inflight: map[string]int{}, ok: map[string][]string{}, done: map[string]time.Time{}}
	lr.receiver = newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		evt := r.Header.Get("webhook-id")
		lr.mu.Lock()
		key := lr.keyOf[evt]
		lr.inflight[key]++
		if lr.inflight[key] > 1 {
			lr.overlaps = append(lr.overlaps, fmt.Sprintf("%s: %d in flight at once (one of them %s)", key, lr.inflight[key], evt))
		}
		lr.mu.Unlock()
		time.Sleep(time.Millisecond) // long enough for an overlap to show
		lr.mu.Lock()
		defer lr.mu.Unlock()
		lr.inflight[key]--
		if lr.failFirst[evt] && !lr.failed[evt] {
			lr.failed[evt] = true
			http.Error(w, "first attempt fails", http.StatusServiceUnavailable)
			return
		}
		lr.ok[key] = append(lr.ok[key], evt)
		lr.done[key] = time.Now()
		w.WriteHeader(http.StatusOK)
	})
	return lr
}

// Ordered endpoint, issue #15's load: uploads × 5 events published
// interleaved, the first attempt of a random 20 % of requests failing.
// Every upload's events are answered 2xx exactly in publish order, never
// two of one upload in flight, and the uploads with no failure are not
// held back by those waiting for their retries.
func TestOrderedEndpointDeliversEachKeyInPublishOrder(t *testing.T) {
	testOrderedLoad(t, newEnv(t), 200)
}

// The same on Redis Cluster: a line and its deliveries share one slot.
func TestOrderedEndpointOnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	testOrderedLoad(t, newClusterEnv(t), 60)
}

func testOrderedLoad(t *testing.T, e *env, uploads int) {
	const perUpload = 5
	retry := 700 * time.Millisecond
	p := e.start(procOpts{schedule: []time.Duration{0, retry, retry}, workers: 32, endpointConcurrency: 64})
	acct, key := e.account()
	lr := newLineReceiver(t)
	e.reg.SetEndpoint(acct, "ep_o", lr.url("/"), active(), nil, signing.GenerateSecret())

	rnd := rand.New(rand.NewPCG(1, 2))
	evts := make([][]string, uploads)
	lr.mu.Lock()
	for u := range uploads {
		up := fmt.Sprintf("upl_%03d", u)
		for range perUpload {
			evt, _ := e.publish(acct, progress)
			evts[u] = append(evts[u], evt)
			lr.keyOf[evt] = up
			if rnd.IntN(5) == 0 {
				lr.failFirst[evt] = true
			}
		}
	}
	lr.mu.Unlock()
	// Published interleaved: round r carries event r of every upload, in
	// Schedule calls of 50 (as grouped publishes arrive).
	start := time.Now()
	var items []*deliveryv1.ScheduleItem
	for r := range perUpload {
		for u := range uploads {
			items = append(items, orderedItem(evts[u][r], "ep_o", fmt.Sprintf("upl_%03d", u)))
		}
	}
	var last []string
	for len(items) > 0 {
		n := min(len(items), 50)
		last = p.schedule(t, context.Background(), acct, progress, items[:n]...)
		items = items[n:]
	}

	waitFor(t, 60*time.Second, func() bool {
		lr.mu.Lock()
		defer lr.mu.Unlock()
		n := 0
		for _, l := range lr.ok {
			n += len(l)
		}
		return n >= uploads*perUpload
	}, func() string {
		lr.mu.Lock()
		defer lr.mu.Unlock()
		return fmt.Sprintf("%d of %d uploads complete", len(lr.done), uploads)
	})
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if len(lr.overlaps) > 0 {
		t.Errorf("%d times two events of one upload were in flight at once, e.g. %s", len(lr.overlaps), lr.overlaps[0])
	}
	var clean, failing []time.Duration
	for u := range uploads {
		up := fmt.Sprintf("upl_%03d", u)
		if !slices.Equal(lr.ok[up], evts[u]) {
			t.Errorf("%s answered 2xx in the order %v, published %v", up, lr.ok[up], evts[u])
		}
		hadFailure := slices.ContainsFunc(evts[u], func(id string) bool { return lr.failFirst[id] })
		if hadFailure {
			failing = append(failing, lr.done[up].Sub(start))
		} else {
			clean = append(clean, lr.done[up].Sub(start))
		}
	}
	med := func(d []time.Duration) time.Duration {
		if len(d) == 0 {
			return 0
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	t.Logf("%d uploads × %d: clean ones (%d) done at median %v, max %v; those with a failure (%d) at median %v",
		uploads, perUpload, len(clean), med(clean), slices.Max(clean), len(failing), med(failing))
	// A failure costs its key at least one retry delay; a clean key waits
	// for nobody, so half of them are done before half of the failing ones.
	if len(clean) > 0 && len(failing) > 0 && med(clean) >= med(failing) {
		t.Errorf("clean uploads done at median %v, not before those waiting for retries (%v): a failing key held others back", med(clean), med(failing))
	}
	if d := p.get(t, key, last[len(last)-1]); d.GetOrderingKey() == "" || d.GetWaitingFor() != "" {
		t.Errorf("the last delivery: ordering key %q, waiting for %q", d.GetOrderingKey(), d.GetWaitingFor())
	}
}

// A later delivery waits while the earlier one of its key is retrying
// (GetDelivery names the event it waits for, the gauge counts it), and goes
// as soon as the earlier one fails its final attempt. Another key of the
// same endpoint is not held back. A manual retry of the failed one joins the
// tail of its key's line.
func TestOrderedDeliveryWaitsForTheEarlierOneAndJoinsTheTailOnRetry(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{schedule: []time.Duration{0, 400 * time.Millisecond}, workers: 4})
	acct, key := e.account()
	var mu sync.Mutex
	failing := map[string]bool{}
	var order []string
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		evt := r.Header.Get("webhook-id")
		mu.Lock()
		defer mu.Unlock()
		order = append(order, evt)
		if failing[evt] {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	e.reg.SetEndpoint(acct, "ep_o", rc.url("/"), active(), nil, signing.GenerateSecret())
	a, _ := e.publish(acct, progress)
	b, _ := e.publish(acct, progress)
	other, _ := e.publish(acct, progress)
	mu.Lock()
	failing[a] = true
	mu.Unlock()
	ids := p.schedule(t, context.Background(), acct, progress,
		orderedItem(a, "ep_o", "upl_1"), orderedItem(b, "ep_o", "upl_1"), orderedItem(other, "ep_o", "upl_2"))

	// b waits for a; the other key's delivery is not held back.
	p.waitStatus(t, key, ids[2], deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 5*time.Second)
	db := p.get(t, key, ids[1])
	if db.GetStatus() != deliveryv1.DeliveryStatus_DELIVERY_STATUS_PENDING || db.GetWaitingFor() != a || db.GetOrderingKey() != "upl_1" {
		t.Fatalf("b while a retries: status %v, waiting for %q (want %s), key %q", db.GetStatus(), db.GetWaitingFor(), a, db.GetOrderingKey())
	}
	if s, err := p.queue.Stats(context.Background(), time.Now()); err != nil || s.Waiting != 1 {
		t.Errorf("waiting gauge = %d (%v), want 1", s.Waiting, err)
	}
	// a fails its final attempt: b goes.
	p.waitStatus(t, key, ids[0], deliveryv1.DeliveryStatus_DELIVERY_STATUS_FAILED, 5*time.Second)
	db = p.waitStatus(t, key, ids[1], deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 5*time.Second)
	if db.GetWaitingFor() != "" {
		t.Errorf("b succeeded still waiting for %q", db.GetWaitingFor())
	}
	// Its attempt's span says how long it waited (a's two attempts: at
	// least the 400 ms between them).
	waited := int64(-1)
	for _, sp := range spans.Ended() {
		if sp.Name() != "webhook.attempt" || len(db.GetAttempts()) == 0 || sp.SpanContext().SpanID().String() != db.GetAttempts()[0].GetSpanId() {
			continue
		}
		for _, kv := range sp.Attributes() {
			if kv.Key == "webhook.ordering.waited_ms" {
				waited = kv.Value.AsInt64()
			}
		}
	}
	if waited < 300 {
		t.Errorf("b's attempt span: webhook.ordering.waited_ms = %d, want the time it waited for a (≥ 400 ms)", waited)
	}

	// c is retrying at the head of upl_1; a manual retry of a joins the
	// tail, behind c, and goes only once c succeeded.
	c, _ := e.publish(acct, progress)
	mu.Lock()
	failing[c] = true
	mu.Unlock()
	idc := p.schedule(t, context.Background(), acct, progress, orderedItem(c, "ep_o", "upl_1"))[0]
	waitFor(t, 5*time.Second, func() bool { return p.get(t, key, idc).GetAttemptCount() >= 1 }, func() string { return "c's first attempt" })
	if _, err := p.client.RetryDelivery(context.Background(), &deliveryv1.RetryDeliveryRequest{Id: ids[0]}, as(key)); err != nil {
		t.Fatalf("retry a: %v", err)
	}
	da := p.get(t, key, ids[0])
	if da.GetStatus() != deliveryv1.DeliveryStatus_DELIVERY_STATUS_PENDING || da.GetWaitingFor() != c {
		t.Fatalf("a retried while c retries: status %v, waiting for %q (want %s)", da.GetStatus(), da.GetWaitingFor(), c)
	}
	mu.Lock()
	failing[c], failing[a] = false, false
	mu.Unlock()
	p.waitStatus(t, key, ids[0], deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 5*time.Second)
	mu.Lock()
	defer mu.Unlock()
	last := order[len(order)-2:]
	if !slices.Equal(last, []string{c, a}) {
		t.Errorf("the last two requests were %v, want c then a (%s, %s)", last, c, a)
	}
}

// One line goes at the receiver's pace: the Complete that ends a delivery
// wakes this process's claim loop for the next one, which otherwise would
// wait for the next poll (≈ 1 s per event: caught by BenchmarkOrdered's
// one-key case). 30 events of one key, answered at once, take well under
// the 30 s the polls would.
func TestOneOrderedLineIsNotPacedByThePoll(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{workers: 8})
	acct, key := e.account()
	rc := newReceiver(t, nil)
	e.reg.SetEndpoint(acct, "ep_o", rc.url("/"), active(), nil, signing.GenerateSecret())
	var items []*deliveryv1.ScheduleItem
	for range 30 {
		evt, _ := e.publish(acct, progress)
		items = append(items, orderedItem(evt, "ep_o", "upl_1"))
	}
	start := time.Now()
	ids := p.schedule(t, context.Background(), acct, progress, items...)
	p.waitStatus(t, key, ids[len(ids)-1], deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 60*time.Second)
	took := time.Since(start)
	t.Logf("30 events of one key in %v", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("30 events of one line took %v: each waited for a poll", took)
	}
}

// A fan-out repeated after the endpoint's ordering changed (a publish
// retried because its first fan-out was not recorded) keeps the delivery
// the first fan-out made under the other ordering: one delivery, sent
// once. A first fan-out (no repeat key) is not looked up.
func TestARepeatedFanoutKeepsTheDeliveryMadeUnderTheOtherOrdering(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{workers: 8})
	acct, key := e.account()
	rc := newReceiver(t, nil)
	e.reg.SetEndpoint(acct, "ep_1", rc.url("/"), active(), nil, signing.GenerateSecret())
	ctx := context.Background()

	unordered, _ := e.publish(acct, progress)
	first := p.schedule(t, ctx, acct, progress, item(unordered, "ep_1"))[0]
	repeat := orderedItem(unordered, "ep_1", "upl_1")
	repeat.RepeatOrderingKey = "upl_1"
	if again := p.schedule(t, ctx, acct, progress, repeat)[0]; again != first {
		t.Fatalf("repeat under ordering made %s; want the first fan-out's %s", again, first)
	}

	ordered, _ := e.publish(acct, progress)
	firstO := p.schedule(t, ctx, acct, progress, orderedItem(ordered, "ep_1", "upl_2"))[0]
	repeatU := item(ordered, "ep_1")
	repeatU.RepeatOrderingKey = "upl_2"
	if again := p.schedule(t, ctx, acct, progress, repeatU)[0]; again != firstO {
		t.Fatalf("repeat unordered made %s; want the first fan-out's %s", again, firstO)
	}

	p.waitStatus(t, key, first, deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 30*time.Second)
	p.waitStatus(t, key, firstO, deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 30*time.Second)
	time.Sleep(300 * time.Millisecond) // a second delivery, if one was made, is sent by now
	if n := rc.count(); n != 2 {
		t.Fatalf("receiver got %d requests for 2 events; want one each", n)
	}
	// Without the repeat key, another ordering is another delivery (a
	// new publish after the change).
	if other := p.schedule(t, ctx, acct, progress, orderedItem(unordered, "ep_1", "upl_1"))[0]; other == first {
		t.Fatalf("an ordered first fan-out reused the unordered delivery %s", first)
	}
}
