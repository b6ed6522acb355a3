package delivery_test

// Operational events (issue #15 item 2), on a real redis-server, the real
// queue and real HTTP receivers. Ingestion is another component: a small
// stand-in of delivery.SystemEvents records what would be published, keyed
// by idempotency key as ingestion stores it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/ssrf"
	"github.com/voxscriber/webhooks/services/delivery/internal/archive"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
	"github.com/voxscriber/webhooks/services/delivery/internal/redisqueue"
	"github.com/voxscriber/webhooks/services/delivery/internal/sender"
)

type published struct {
	account, eventType, endpoint, key string
	data                              map[string]any
}

// fakeIngestion keeps one event per idempotency key; failNext refuses
// that many calls.
type fakeIngestion struct {
	failNext atomic.Int64
	calls    atomic.Int64
	mu       sync.Mutex
	byKey    map[string]published
	order    []string
}

func (f *fakeIngestion) PublishSystemEvent(_ context.Context, account, eventType, endpoint, key string, data map[string]any) error {
	f.calls.Add(1)
	if f.failNext.Add(-1) >= 0 {
		return errors.New("ingestion unavailable (test outage)")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byKey == nil {
		f.byKey = map[string]published{}
	}
	if _, dup := f.byKey[key]; !dup {
		f.byKey[key] = published{account, eventType, endpoint, key, maps.Clone(data)}
		f.order = append(f.order, key)
	}
	return nil
}

func (f *fakeIngestion) events(eventType string) []published {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []published
	for _, k := range f.order {
		if p := f.byKey[k]; p.eventType == eventType {
			out = append(out, p)
		}
	}
	return out
}

// switchableTargets is the registry's view of ep_1, whose status a test
// changes.
type switchableTargets struct {
	url    string
	status atomic.Int32
}

func (s *switchableTargets) Target(_ context.Context, _, endpointID string) (*delivery.Target, error) {
	return &delivery.Target{AccountID: "acct_1", EndpointID: endpointID, URL: s.url, Status: delivery.EndpointStatus(s.status.Load())}, nil
}

func (f *fixture) opDispatcher(q *redisqueue.Queue, ing *fakeIngestion, tg delivery.Targets, delay, window time.Duration) *delivery.Dispatcher {
	snd := sender.New(sender.Config{Timeout: 2 * time.Second, Policy: ssrf.Policy{AllowHTTP: true,
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}})
	f.t.Cleanup(snd.Close)
	return delivery.NewDispatcher(
		delivery.Config{Retry: delivery.RetryPolicy{Schedule: []time.Duration{0}}, Timeout: 2 * time.Second,
			OpEventDelay: delay, OpEventWindow: window},
		delivery.Deps{
			Queue: q, History: &archive.Tiers{Q: q}, Sender: snd, Events: payloads{}, Targets: tg,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Stats:  q, Registry: f.reg, Mailer: f.mail,
			OpEvents: q, SystemEvents: ing,
		})
}

func scheduleTyped(t *testing.T, q *redisqueue.Queue, eventType string, ids ...string) {
	t.Helper()
	now := time.Now()
	var ds []delivery.Delivery
	for _, id := range ids {
		ds = append(ds, delivery.Delivery{ID: id, EventID: "evt_" + id, EndpointID: "ep_1", AccountID: "acct_1",
			EventType: eventType, Status: delivery.StatusPending, CreateTime: now, UpdateTime: now, NextTime: now})
	}
	if _, err := q.Schedule(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
}

// exhaust runs every due delivery through its only (final) attempt.
func exhaust(t *testing.T, q *redisqueue.Queue, d *delivery.Dispatcher) {
	t.Helper()
	var wg sync.WaitGroup
	for _, job := range claim(t, q, time.Now()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := d.Dispatch(context.Background(), *job); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

// TestABurstOfExhaustedDeliveriesIsOneEventWithItsCount: 20 deliveries of
// one endpoint fail their final attempt at once while ingestion is briefly
// down: one delivery.exhausted, count 20, is published (its retries under
// one key), and one endpoint.disabled. A later final failure within the
// window waits for the window, then is an event of its own, without count.
func TestABurstOfExhaustedDeliveriesIsOneEventWithItsCount(t *testing.T) {
	var ids []string
	for i := range 20 {
		ids = append(ids, fmt.Sprintf("dlv_%02d", i))
	}
	f := newFixture(t, append(slicesOf("evt_", ids), "evt_dlv_late")...)
	ing := &fakeIngestion{}
	ing.failNext.Store(2)
	q := redisqueue.New(f.redis.Client, time.Hour)
	tg := &switchableTargets{url: f.url}
	tg.status.Store(int32(delivery.EndpointActive))
	window := 3 * time.Second
	d := f.opDispatcher(q, ing, tg, 500*time.Millisecond, window)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer d.StartOpEvents(ctx, 20*time.Millisecond)(ctx)
	defer d.StartDisabler(ctx, 20*time.Millisecond)(ctx)

	scheduleTyped(t, q, "transcription.completed", ids...)
	exhaust(t, q, d)
	eventually(t, 10*time.Second, "delivery.exhausted published", func() bool { return len(ing.events("delivery.exhausted")) > 0 })
	eventually(t, 10*time.Second, "endpoint.disabled published", func() bool { return len(ing.events("endpoint.disabled")) > 0 })
	first := time.Now()
	time.Sleep(300 * time.Millisecond) // time for a duplicate to show up
	ex := ing.events("delivery.exhausted")
	if len(ex) != 1 || ex[0].data["count"] != 20 || ex[0].endpoint != "ep_1" || ex[0].account != "acct_1" || ex[0].data["endpointId"] != "ep_1" {
		t.Fatalf("delivery.exhausted events = %+v; want one with count 20", ex)
	}
	if ex[0].data["attempts"] != 1.0 || ex[0].data["eventType"] != "transcription.completed" || ex[0].data["lastError"] == "" {
		t.Errorf("delivery.exhausted data = %v", ex[0].data)
	}
	// One endpoint.disabled for the burst. With a one-attempt schedule a
	// delivery whose only attempt began after the first decision decides
	// again (its own "final failure with no success since"): when the
	// machine is slow that second decision lands in the same window and
	// is folded into the one event as count 2, never a second event.
	dis := ing.events("endpoint.disabled")
	count, counted := dis[0].data["count"]
	if len(dis) != 1 || (counted && fmt.Sprint(count) != "2") || dis[0].data["url"] != f.url || dis[0].data["reason"] == "" {
		t.Errorf("endpoint.disabled events = %+v; want one, without count (or count 2 when a second decision fell in its window)", dis)
	}

	// One more final failure, within the window: its own event, a window
	// after the first.
	scheduleTyped(t, q, "upload.completed", "dlv_late")
	exhaust(t, q, d)
	eventually(t, 10*time.Second, "the second delivery.exhausted", func() bool { return len(ing.events("delivery.exhausted")) == 2 })
	if gap := time.Since(first); gap < window-500*time.Millisecond {
		t.Errorf("second event %v after the first, want at least the window %v", gap, window)
	}
	late := ing.events("delivery.exhausted")[1]
	if _, counted := late.data["count"]; counted || late.data["deliveryId"] != "dlv_late" || late.key == ex[0].key {
		t.Errorf("second delivery.exhausted = %+v; want dlv_late's, no count, another key", late)
	}
}

func slicesOf(prefix string, ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = prefix + id
	}
	return out
}

// TestNoOperationalEventIsAboutTheDeliveryOfAnOperationalEvent: deliveries
// of operational events that fail their final attempt emit nothing.
func TestNoOperationalEventIsAboutTheDeliveryOfAnOperationalEvent(t *testing.T) {
	f := newFixture(t, "evt_dlv_op1", "evt_dlv_op2", "evt_dlv_op3")
	ing := &fakeIngestion{}
	q := redisqueue.New(f.redis.Client, time.Hour)
	tg := &switchableTargets{url: f.url}
	tg.status.Store(int32(delivery.EndpointActive))
	d := f.opDispatcher(q, ing, tg, 50*time.Millisecond, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer d.StartOpEvents(ctx, 20*time.Millisecond)(ctx)

	scheduleTyped(t, q, "endpoint.disabled", "dlv_op1")
	scheduleTyped(t, q, "endpoint.enabled", "dlv_op2")
	scheduleTyped(t, q, "delivery.exhausted", "dlv_op3")
	exhaust(t, q, d)
	for _, id := range []string{"dlv_op1", "dlv_op2", "dlv_op3"} {
		if st := status(t, q, id); st != delivery.StatusFailed {
			t.Fatalf("%s is %s, want failed", id, st)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if got := ing.events("delivery.exhausted"); len(got) != 0 {
		t.Fatalf("delivery.exhausted emitted about operational events: %+v", got)
	}
}

// TestEnablingASystemDisabledEndpointAnnouncesItOnce: the endpoint the
// system disabled is watched; when it is ACTIVE again the resumer's sweep
// emits endpoint.enabled, once, however many sweeps follow.
func TestEnablingASystemDisabledEndpointAnnouncesItOnce(t *testing.T) {
	f := newFixture(t, "evt_dlv_x")
	ing := &fakeIngestion{}
	q := redisqueue.New(f.redis.Client, time.Hour)
	tg := &switchableTargets{url: f.url}
	tg.status.Store(int32(delivery.EndpointActive))
	// The registry reports the endpoint DISABLED from the moment it
	// confirmed the disable (before, the test switched it only once it saw
	// endpoint.disabled, and a resumer sweep in between took it for
	// enabled again: flaky under -race).
	f.reg.onDisable = func(string) { tg.status.Store(int32(delivery.EndpointDisabled)) }
	d := f.opDispatcher(q, ing, tg, 50*time.Millisecond, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	defer d.StartOpEvents(ctx, 20*time.Millisecond)(ctx)
	defer d.StartDisabler(ctx, 20*time.Millisecond)(ctx)
	svc := delivery.NewService(d, nil)
	rctx, stopResume := context.WithCancel(ctx)
	defer stopResume()
	go svc.RunResumer(rctx, nil, 100*time.Millisecond)

	scheduleTyped(t, q, "upload.completed", "dlv_x")
	exhaust(t, q, d)
	eventually(t, 10*time.Second, "endpoint.disabled", func() bool { return len(ing.events("endpoint.disabled")) == 1 })
	time.Sleep(400 * time.Millisecond)
	if got := ing.events("endpoint.enabled"); len(got) != 0 {
		t.Fatalf("endpoint.enabled while still disabled: %+v", got)
	}
	tg.status.Store(int32(delivery.EndpointActive)) // the customer enables it
	eventually(t, 10*time.Second, "endpoint.enabled", func() bool { return len(ing.events("endpoint.enabled")) == 1 })
	time.Sleep(1500 * time.Millisecond) // several sweeps and a whole window
	en := ing.events("endpoint.enabled")
	if len(en) != 1 || en[0].data["endpointId"] != "ep_1" || en[0].data["url"] != f.url || en[0].endpoint != "ep_1" {
		t.Fatalf("endpoint.enabled events = %+v; want exactly one about ep_1", en)
	}
}
