package delivery_test

// Rules of auto-disable (issue #13 item 4), tested on a real redis-server
// (pkg/redistest), the real queue (redisqueue) and real HTTP receivers
// (httptest) through the real sender. The registry and the mailer belong
// to other components: small in-memory stand-ins of the delivery.Registry
// and mailer.Mailer interfaces whose availability the tests control.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/pkg/ssrf"
	"github.com/voxscriber/webhooks/services/delivery/internal/archive"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
	"github.com/voxscriber/webhooks/services/delivery/internal/mailer"
	"github.com/voxscriber/webhooks/services/delivery/internal/redisqueue"
	"github.com/voxscriber/webhooks/services/delivery/internal/sender"
)

// ---- stand-ins ----

var errDown = errors.New("registry unavailable (test outage)")

// fakeRegistry disables endpoints unless it is down.
type fakeRegistry struct {
	down     atomic.Bool
	calls    atomic.Int64 // DisableEndpoint calls, failed ones included
	mu       sync.Mutex
	disabled map[string]int // endpoint -> successful DisableEndpoint calls
	// onDisable, when set, is called on each successful DisableEndpoint
	// (a test's view of the endpoint turns DISABLED then, as the
	// registry's does).
	onDisable func(endpointID string)
}

func (r *fakeRegistry) DisableEndpoint(_ context.Context, _, endpointID, _ string) error {
	r.calls.Add(1)
	if r.down.Load() {
		return errDown
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.disabled == nil {
		r.disabled = map[string]int{}
	}
	r.disabled[endpointID]++
	if r.onDisable != nil {
		r.onDisable(endpointID)
	}
	return nil
}

func (r *fakeRegistry) NotificationEmail(context.Context, string) (string, error) {
	if r.down.Load() {
		return "", errDown
	}
	return "ops@acme.test", nil
}

func (r *fakeRegistry) disables(ep string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.disabled[ep]
}

// fakeMailer records the messages it accepted; failNext refuses that many.
type fakeMailer struct {
	failNext atomic.Int64
	mu       sync.Mutex
	sent     []mailer.Message
}

func (m *fakeMailer) Send(_ context.Context, msg mailer.Message) error {
	if m.failNext.Add(-1) >= 0 {
		return errors.New("smtp: 451 try again later (test)")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent = append(m.sent, msg)
	return nil
}

func (m *fakeMailer) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sent)
}

type targets map[string]*delivery.Target

func (t targets) Target(_ context.Context, _, endpointID string) (*delivery.Target, error) {
	return t[endpointID], nil
}

type payloads struct{}

func (payloads) Payload(context.Context, string) ([]byte, error) { return []byte(`{"id":"evt"}`), nil }

// ---- the fixture ----

type fixture struct {
	t     *testing.T
	redis *redistest.Server
	reg   *fakeRegistry
	mail  *fakeMailer
	url   string
}

// newFixture starts Redis and a receiver that fails (500) every event
// whose id is in failing and accepts the others.
func newFixture(t *testing.T, failing ...string) *fixture {
	f := &fixture{t: t, redis: redistest.Start(t), reg: &fakeRegistry{}, mail: &fakeMailer{}}
	bad := map[string]bool{}
	for _, id := range failing {
		bad[id] = true
	}
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if bad[r.Header.Get("X-Webhook-Id")] {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rc.Close)
	f.url = rc.URL
	return f
}

// dispatcher is one delivery process's pipeline on the fixture's Redis
// (its own Queue, as after a restart). stats overrides the queue's
// endpoint stats when not nil.
func (f *fixture) dispatcher(q *redisqueue.Queue, attempts int, stats delivery.EndpointStats) *delivery.Dispatcher {
	if stats == nil {
		stats = q
	}
	snd := sender.New(sender.Config{Timeout: 2 * time.Second, Policy: ssrf.Policy{AllowHTTP: true,
		AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}})
	f.t.Cleanup(snd.Close)
	sched := make([]time.Duration, attempts)
	for i := 1; i < attempts; i++ {
		sched[i] = time.Hour // later attempts come due only when the test claims them
	}
	return delivery.NewDispatcher(
		delivery.Config{Retry: delivery.RetryPolicy{Schedule: sched}, Timeout: 2 * time.Second},
		delivery.Deps{
			Queue: q, History: &archive.Tiers{Q: q}, Sender: snd, Events: payloads{},
			Targets: targets{"ep_1": {AccountID: "acct_1", EndpointID: "ep_1", URL: f.url, Status: delivery.EndpointActive}},
			Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
			Stats:   stats, Registry: f.reg, Mailer: f.mail,
		})
}

func schedule(t *testing.T, q *redisqueue.Queue, ids ...string) {
	t.Helper()
	now := time.Now()
	var ds []delivery.Delivery
	for _, id := range ids {
		ds = append(ds, delivery.Delivery{ID: id, EventID: id, EndpointID: "ep_1", AccountID: "acct_1",
			EventType: "upload.completed", Status: delivery.StatusPending, CreateTime: now, UpdateTime: now, NextTime: now})
	}
	if _, err := q.Schedule(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
}

// claim claims everything due at `at` and returns the jobs by delivery id.
func claim(t *testing.T, q *redisqueue.Queue, at time.Time) map[string]*delivery.Job {
	t.Helper()
	jobs, _, err := q.Claim(context.Background(), at, at.Add(15*time.Second), 100)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*delivery.Job{}
	for i := range jobs {
		out[jobs[i].Delivery.ID] = &jobs[i]
	}
	return out
}

// attempt claims id (due at `at`) and runs it through the pipeline.
func attempt(t *testing.T, q *redisqueue.Queue, d *delivery.Dispatcher, at time.Time, id string) (*delivery.Outcome, error) {
	t.Helper()
	job := claim(t, q, at)[id]
	if job == nil {
		t.Fatalf("%s was not due at %v", id, at)
	}
	return d.Dispatch(context.Background(), *job)
}

func status(t *testing.T, q *redisqueue.Queue, id string) delivery.Status {
	t.Helper()
	dl, _, err := q.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return dl.Status
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- the rules ----

// TestDisableSurvivesRegistryOutageAndRestartAndEmailsOnce: the registry is
// down when an event's final attempt fails. The decision waits in Redis,
// the delivery process restarts (a new Dispatcher on the same Redis takes
// over), the registry comes back: the endpoint is disabled, and exactly one
// notice goes out, although the first email try fails too.
func TestDisableSurvivesRegistryOutageAndRestartAndEmailsOnce(t *testing.T) {
	f := newFixture(t, "dlv_a")
	f.reg.down.Store(true)
	f.mail.failNext.Store(1)
	q1 := redisqueue.New(f.redis.Client, time.Hour)
	d1 := f.dispatcher(q1, 5, nil)
	stop1 := d1.StartDisabler(context.Background(), 20*time.Millisecond)

	schedule(t, q1, "dlv_a")
	at := time.Now()
	for n := 1; n <= 5; n++ {
		if _, err := attempt(t, q1, d1, at, "dlv_a"); err != nil {
			t.Fatalf("attempt %d: %v", n, err)
		}
		at = at.Add(2 * time.Hour)
	}
	if st := status(t, q1, "dlv_a"); st != delivery.StatusFailed {
		t.Fatalf("after 5 failed attempts the delivery is %s", st)
	}
	eventually(t, 5*time.Second, "the registry being asked (and failing)", func() bool { return f.reg.calls.Load() >= 1 })

	// The delivery process stops while the registry is still down…
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stop1(ctx)
	time.Sleep(4 * time.Second) // longer than any in-process retrying: only Redis remembers the decision
	if n := f.reg.disables("ep_1"); n != 0 {
		t.Fatalf("disabled %d times while the registry was down", n)
	}

	// …another starts on the same Redis, and the registry comes back.
	q2 := redisqueue.New(f.redis.Client, time.Hour)
	d2 := f.dispatcher(q2, 5, nil)
	stop2 := d2.StartDisabler(context.Background(), 20*time.Millisecond)
	defer stop2(ctx)
	f.reg.down.Store(false)
	eventually(t, 15*time.Second, "the endpoint disabled once the registry is back", func() bool { return f.reg.disables("ep_1") > 0 })
	eventually(t, 15*time.Second, "the notice email", func() bool { return f.mail.count() > 0 })
	time.Sleep(1500 * time.Millisecond) // time for a duplicate to show up
	if n := f.mail.count(); n != 1 {
		t.Errorf("%d notices sent, want exactly 1", n)
	}
	if n := f.reg.disables("ep_1"); n != 1 {
		t.Errorf("registry asked to disable %d times after it came back, want 1 (the email retry must not repeat it)", n)
	}
}

// TestLostSuccessMarkIsNeverSwallowed: a success whose endpoint mark cannot
// be written is not recorded as succeeded (the attempt repeats once its
// lease ends), so a later final failure of another event never disables
// the endpoint on the basis of a missing mark. The mark is made unwritable
// in Redis itself: its key holds a string, so the script's HGET fails.
func TestLostSuccessMarkIsNeverSwallowed(t *testing.T) {
	f := newFixture(t, "dlv_a")
	q := redisqueue.New(f.redis.Client, time.Hour)
	d := f.dispatcher(q, 2, nil)
	stop := d.StartDisabler(context.Background(), 20*time.Millisecond)
	defer stop(context.Background())
	ctx := context.Background()

	schedule(t, q, "dlv_a", "dlv_b")
	now := time.Now()
	first := claim(t, q, now)
	if o, err := d.Dispatch(context.Background(), *first["dlv_a"]); err != nil || o.Status != delivery.StatusPending {
		t.Fatalf("event a, attempt 1: %v, %v", o, err)
	}
	// Event b succeeds after a's first attempt, but its mark is lost.
	statsKey := redisqueue.EndpointStatsKey("ep_1")
	if err := f.redis.Client.Set(ctx, statsKey, "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dispatch(ctx, *first["dlv_b"]); err == nil {
		t.Error("a success mark that failed to write was swallowed: Dispatch returned no error")
	}
	if st := status(t, q, "dlv_b"); st == delivery.StatusSucceeded {
		t.Error("the success was recorded although its mark failed")
	}
	f.redis.Client.Del(ctx, statsKey)
	// Once the lease ends the success is attempted again and recorded.
	if job := claim(t, q, now.Add(20*time.Second))["dlv_b"]; job != nil {
		if _, err := d.Dispatch(context.Background(), *job); err != nil {
			t.Fatal(err)
		}
	}
	if st := status(t, q, "dlv_b"); st != delivery.StatusSucceeded {
		t.Fatalf("event b is %s, want succeeded", st)
	}
	// a's final attempt fails: there was a recorded success since its first.
	if o, err := attempt(t, q, d, now.Add(2*time.Hour), "dlv_a"); err != nil || o.Status != delivery.StatusFailed {
		t.Fatalf("event a, final attempt: %v, %v", o, err)
	}
	time.Sleep(time.Second)
	if n := f.reg.calls.Load(); n != 0 {
		t.Errorf("the registry was asked %d times to disable an endpoint that had a recorded success", n)
	}
	if n := f.mail.count(); n != 0 {
		t.Errorf("%d notices sent", n)
	}
}

// TestLostLeaseDecidesNothing: an attempt whose outcome could not be
// recorded (another worker holds the lease now) takes no disable decision;
// the attempt that is recorded does, once.
func TestLostLeaseDecidesNothing(t *testing.T) {
	f := newFixture(t, "dlv_a")
	q := redisqueue.New(f.redis.Client, time.Hour)
	d := f.dispatcher(q, 1, nil)
	stop := d.StartDisabler(context.Background(), 20*time.Millisecond)
	defer stop(context.Background())

	schedule(t, q, "dlv_a")
	now := time.Now()
	stale := claim(t, q, now)["dlv_a"]
	fresh := claim(t, q, stale.LeaseUntil.Add(time.Millisecond))["dlv_a"] // the lease expired: claimed again
	if stale == nil || fresh == nil {
		t.Fatal("claims failed")
	}
	if _, err := d.Dispatch(context.Background(), *stale); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if n := f.reg.calls.Load(); n != 0 {
		t.Fatalf("an attempt whose outcome was not recorded led to %d disable calls", n)
	}
	// The attempt of the lease holder is recorded and decides.
	if o, err := d.Dispatch(context.Background(), *fresh); err != nil || o.Status != delivery.StatusFailed {
		t.Fatalf("recorded final attempt: %v, %v", o, err)
	}
	eventually(t, 10*time.Second, "the disable", func() bool { return f.reg.disables("ep_1") == 1 })
	eventually(t, 10*time.Second, "the notice", func() bool { return f.mail.count() == 1 })
}
