// Package servicetest tests the delivery service end to end in one
// process (the top-level e2e/ runs the binaries): a real redis-server, real
// HTTP receivers, the real gRPC server with the suite's interceptors over
// loopback, and the real worker. The registry belongs to another team:
// the suite's in-memory registry (pkg/registrytest) stands in for it.
package servicetest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/pkg/registryclient"
	"github.com/voxscriber/webhooks/pkg/registrytest"
	"github.com/voxscriber/webhooks/pkg/serve"
	"github.com/voxscriber/webhooks/pkg/ssrf"
	"github.com/voxscriber/webhooks/pkg/telemetry"
	"github.com/voxscriber/webhooks/services/delivery/internal/archive"
	"github.com/voxscriber/webhooks/services/delivery/internal/cache"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
	"github.com/voxscriber/webhooks/services/delivery/internal/grpcapi"
	"github.com/voxscriber/webhooks/services/delivery/internal/redisqueue"
	"github.com/voxscriber/webhooks/services/delivery/internal/sender"
	"github.com/voxscriber/webhooks/services/delivery/internal/targetcache"
)

// internalToken is the delivery processes' INTERNAL_TOKEN; Schedule
// calls carry it as ingestion's do.
const internalToken = "test-internal-token"

// spans records every span of the test binary (the gRPC interceptors use
// the global provider, as in the real service).
var spans = tracetest.NewSpanRecorder()

func TestMain(m *testing.M) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	os.Exit(m.Run())
}

// ---- the environment: Redis, registry, event store ----

type env struct {
	t      testing.TB
	redis  *redistest.Server
	rdb    redis.UniversalClient
	reg    *registrytest.Registry
	regc   *registryclient.Client // the shared client, as main.go wires it
	events *eventstore.Store
}

func newEnv(t testing.TB) *env {
	t.Helper()
	srv := redistest.Start(t)
	e := newEnvOn(t, srv.URL)
	e.redis = srv
	return e
}

// newClusterEnv is newEnv on a Redis Cluster of three masters (redis is
// nil: there is no one server to restart).
func newClusterEnv(t testing.TB) *env {
	t.Helper()
	return newEnvOn(t, redistest.StartCluster(t, 3).URL)
}

func newEnvOn(t testing.TB, url string) *env {
	t.Helper()
	e := &env{t: t}
	rdb, err := redisx.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	e.rdb = rdb
	e.events = eventstore.New(rdb, time.Hour)

	e.reg = registrytest.Start(t)
	e.regc = registryclient.New(e.reg.Client, 0)
	return e
}

// account creates an account with an API key.
func (e *env) account() (acct, key string) {
	acct = ids.New(ids.Account, time.Now())
	key = "vsk_test_" + acct
	e.reg.AddKey(key, acct)
	return acct, key
}

// publish stores an event as ingestion would and returns its id and body.
func (e *env) publish(acct, eventType string) (string, []byte) {
	e.t.Helper()
	now := time.Now()
	id := ids.New(ids.Event, now)
	data, _ := events.Sample(eventType)
	body, err := events.Envelope(id, eventType, now, data, false)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.events.Put(context.Background(), &eventstore.Event{
		ID: id, AccountID: acct, Type: eventType, Payload: body, CreateTime: now,
	}); err != nil {
		e.t.Fatal(err)
	}
	return id, body
}

// ---- a delivery process ----

type procOpts struct {
	schedule    []time.Duration
	timeout     time.Duration
	leaseMargin time.Duration
	// cidrs is ENDPOINT_ALLOWED_CIDRS; "-" for none (the strict guard).
	cidrs    string
	workers  int
	noWorker bool
	// endpointConcurrency is DELIVERY_ENDPOINT_CONCURRENCY (0: default).
	endpointConcurrency int
	// placeLease is how long concurrency places outlive their holder (0: default).
	placeLease time.Duration
}

type proc struct {
	queue *redisqueue.Queue
	// claimed counts the jobs this process's worker got from Claim (not
	// those created leased to it by Schedule).
	claimed *atomic.Int64
	disp    *delivery.Dispatcher
	worker  *delivery.Worker
	svc     *delivery.Service
	client  deliveryv1.DeliveryServiceClient
	sent    *atomic.Int64
	// payloadReads counts the payloads it read from the event store for
	// sending or showing (GetDelivery), not those Schedule read with the
	// events' accounts.
	payloadReads *atomic.Int64
	drain        func(context.Context)
}

// countingPayloads counts the payload reads of a dispatcher.
type countingPayloads struct {
	delivery.Events
	n *atomic.Int64
}

func (c countingPayloads) Payload(ctx context.Context, id string) ([]byte, error) {
	c.n.Add(1)
	return c.Events.Payload(ctx, id)
}

type countingSender struct {
	delivery.Sender
	n *atomic.Int64
}

func (c countingSender) Send(ctx context.Context, r delivery.Request) delivery.Response {
	c.n.Add(1)
	return c.Sender.Send(ctx, r)
}

// countingQueue counts what Claim hands out.
type countingQueue struct {
	*redisqueue.Queue
	claimed *atomic.Int64
}

func (c countingQueue) Claim(ctx context.Context, now, leaseUntil time.Time, max int) ([]delivery.Job, time.Time, error) {
	jobs, next, err := c.Queue.Claim(ctx, now, leaseUntil, max)
	c.claimed.Add(int64(len(jobs)))
	return jobs, next, err
}

func (e *env) start(o procOpts) *proc {
	t := e.t
	t.Helper()
	if o.schedule == nil {
		o.schedule = []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond}
	}
	if o.timeout == 0 {
		o.timeout = 3 * time.Second
	}
	if o.cidrs == "" {
		o.cidrs = "127.0.0.0/8"
	} else if o.cidrs == "-" {
		o.cidrs = ""
	}
	cidrs, err := ssrf.ParseCIDRs(o.cidrs)
	if err != nil {
		t.Fatal(err)
	}
	logOut := io.Discard
	if os.Getenv("DELIVERY_TEST_LOG") != "" {
		logOut = os.Stderr
	}
	log := telemetry.NewLogger(logOut, "debug")

	p := &proc{sent: &atomic.Int64{}, claimed: &atomic.Int64{}, payloadReads: &atomic.Int64{}}
	p.queue = redisqueue.New(e.rdb, time.Hour)
	snd := sender.New(sender.Config{Timeout: o.timeout, Policy: ssrf.Policy{AllowHTTP: true, AllowedCIDRs: cidrs}})
	t.Cleanup(snd.Close)
	p.disp = delivery.NewDispatcher(
		delivery.Config{Retry: delivery.RetryPolicy{Schedule: o.schedule}, Timeout: o.timeout, LeaseMargin: o.leaseMargin},
		delivery.Deps{
			Queue: countingQueue{p.queue, p.claimed}, History: &archive.Tiers{Q: p.queue, Events: e.events}, Sender: countingSender{snd, p.sent},
			Targets: targetcache.New(e.regc, time.Second), // the in-memory registry announces no changes: a short TTL
			Events: countingPayloads{cache.NewPayloads(e.events, cache.PayloadConfig{MaxEntries: 1000, MaxBytes: 16 << 20, TTL: time.Minute}),
				p.payloadReads},
			EventAccounts: e.events,
			Tracer:        otel.Tracer("delivery-test"), Logger: log,
			Limits: redisqueue.NewLimits(e.rdb),
		})
	p.worker = delivery.NewWorker(p.disp, delivery.WorkerConfig{Slots: max(o.workers, 1),
		EndpointConcurrency: o.endpointConcurrency, PlaceLease: o.placeLease})
	p.svc = delivery.NewService(p.disp, p.worker)
	stopWake := p.queue.Listen(p.worker.Wake)
	if !o.noWorker {
		p.worker.Start()
	}
	var once sync.Once
	p.drain = func(ctx context.Context) {
		once.Do(func() {
			stopWake()
			p.worker.Drain(ctx)
		})
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.drain(ctx)
	})

	srv, _ := serve.Service{
		Name:   deliveryv1.DeliveryService_ServiceDesc.ServiceName,
		Logger: log,
		Auth: authn.Config{
			Policy:        grpcapi.Policy(),
			Resolver:      &authn.CachingResolver{Next: e.regc, TTL: 30 * time.Second},
			InternalToken: internalToken,
		},
		Register: func(s *grpc.Server) { deliveryv1.RegisterDeliveryServiceServer(s, grpcapi.New(p.svc, "")) },
	}.NewServer()
	conn := serveLoopback(t, srv)
	p.client = deliveryv1.NewDeliveryServiceClient(conn)
	return p
}

// schedule calls the Schedule RPC (internal credential).
func (p *proc) schedule(t testing.TB, ctx context.Context, acct, eventType string, items ...*deliveryv1.ScheduleItem) []string {
	t.Helper()
	resp, err := p.client.Schedule(ctx, &deliveryv1.ScheduleRequest{AccountId: acct, EventType: eventType, Items: items}, as(internalToken))
	if err != nil {
		t.Fatalf("Schedule: %v", err)
	}
	return resp.GetDeliveryIds()
}

func item(event, endpoint string) *deliveryv1.ScheduleItem {
	return &deliveryv1.ScheduleItem{EventId: event, EndpointId: endpoint}
}

// as authenticates a customer call.
func as(key string) grpc.CallOption { return grpc.PerRPCCredentials(authn.Token(key)) }

func (p *proc) get(t testing.TB, key, id string) *deliveryv1.Delivery {
	t.Helper()
	resp, err := p.client.GetDelivery(context.Background(), &deliveryv1.GetDeliveryRequest{Id: id}, as(key))
	if err != nil {
		t.Fatalf("GetDelivery(%s): %v", id, err)
	}
	return resp.GetDelivery()
}

// waitStatus polls GetDelivery until the delivery has the status.
func (p *proc) waitStatus(t testing.TB, key, id string, want deliveryv1.DeliveryStatus, within time.Duration) *deliveryv1.Delivery {
	t.Helper()
	var d *deliveryv1.Delivery
	waitFor(t, within, func() bool {
		d = p.get(t, key, id)
		return d.GetStatus() == want
	}, func() string { return fmt.Sprintf("delivery %s is %v, want %v: %v", id, d.GetStatus(), want, d) })
	return d
}

func waitFor(t testing.TB, within time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", within, msg())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---- receivers ----

type received struct {
	at     time.Time
	path   string
	header http.Header
	body   []byte
}

type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []received
}

// newReceiver answers with handle; n counts this path's requests from 1.
func newReceiver(t testing.TB, handle func(w http.ResponseWriter, r *http.Request, n int)) *receiver {
	rc := &receiver{}
	counts := map[string]int{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, received{at: time.Now(), path: r.URL.Path, header: r.Header.Clone(), body: body})
		counts[r.URL.Path]++
		n := counts[r.URL.Path]
		rc.mu.Unlock()
		if handle == nil {
			w.WriteHeader(http.StatusOK)
			return
		}
		handle(w, r, n)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.reqs)
}

func (rc *receiver) url(path string) string { return rc.URL + path }

func active() registryv1.EndpointStatus { return registryv1.EndpointStatus_ENDPOINT_STATUS_ACTIVE }

// serveLoopback serves srv on a free loopback port until the test ends and
// returns a client connection to it.
func serveLoopback(t testing.TB, srv *grpc.Server) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := serve.Dial(lis.Addr().String(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}
