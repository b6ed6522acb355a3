package grpcapi_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/pgtest"
	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/pkg/registryclient"
	"github.com/voxscriber/webhooks/pkg/registrytest"
	"github.com/voxscriber/webhooks/pkg/serve"
	"github.com/voxscriber/webhooks/services/ingestion/internal/credits"
	"github.com/voxscriber/webhooks/services/ingestion/internal/grpcapi"
	"github.com/voxscriber/webhooks/services/ingestion/internal/historytier"
	"github.com/voxscriber/webhooks/services/ingestion/internal/index"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
	"github.com/voxscriber/webhooks/services/ingestion/internal/peers"
)

const (
	retention = time.Hour
	jaegerUI  = "http://jaeger.test"
)

func TestMain(m *testing.M) {
	// As telemetry.Setup does, without exporting: trace ids are made.
	otel.SetTextMapPropagator(propagation.TraceContext{})
	otel.SetTracerProvider(sdktrace.NewTracerProvider())
	code := m.Run()
	if pg != nil {
		pg.Close()
	}
	os.Exit(code)
}

// pg is the PostgreSQL of the tests that need the history tier, started by
// the first of them (pgServer).
var (
	pg     *pgtest.Server
	pgOnce sync.Once
	pgErr  error
)

func pgServer(t testing.TB) *pgtest.Server {
	t.Helper()
	pgOnce.Do(func() { pg, pgErr = pgtest.Launch() })
	if pgErr != nil {
		t.Fatal(pgErr)
	}
	return pg
}

// deliveryDouble stands in for the delivery service: it records the
// Schedule calls it accepted and the traceparent each call carried, and
// fails the next `failures` calls with Unavailable.
type deliveryDouble struct {
	deliveryv1.UnimplementedDeliveryServiceServer
	mu           sync.Mutex
	accepted     []*deliveryv1.ScheduleRequest
	traceparents []string
	attempts     int
	failures     int
	items        []*deliveryv1.ScheduleItem // of every accepted call
	// hold, when set, makes each Schedule call wait until it is closed;
	// held counts the calls waiting.
	hold chan struct{}
	held atomic.Int32
}

func (d *deliveryDouble) Schedule(ctx context.Context, req *deliveryv1.ScheduleRequest) (*deliveryv1.ScheduleResponse, error) {
	d.mu.Lock()
	hold := d.hold
	d.mu.Unlock()
	if hold != nil {
		d.held.Add(1)
		<-hold
		d.held.Add(-1)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.attempts++
	if d.failures > 0 {
		d.failures--
		return nil, status.Error(codes.Unavailable, "delivery is restarting")
	}
	md, _ := metadata.FromIncomingContext(ctx)
	d.traceparents = append(d.traceparents, strings.Join(md.Get("traceparent"), ","))
	d.accepted = append(d.accepted, req)
	d.items = append(d.items, req.GetItems()...)
	out := &deliveryv1.ScheduleResponse{}
	for _, it := range req.GetItems() {
		out.DeliveryIds = append(out.DeliveryIds, ids.Derive(ids.Delivery, it.GetEventId(), it.GetEndpointId()))
	}
	return out, nil
}

func (d *deliveryDouble) calls() []*deliveryv1.ScheduleRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.accepted)
}

func (d *deliveryDouble) failNext(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failures = n
}

type options struct {
	producerToken   string
	maxPayloadBytes int
	// wrapStore and wrapIndex, when set, wrap the real Redis store and
	// index (e.g. to hold one call at a chosen point of a race).
	wrapStore func(ingest.EventStore) ingest.EventStore
	wrapIndex func(ingest.Index) ingest.Index
	// history, when set, is the PostgreSQL tier the service reads.
	history *historytier.Tier
	// idemWindow is IDEMPOTENCY_WINDOW (default retention).
	idemWindow time.Duration
}

// env is a real ingestion server (real Redis, real interceptors, loopback
// gRPC) wired to the in-memory registry (pkg/registrytest) and a delivery
// double.
type env struct {
	redis  *redistest.Server
	reg    *registrytest.Registry
	dlv    *deliveryDouble
	client ingestionv1.IngestionServiceClient
	// gateway is the REST gateway's client (gathered publishes).
	gateway ingestionv1.GatewayPublishServiceClient
	// internal is the suite's own client (operational events).
	internal ingestionv1.IngestionInternalServiceClient
	stats    ingestionv1.StatsServiceClient
	store    *eventstore.Store
	index    *index.Redis
}

func newEnv(t testing.TB, o options) *env {
	t.Helper()
	e := &env{
		redis: redistest.Start(t),
		reg:   registrytest.Start(t),
		dlv:   &deliveryDouble{},
	}
	dlvConn := listen(t, func(s *grpc.Server) { deliveryv1.RegisterDeliveryServiceServer(s, e.dlv) })
	registry := registryclient.New(e.reg.Client, 0)
	e.store = eventstore.New(e.redis.Client, retention)
	if o.idemWindow == 0 {
		o.idemWindow = retention
	}
	e.index = index.New(e.redis.Client, retention, o.idemWindow)
	// As main wires it: events listed in the round trip that stores them
	// (a wrapped store, below, takes the two-step path).
	var store ingest.EventStore = index.ListingStore{Store: e.store, Index: e.index}
	if o.wrapStore != nil {
		store = o.wrapStore(store)
	}
	var idx ingest.Index = e.index
	if o.wrapIndex != nil {
		idx = o.wrapIndex(idx)
	}
	cfg := ingest.Config{
		Store:           store,
		Index:           idx,
		Subscribers:     registry,
		Scheduler:       peers.NewDelivery(deliveryv1.NewDeliveryServiceClient(dlvConn)),
		Settings:        registry,
		Credits:         credits.New(e.redis.Client, 0),
		MaxPayloadBytes: o.maxPayloadBytes,
	}
	if o.history != nil {
		cfg.History, cfg.Rollups = o.history, o.history
	}
	svc := ingest.New(cfg)
	service := serve.Service{
		Name:   ingestionv1.IngestionService_ServiceDesc.ServiceName,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Auth: authn.Config{
			Policy:        grpcapi.Policy(),
			Resolver:      &authn.CachingResolver{Next: registry, TTL: 30 * time.Second},
			ProducerToken: o.producerToken,
			InternalToken: internalToken,
		},
		Register: grpcapi.New(svc, jaegerUI, nil).Register,
	}
	srv, _ := service.NewServer()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	e.client = ingestionv1.NewIngestionServiceClient(conn)
	e.gateway = ingestionv1.NewGatewayPublishServiceClient(conn)
	internalConn, err := serve.Dial(lis.Addr().String(), internalToken) // as delivery dials ingestion
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = internalConn.Close() })
	e.internal = ingestionv1.NewIngestionInternalServiceClient(internalConn)
	e.stats = ingestionv1.NewStatsServiceClient(conn)
	return e
}

// internalToken is the test ingestion's INTERNAL_TOKEN; its internal
// client (the suite's own services) carries it.
const internalToken = "test-internal-token"

// listen serves a double on loopback and dials it as main.go dials the
// real services.
func listen(t testing.TB, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := serve.Dial(lis.Addr().String(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// customer returns an account with an API key and a context carrying it.
func (e *env) customer(t testing.TB) (string, context.Context) {
	t.Helper()
	acct := ids.New(ids.Account, time.Now())
	key := ids.New(ids.APIKey, time.Now())
	e.reg.AddKey(key, acct)
	return acct, withToken(t.Context(), key)
}

func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// eventKeys lists the wh:evt:* keys in Redis.
func (e *env) eventKeys(t testing.TB) []string {
	t.Helper()
	keys, err := e.redis.Client.Keys(t.Context(), "wh:evt:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func (e *env) dbsize(t testing.TB) int64 {
	t.Helper()
	n, err := e.redis.Client.DBSize(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

type deletedMarker struct{}

var deleted = deletedMarker{}

// sample returns the catalogue's sample data of eventType with the given
// fields set, or removed when the value is deleted.
func sample(t testing.TB, eventType string, kv ...any) *structpb.Struct {
	t.Helper()
	m, ok := events.Sample(eventType)
	if !ok {
		m = map[string]any{"uploadId": "upl_1"}
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == deleted {
			delete(m, kv[i].(string))
		} else {
			m[kv[i].(string)] = kv[i+1]
		}
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// holdSchedule makes Schedule calls wait until release is called.
func (d *deliveryDouble) holdSchedule() (release func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ch := make(chan struct{})
	d.hold = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			d.mu.Lock()
			d.hold = nil
			d.mu.Unlock()
			close(ch)
		})
	}
}
