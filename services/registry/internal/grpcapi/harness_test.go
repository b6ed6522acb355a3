package grpcapi_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/grpctest"
	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/pkg/secretbox"
	"github.com/voxscriber/webhooks/pkg/serve"
	"github.com/voxscriber/webhooks/pkg/ssrf"
	"github.com/voxscriber/webhooks/pkg/telemetry"
	"github.com/voxscriber/webhooks/services/registry/internal/grpcapi"
	"github.com/voxscriber/webhooks/services/registry/internal/redisstore"
	"github.com/voxscriber/webhooks/services/registry/internal/registry"
)

const adminToken = "test-admin-token"

// internalToken is the INTERNAL_TOKEN of the harness's registry unless a
// test sets another; h.internal sends it, h.bare sends none.
const internalToken = "test-internal-token"

// Public addresses used as endpoint hosts; IP literals need no DNS.
const (
	publicURL  = "https://93.184.216.34/hook"
	publicURL2 = "https://93.184.216.35/other"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeDNS resolves a few test names without the network.
type fakeDNS map[string]string

func (f fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

type options struct {
	allowHTTP     bool
	allowedCIDRs  string
	adminToken    string
	internalToken string
	// noInternalToken runs the registry without INTERNAL_TOKEN.
	noInternalToken bool
	// tls serves mutual TLS (dial with h.dialTLS).
	tls *serve.TLS
}

// harness is a registry served over bufconn with the suite's real
// interceptors, on a private redis-server.
type harness struct {
	t        *testing.T
	redis    *redistest.Server
	clock    *clock
	svc      *registry.Service
	api      registryv1.RegistryServiceClient
	internal registryv1.RegistryInternalServiceClient
	// bare reaches the internal service without any credential.
	bare registryv1.RegistryInternalServiceClient
	// dialTLS reaches the internal service over TLS with a client's
	// certificate (options.tls).
	dialTLS func(client *serve.TLS) registryv1.RegistryInternalServiceClient
}

func newHarness(t *testing.T, o ...options) *harness {
	t.Helper()
	opt := options{adminToken: adminToken}
	if len(o) > 0 {
		opt = o[0]
	}
	if opt.internalToken == "" {
		opt.internalToken = internalToken
	}
	serverToken := opt.internalToken
	if opt.noInternalToken {
		serverToken = ""
	}
	rs := redistest.Start(t)
	box, err := secretbox.New([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	cidrs, err := ssrf.ParseCIDRs(opt.allowedCIDRs)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now().UTC()}
	store := redisstore.New(rs.Client)
	if err := registry.VerifySecretsKey(context.Background(), store, box); err != nil {
		t.Fatal(err)
	}
	svc, err := registry.NewService(registry.Config{
		Store: store,
		Box:   box,
		URLPolicy: ssrf.Policy{AllowHTTP: opt.allowHTTP, AllowedCIDRs: cidrs, Resolver: fakeDNS{
			"hooks.example.com":    "93.184.216.34",
			"internal.example.com": "10.0.0.5",
		}},
		Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := serve.Service{
		Name:   "registry",
		Logger: telemetry.NewLogger(io.Discard, "error"),
		Auth: authn.Config{
			Policy:        grpcapi.Policy(),
			Resolver:      svc,
			AdminToken:    opt.adminToken,
			InternalToken: serverToken,
			Callers:       grpcapi.Callers(),
		},
		TLS:      opt.tls,
		Register: func(g *grpc.Server) { grpcapi.Register(g, svc) },
	}.NewServer()
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	transport := insecure.NewCredentials()
	if opt.tls != nil { // the harness's own calls present the registry's certificate
		transport = opt.tls.ClientCredentials()
	}
	dial := func(creds credentials.TransportCredentials, opts ...grpc.DialOption) *grpc.ClientConn {
		conn, err := grpc.NewClient("passthrough:///registry", append(opts, grpc.WithTransportCredentials(creds),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	conn := dial(transport)
	t.Cleanup(srv.Stop)
	return &harness{
		t: t, redis: rs, clock: clk, svc: svc,
		api:      registryv1.NewRegistryServiceClient(conn),
		internal: registryv1.NewRegistryInternalServiceClient(dial(transport, grpc.WithPerRPCCredentials(authn.Token(opt.internalToken)))),
		bare:     registryv1.NewRegistryInternalServiceClient(conn),
		dialTLS: func(client *serve.TLS) registryv1.RegistryInternalServiceClient {
			return registryv1.NewRegistryInternalServiceClient(dial(client.ClientCredentials(), grpc.WithPerRPCCredentials(authn.Token(opt.internalToken))))
		},
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// as is the call option carrying a bearer token.
func as(token string) grpc.CallOption { return grpc.PerRPCCredentials(authn.Token(token)) }

// account creates an account and returns its id and API key.
func (h *harness) account(name string) (string, string) {
	h.t.Helper()
	resp, err := h.api.CreateAccount(ctx(h.t), &registryv1.CreateAccountRequest{Name: name}, as(adminToken))
	if err != nil {
		h.t.Fatalf("CreateAccount: %v", err)
	}
	return resp.GetAccount().GetId(), resp.GetApiKey()
}

// endpoint creates an endpoint and returns the response.
func (h *harness) endpoint(key string, req *registryv1.CreateEndpointRequest) *registryv1.CreateEndpointResponse {
	h.t.Helper()
	if req.Url == "" {
		req.Url = publicURL
	}
	if req.EventTypes == nil {
		req.EventTypes = []string{"transcription.completed"}
	}
	resp, err := h.api.CreateEndpoint(ctx(h.t), req, as(key))
	if err != nil {
		h.t.Fatalf("CreateEndpoint: %v", err)
	}
	return resp
}

// wantInvalid checks an InvalidArgument naming field in its message and in
// its BadRequest detail.
func wantInvalid(t *testing.T, err error, field string) {
	t.Helper()
	grpctest.RequireCode(t, err, codes.InvalidArgument)
	st := status.Convert(err)
	if !strings.HasPrefix(st.Message(), field+": ") {
		t.Fatalf("message %q does not name %s", st.Message(), field)
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			if len(br.GetFieldViolations()) != 1 || br.GetFieldViolations()[0].GetField() != field {
				t.Fatalf("field violations %v, want %s", br.GetFieldViolations(), field)
			}
			return
		}
	}
	t.Fatalf("no BadRequest detail in %v", err)
}

// keys returns every key in Redis.
func (h *harness) keys() []string {
	h.t.Helper()
	ks, err := h.redis.Client.Keys(context.Background(), "*").Result()
	if err != nil {
		h.t.Fatal(err)
	}
	return ks
}

func (h *harness) epsCount(acct string) int64 {
	h.t.Helper()
	n, err := h.redis.Client.ZCard(context.Background(), "wh:{a:"+acct+"}:eps").Result()
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// dump returns a key's value, whatever its type, as text.
func dump(t *testing.T, h *harness, key string) string {
	t.Helper()
	c, bg := h.redis.Client, context.Background()
	typ, err := c.Type(bg, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	switch typ {
	case "string":
		b.WriteString(c.Get(bg, key).Val())
	case "hash":
		for k, v := range c.HGetAll(bg, key).Val() {
			b.WriteString(k + "=" + v + "\n")
		}
	case "zset":
		for _, m := range c.ZRange(bg, key, 0, -1).Val() {
			b.WriteString(m + "\n")
		}
	case "list":
		for _, m := range c.LRange(bg, key, 0, -1).Val() {
			b.WriteString(m + "\n")
		}
	case "set":
		for _, m := range c.SMembers(bg, key).Val() {
			b.WriteString(m + "\n")
		}
	default:
		t.Fatalf("key %s has unexpected type %s", key, typ)
	}
	return b.String()
}
