// Package registrytest is an in-memory registry for the tests of the
// services that call it (ingestion, delivery): a real gRPC server of
// RegistryInternalService on a loopback port, backed by maps, that answers
// as the registry does (NotFound for unknown keys, accounts and endpoints,
// InvalidArgument for requests the registry refuses). Tests set it up with
// AddKey, Subscribe, SetEndpoint, SetOrdering and SetSettings, read what it was asked
// with Calls and ListSubscribersCalls, and make it fail with Fail.
package registrytest

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/serve"
)

// SecretOverlap is how long the older secrets given to SetEndpoint stay
// valid (their expire_time is now + SecretOverlap).
const SecretOverlap = 24 * time.Hour

// Registry is the in-memory registry. Its methods are safe for concurrent
// use.
type Registry struct {
	registryv1.UnimplementedRegistryInternalServiceServer

	// Client calls this registry over loopback, dialled as the services
	// dial the real one (serve.Dial).
	Client registryv1.RegistryInternalServiceClient
	// Addr is the loopback address it listens on.
	Addr string

	mu        sync.Mutex
	keys      map[string]string // API key -> account
	accounts  map[string]*account
	calls     map[string]int // method name -> calls
	listCalls []string       // account + " " + event type, in order
	fail      func(ctx context.Context, method string) error
}

type account struct {
	settings  *registryv1.Settings
	endpoints []*endpoint // in creation order, as ListSubscribers answers
}

type endpoint struct {
	ep      *registryv1.Endpoint
	secrets []*registryv1.Secret
}

var _ registryv1.RegistryInternalServiceServer = (*Registry)(nil)

// Start serves a new, empty registry until the test ends.
func Start(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{keys: map[string]string{}, accounts: map[string]*account{}, calls: map[string]int{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	registryv1.RegisterRegistryInternalServiceServer(srv, r)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := serve.Dial(lis.Addr().String(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	r.Addr = lis.Addr().String()
	r.Client = registryv1.NewRegistryInternalServiceClient(conn)
	return r
}

// ---- set-up ----

// AddKey makes apiKey authenticate as accountID.
func (r *Registry) AddKey(apiKey, accountID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys[apiKey] = accountID
}

// Subscribe subscribes the account's endpoints to eventType, creating the
// ones it does not hold yet (ACTIVE, with a URL under https://example.test).
func (r *Registry) Subscribe(accountID, eventType string, endpointIDs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range endpointIDs {
		e := r.endpointLocked(accountID, id)
		if e.ep.Url == "" {
			e.ep.Url = "https://example.test/" + id
		}
		if !slices.Contains(e.ep.EventTypes, eventType) {
			e.ep.EventTypes = append(e.ep.EventTypes, eventType)
		}
	}
}

// SetEndpoint creates or replaces an endpoint's URL, status, headers and
// secrets (newest first: every secret after the first is in its rotation
// overlap, expiring SecretOverlap from now). Its subscriptions are kept.
func (r *Registry) SetEndpoint(accountID, id, url string, st registryv1.EndpointStatus, headers map[string]string, secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.endpointLocked(accountID, id)
	e.ep.Url, e.ep.Status, e.ep.Headers = url, st, headers
	e.secrets = nil
	for i, s := range secrets {
		sec := &registryv1.Secret{Value: s}
		if i > 0 {
			sec.ExpireTime = timestamppb.New(time.Now().Add(SecretOverlap))
		}
		e.secrets = append(e.secrets, sec)
	}
}

// SetRateLimit sets an endpoint's rateLimitPerSecond (0: none).
func (r *Registry) SetRateLimit(accountID, id string, perSecond int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.endpointLocked(accountID, id).ep.RateLimitPerSecond = perSecond
}

// SetOrdering sets an endpoint's ordering (ListSubscribers names the
// ORDERED_BY_KEY ones in ordered_endpoint_ids; GetDeliveryTarget returns
// it).
func (r *Registry) SetOrdering(accountID, id string, o registryv1.EndpointOrdering) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.endpointLocked(accountID, id).ep.Ordering = o
}

// SetSettings replaces an account's settings.
func (r *Registry) SetSettings(accountID string, s *registryv1.Settings) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accountLocked(accountID).settings = proto.Clone(s).(*registryv1.Settings)
}

// Fail makes every call first ask fn (with the method name, such as
// "ListSubscribers"): a non-nil error is the call's answer. fn may block
// until ctx ends to play a registry that does not answer. Fail(nil)
// restores normal answers.
func (r *Registry) Fail(fn func(ctx context.Context, method string) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = fn
}

// ---- what it was asked ----

// Calls is the number of calls of a method ("GetDeliveryTarget") so far.
func (r *Registry) Calls(method string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[method]
}

// ListSubscribersCalls lists the ListSubscribers calls so far, each as
// account + " " + event type.
func (r *Registry) ListSubscribersCalls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.listCalls)
}

// Endpoint returns a copy of an endpoint as the registry holds it (nil
// when unknown), e.g. to see a DisableEndpointBySystem.
func (r *Registry) Endpoint(accountID, id string) *registryv1.Endpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.findLocked(accountID, id); e != nil {
		return proto.Clone(e.ep).(*registryv1.Endpoint)
	}
	return nil
}

// ---- RegistryInternalService ----

// Authenticate answers the account of a key added with AddKey; other keys
// are NotFound.
func (r *Registry) Authenticate(ctx context.Context, req *registryv1.AuthenticateRequest) (*registryv1.AuthenticateResponse, error) {
	if err := r.begin(ctx, "Authenticate"); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	acct, ok := r.keys[req.GetApiKey()]
	if !ok {
		return nil, status.Error(codes.NotFound, "unknown or revoked API key")
	}
	return &registryv1.AuthenticateResponse{AccountId: acct}, nil
}

// ListSubscribers answers the ACTIVE endpoints subscribed to the type, in
// creation order, and those of them ordered by key.
func (r *Registry) ListSubscribers(ctx context.Context, req *registryv1.ListSubscribersRequest) (*registryv1.ListSubscribersResponse, error) {
	if err := r.begin(ctx, "ListSubscribers"); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.listCalls = append(r.listCalls, req.GetAccountId()+" "+req.GetEventType())
	if err := checkAccount(req.GetAccountId()); err != nil {
		return nil, err
	}
	if _, ok := events.Lookup(req.GetEventType()); !ok {
		return nil, status.Errorf(codes.InvalidArgument, "event_type: unknown event type %q", req.GetEventType())
	}
	out := &registryv1.ListSubscribersResponse{EndpointIds: []string{}}
	if a := r.accounts[req.GetAccountId()]; a != nil {
		for _, e := range a.endpoints {
			st := e.ep.Status
			takes := slices.ContainsFunc(e.ep.EventTypes, func(entry string) bool { return events.Subscribed(entry, req.GetEventType()) })
			// As the registry: ACTIVE endpoints, and DISABLED ones (their
			// deliveries park); never INACTIVE ones.
			if (st == registryv1.EndpointStatus_ENDPOINT_STATUS_ACTIVE || st == registryv1.EndpointStatus_ENDPOINT_STATUS_DISABLED) && takes {
				out.EndpointIds = append(out.EndpointIds, e.ep.Id)
				if e.ep.Ordering == registryv1.EndpointOrdering_ENDPOINT_ORDERING_ORDERED_BY_KEY {
					out.OrderedEndpointIds = append(out.OrderedEndpointIds, e.ep.Id)
				}
			}
		}
	}
	return out, nil
}

// GetDeliveryTarget answers an endpoint with its secrets; an unknown one
// is NotFound.
func (r *Registry) GetDeliveryTarget(ctx context.Context, req *registryv1.GetDeliveryTargetRequest) (*registryv1.GetDeliveryTargetResponse, error) {
	if err := r.begin(ctx, "GetDeliveryTarget"); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.findLocked(req.GetAccountId(), req.GetEndpointId())
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "endpoint %q not found", req.GetEndpointId())
	}
	out := &registryv1.GetDeliveryTargetResponse{Endpoint: proto.Clone(e.ep).(*registryv1.Endpoint)}
	for _, s := range e.secrets {
		out.Secrets = append(out.Secrets, proto.Clone(s).(*registryv1.Secret))
	}
	return out, nil
}

// GetAccountSettings answers the settings given to SetSettings (zero
// settings for any other well-formed account id).
func (r *Registry) GetAccountSettings(ctx context.Context, req *registryv1.GetAccountSettingsRequest) (*registryv1.GetAccountSettingsResponse, error) {
	if err := r.begin(ctx, "GetAccountSettings"); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := checkAccount(req.GetAccountId()); err != nil {
		return nil, err
	}
	s := &registryv1.Settings{}
	if a := r.accounts[req.GetAccountId()]; a != nil && a.settings != nil {
		s = proto.Clone(a.settings).(*registryv1.Settings)
	}
	return &registryv1.GetAccountSettingsResponse{Settings: s}, nil
}

// DisableEndpointBySystem marks an endpoint DISABLED with the reason; an
// unknown one is NotFound.
func (r *Registry) DisableEndpointBySystem(ctx context.Context, req *registryv1.DisableEndpointBySystemRequest) (*registryv1.DisableEndpointBySystemResponse, error) {
	if err := r.begin(ctx, "DisableEndpointBySystem"); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.findLocked(req.GetAccountId(), req.GetEndpointId())
	if e == nil {
		return nil, status.Errorf(codes.NotFound, "endpoint %q not found", req.GetEndpointId())
	}
	e.ep.Status = registryv1.EndpointStatus_ENDPOINT_STATUS_DISABLED
	e.ep.DisabledReason, e.ep.DisableTime = req.GetReason(), timestamppb.Now()
	return &registryv1.DisableEndpointBySystemResponse{Endpoint: proto.Clone(e.ep).(*registryv1.Endpoint)}, nil
}

// ---- internals ----

// begin counts the call and asks the Fail hook.
func (r *Registry) begin(ctx context.Context, method string) error {
	r.mu.Lock()
	r.calls[method]++
	fail := r.fail
	r.mu.Unlock()
	if fail != nil {
		return fail(ctx, method)
	}
	return nil
}

// checkAccount refuses account ids as the registry does.
func checkAccount(id string) error {
	if id == "" {
		return status.Error(codes.InvalidArgument, "account_id: is required")
	}
	if !ids.Valid(ids.Account, id) {
		return status.Errorf(codes.NotFound, "account %q not found", id)
	}
	return nil
}

func (r *Registry) accountLocked(id string) *account {
	a := r.accounts[id]
	if a == nil {
		a = &account{}
		r.accounts[id] = a
	}
	return a
}

func (r *Registry) findLocked(accountID, id string) *endpoint {
	if a := r.accounts[accountID]; a != nil {
		for _, e := range a.endpoints {
			if e.ep.Id == id {
				return e
			}
		}
	}
	return nil
}

// endpointLocked returns the endpoint, created ACTIVE when missing.
func (r *Registry) endpointLocked(accountID, id string) *endpoint {
	if e := r.findLocked(accountID, id); e != nil {
		return e
	}
	e := &endpoint{ep: &registryv1.Endpoint{Id: id, Status: registryv1.EndpointStatus_ENDPOINT_STATUS_ACTIVE, CreateTime: timestamppb.Now()}}
	a := r.accountLocked(accountID)
	a.endpoints = append(a.endpoints, e)
	return e
}
