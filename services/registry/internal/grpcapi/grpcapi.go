// Package grpcapi is the registry's gRPC edge: thin handlers that translate
// protobuf messages to the domain (internal/registry) and back. Domain
// errors become status codes in the serve package's interceptor.
package grpcapi

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/services/registry/internal/audit"
	"github.com/voxscriber/webhooks/services/registry/internal/registry"
)

// Policy is the credential each registry method needs.
func Policy() authn.Policy {
	p := authn.Policy{
		registryv1.RegistryService_CreateAccount_FullMethodName:  authn.Admin,
		registryv1.RegistryService_DeleteAccount_FullMethodName:  authn.Admin,
		registryv1.RegistryService_ListEventTypes_FullMethodName: authn.Public,
	}
	for _, m := range registryv1.RegistryService_ServiceDesc.Methods {
		name := "/" + registryv1.RegistryService_ServiceDesc.ServiceName + "/" + m.MethodName
		if _, set := p[name]; !set {
			p[name] = authn.Customer
		}
	}
	for _, m := range registryv1.RegistryInternalService_ServiceDesc.Methods {
		p["/"+registryv1.RegistryInternalService_ServiceDesc.ServiceName+"/"+m.MethodName] = authn.Internal
	}
	return p
}

// Callers is, for each internal method, the services allowed to call it
// over mutual TLS (known by their certificates: authn.Identities). The
// gateway faces the internet and is never one of them: it cannot read
// signing secrets or settings, even with a valid certificate.
func Callers() authn.Callers {
	const ingestion, delivery = "ingestion", "delivery"
	return authn.Callers{
		registryv1.RegistryInternalService_Authenticate_FullMethodName:            {ingestion, delivery},
		registryv1.RegistryInternalService_ListSubscribers_FullMethodName:         {ingestion},
		registryv1.RegistryInternalService_GetDeliveryTarget_FullMethodName:       {delivery},
		registryv1.RegistryInternalService_DisableEndpointBySystem_FullMethodName: {delivery},
		registryv1.RegistryInternalService_GetAccountSettings_FullMethodName:      {ingestion, delivery},
	}
}

// Extras are the parts of the API beyond the registry's own state: the
// audit log's reader (both tiers) and the account eraser. A nil one
// answers Unavailable.
type Extras struct {
	Audit  *audit.Log
	Eraser Eraser
}

// Eraser erases an account and all its data (DeleteAccount).
type Eraser interface {
	EraseAccount(ctx context.Context, accountID string) error
}

// Register registers both registry services on g.
func Register(g *grpc.Server, svc *registry.Service, extras ...Extras) {
	srv := NewServer(svc)
	if len(extras) > 0 {
		srv.extras = extras[0]
	}
	registryv1.RegisterRegistryServiceServer(g, srv)
	registryv1.RegisterRegistryInternalServiceServer(g, NewInternalServer(svc))
}

// Server implements the customer-facing RegistryService.
type Server struct {
	registryv1.UnimplementedRegistryServiceServer
	svc    *registry.Service
	extras Extras
}

var _ registryv1.RegistryServiceServer = (*Server)(nil)

// NewServer returns the RegistryService handlers.
func NewServer(svc *registry.Service) *Server { return &Server{svc: svc} }

// CreateAccount implements registryv1.RegistryServiceServer.
func (s *Server) CreateAccount(ctx context.Context, req *registryv1.CreateAccountRequest) (*registryv1.CreateAccountResponse, error) {
	a, key, err := s.svc.CreateAccount(ctx, req.GetName(), req.GetNotificationEmail())
	if err != nil {
		return nil, err
	}
	return &registryv1.CreateAccountResponse{
		Account: &registryv1.Account{Id: a.ID, Name: a.Name, CreateTime: ts(a.CreateTime)},
		ApiKey:  key,
	}, nil
}

// ListEventTypes implements registryv1.RegistryServiceServer.
func (s *Server) ListEventTypes(context.Context, *registryv1.ListEventTypesRequest) (*registryv1.ListEventTypesResponse, error) {
	cat := events.Catalogue()
	out := &registryv1.ListEventTypesResponse{EventTypes: make([]*registryv1.EventType, 0, len(cat))}
	for _, t := range cat {
		schema, err := structpb.NewStruct(t.JSONSchema())
		if err != nil {
			return nil, fmt.Errorf("schema of %s: %w", t.Name, err)
		}
		out.EventTypes = append(out.EventTypes, &registryv1.EventType{Name: t.Name, Description: t.Description, Schema: schema})
	}
	return out, nil
}

// CreateEndpoint implements registryv1.RegistryServiceServer.
func (s *Server) CreateEndpoint(ctx context.Context, req *registryv1.CreateEndpointRequest) (*registryv1.CreateEndpointResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	e, secret, err := s.svc.CreateEndpoint(ctx, acct, registry.EndpointInput{
		URL:         req.GetUrl(),
		EventTypes:  req.GetEventTypes(),
		Description: req.GetDescription(),
		Secret:      req.GetSecret(),
		Headers:     req.GetHeaders(),
		RateLimit:   int(req.GetRateLimitPerSecond()),
		Status:      statusFromProto(req.GetStatus()),
		Ordering:    orderingFromProto(req.GetOrdering()),
	})
	if err != nil {
		return nil, err
	}
	return &registryv1.CreateEndpointResponse{Endpoint: endpointToProto(e), Secret: secret}, nil
}

// GetEndpoint implements registryv1.RegistryServiceServer.
func (s *Server) GetEndpoint(ctx context.Context, req *registryv1.GetEndpointRequest) (*registryv1.GetEndpointResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	e, err := s.svc.GetEndpoint(ctx, acct, req.GetId())
	if err != nil {
		return nil, err
	}
	return &registryv1.GetEndpointResponse{Endpoint: endpointToProto(e)}, nil
}

// ListEndpoints implements registryv1.RegistryServiceServer.
func (s *Server) ListEndpoints(ctx context.Context, req *registryv1.ListEndpointsRequest) (*registryv1.ListEndpointsResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	eps, next, err := s.svc.ListEndpoints(ctx, acct, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &registryv1.ListEndpointsResponse{Endpoints: make([]*registryv1.Endpoint, len(eps)), NextPageToken: next}
	for i, e := range eps {
		out.Endpoints[i] = endpointToProto(e)
	}
	return out, nil
}

// UpdateEndpoint implements registryv1.RegistryServiceServer.
func (s *Server) UpdateEndpoint(ctx context.Context, req *registryv1.UpdateEndpointRequest) (*registryv1.UpdateEndpointResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	id := req.GetId()
	if id == "" {
		id = req.GetEndpoint().GetId()
	}
	in := req.GetEndpoint()
	e, err := s.svc.UpdateEndpoint(ctx, acct, id, registry.EndpointInput{
		URL:         in.GetUrl(),
		EventTypes:  in.GetEventTypes(),
		Description: in.GetDescription(),
		Headers:     in.GetHeaders(),
		RateLimit:   int(in.GetRateLimitPerSecond()),
		Status:      statusFromProto(in.GetStatus()),
		Ordering:    orderingFromProto(in.GetOrdering()),
	}, req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, err
	}
	return &registryv1.UpdateEndpointResponse{Endpoint: endpointToProto(e)}, nil
}

// DeleteEndpoint implements registryv1.RegistryServiceServer.
func (s *Server) DeleteEndpoint(ctx context.Context, req *registryv1.DeleteEndpointRequest) (*registryv1.DeleteEndpointResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.svc.DeleteEndpoint(ctx, acct, req.GetId()); err != nil {
		return nil, err
	}
	return &registryv1.DeleteEndpointResponse{}, nil
}

// EnableEndpoint implements registryv1.RegistryServiceServer.
func (s *Server) EnableEndpoint(ctx context.Context, req *registryv1.EnableEndpointRequest) (*registryv1.EnableEndpointResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	e, err := s.svc.EnableEndpoint(ctx, acct, req.GetId())
	if err != nil {
		return nil, err
	}
	return &registryv1.EnableEndpointResponse{Endpoint: endpointToProto(e)}, nil
}

// DisableEndpoint implements registryv1.RegistryServiceServer.
func (s *Server) DisableEndpoint(ctx context.Context, req *registryv1.DisableEndpointRequest) (*registryv1.DisableEndpointResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	e, err := s.svc.DisableEndpoint(ctx, acct, req.GetId())
	if err != nil {
		return nil, err
	}
	return &registryv1.DisableEndpointResponse{Endpoint: endpointToProto(e)}, nil
}

// RotateEndpointSecret implements registryv1.RegistryServiceServer.
func (s *Server) RotateEndpointSecret(ctx context.Context, req *registryv1.RotateEndpointSecretRequest) (*registryv1.RotateEndpointSecretResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	e, secret, err := s.svc.RotateSecret(ctx, acct, req.GetId(), req.GetOverlapSeconds())
	if err != nil {
		return nil, err
	}
	return &registryv1.RotateEndpointSecretResponse{Endpoint: endpointToProto(e), Secret: secret}, nil
}

// GetSettings implements registryv1.RegistryServiceServer.
func (s *Server) GetSettings(ctx context.Context, _ *registryv1.GetSettingsRequest) (*registryv1.GetSettingsResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	st, err := s.svc.GetSettings(ctx, acct)
	if err != nil {
		return nil, err
	}
	return &registryv1.GetSettingsResponse{Settings: settingsToProto(st)}, nil
}

// UpdateSettings implements registryv1.RegistryServiceServer.
func (s *Server) UpdateSettings(ctx context.Context, req *registryv1.UpdateSettingsRequest) (*registryv1.UpdateSettingsResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	st, err := s.svc.UpdateSettings(ctx, acct, registry.Settings{
		NotificationEmail:   req.GetSettings().GetNotificationEmail(),
		CreditsLowThreshold: req.GetSettings().GetCreditsLowThreshold(),
	}, req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, err
	}
	return &registryv1.UpdateSettingsResponse{Settings: settingsToProto(st)}, nil
}

// CreateApiKey implements registryv1.RegistryServiceServer.
func (s *Server) CreateApiKey(ctx context.Context, req *registryv1.CreateApiKeyRequest) (*registryv1.CreateApiKeyResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	k, key, err := s.svc.CreateAPIKey(ctx, acct, req.GetName())
	if err != nil {
		return nil, err
	}
	return &registryv1.CreateApiKeyResponse{ApiKey: apiKeyToProto(k), Key: key}, nil
}

// ListApiKeys implements registryv1.RegistryServiceServer.
func (s *Server) ListApiKeys(ctx context.Context, req *registryv1.ListApiKeysRequest) (*registryv1.ListApiKeysResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	keys, next, err := s.svc.ListAPIKeys(ctx, acct, int(req.GetPageSize()), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &registryv1.ListApiKeysResponse{ApiKeys: make([]*registryv1.ApiKey, len(keys)), NextPageToken: next}
	for i, k := range keys {
		out.ApiKeys[i] = apiKeyToProto(k)
	}
	return out, nil
}

// DeleteApiKey implements registryv1.RegistryServiceServer.
func (s *Server) DeleteApiKey(ctx context.Context, req *registryv1.DeleteApiKeyRequest) (*registryv1.DeleteApiKeyResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := s.svc.RevokeAPIKey(ctx, acct, req.GetId()); err != nil {
		return nil, err
	}
	return &registryv1.DeleteApiKeyResponse{}, nil
}

// ListAuditLog implements registryv1.RegistryServiceServer.
func (s *Server) ListAuditLog(ctx context.Context, req *registryv1.ListAuditLogRequest) (*registryv1.ListAuditLogResponse, error) {
	acct, err := authn.AccountFrom(ctx)
	if err != nil {
		return nil, err
	}
	if s.extras.Audit == nil {
		return nil, apierr.Wrap(apierr.ErrUnavailable, "the audit log is not served by this registry")
	}
	q := audit.Query{Resource: req.GetResource(), PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken()}
	if t := req.GetSince(); t != nil {
		q.Since = t.AsTime()
	}
	if t := req.GetUntil(); t != nil {
		q.Until = t.AsTime()
	}
	entries, next, err := s.extras.Audit.List(ctx, acct, q)
	if err != nil {
		return nil, err
	}
	out := &registryv1.ListAuditLogResponse{Entries: make([]*registryv1.AuditEntry, len(entries)), NextPageToken: next}
	for i, e := range entries {
		out.Entries[i] = &registryv1.AuditEntry{
			Id: e.ID, Time: ts(e.Time), Action: e.Action, Resource: e.Resource, Summary: e.Summary,
			Actor: &registryv1.AuditActor{Type: e.Actor.Type, KeyId: e.Actor.KeyID, KeyPrefix: e.Actor.KeyPrefix},
		}
	}
	return out, nil
}

// DeleteAccount implements registryv1.RegistryServiceServer (admin only).
func (s *Server) DeleteAccount(ctx context.Context, req *registryv1.DeleteAccountRequest) (*registryv1.DeleteAccountResponse, error) {
	if s.extras.Eraser == nil {
		return nil, apierr.Wrap(apierr.ErrUnavailable, "account erasure is not served by this registry")
	}
	if err := s.extras.Eraser.EraseAccount(ctx, req.GetId()); err != nil {
		return nil, err
	}
	return &registryv1.DeleteAccountResponse{}, nil
}

// InternalServer implements RegistryInternalService for the other services.
type InternalServer struct {
	registryv1.UnimplementedRegistryInternalServiceServer
	svc *registry.Service
}

var _ registryv1.RegistryInternalServiceServer = (*InternalServer)(nil)

// NewInternalServer returns the RegistryInternalService handlers.
func NewInternalServer(svc *registry.Service) *InternalServer { return &InternalServer{svc: svc} }

// Authenticate implements registryv1.RegistryInternalServiceServer;
// unknown keys are NotFound.
func (s *InternalServer) Authenticate(ctx context.Context, req *registryv1.AuthenticateRequest) (*registryv1.AuthenticateResponse, error) {
	acct, err := s.svc.Authenticate(ctx, req.GetApiKey())
	if err != nil {
		return nil, err
	}
	return &registryv1.AuthenticateResponse{AccountId: acct}, nil
}

// ListSubscribers implements registryv1.RegistryInternalServiceServer.
func (s *InternalServer) ListSubscribers(ctx context.Context, req *registryv1.ListSubscribersRequest) (*registryv1.ListSubscribersResponse, error) {
	idList, ordered, err := s.svc.ListSubscribers(ctx, req.GetAccountId(), req.GetEventType())
	if err != nil {
		return nil, err
	}
	return &registryv1.ListSubscribersResponse{EndpointIds: idList, OrderedEndpointIds: ordered}, nil
}

// GetDeliveryTarget implements registryv1.RegistryInternalServiceServer.
func (s *InternalServer) GetDeliveryTarget(ctx context.Context, req *registryv1.GetDeliveryTargetRequest) (*registryv1.GetDeliveryTargetResponse, error) {
	e, secrets, err := s.svc.DeliveryTarget(ctx, req.GetAccountId(), req.GetEndpointId())
	if err != nil {
		return nil, err
	}
	out := &registryv1.GetDeliveryTargetResponse{Endpoint: endpointToProto(e)}
	for _, sec := range secrets {
		out.Secrets = append(out.Secrets, &registryv1.Secret{Value: sec.Value, ExpireTime: ts(sec.ExpireTime)})
	}
	return out, nil
}

// DisableEndpointBySystem implements registryv1.RegistryInternalServiceServer.
func (s *InternalServer) DisableEndpointBySystem(ctx context.Context, req *registryv1.DisableEndpointBySystemRequest) (*registryv1.DisableEndpointBySystemResponse, error) {
	e, err := s.svc.DisableBySystem(ctx, req.GetAccountId(), req.GetEndpointId(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &registryv1.DisableEndpointBySystemResponse{Endpoint: endpointToProto(e)}, nil
}

// GetAccountSettings implements registryv1.RegistryInternalServiceServer;
// an unknown account is NotFound.
func (s *InternalServer) GetAccountSettings(ctx context.Context, req *registryv1.GetAccountSettingsRequest) (*registryv1.GetAccountSettingsResponse, error) {
	st, err := s.svc.GetSettings(ctx, req.GetAccountId())
	if err != nil {
		return nil, err
	}
	return &registryv1.GetAccountSettingsResponse{Settings: settingsToProto(st)}, nil
}

// ---- translation ----

// ts returns nil for the zero time (an unset Timestamp).
func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func endpointToProto(e registry.Endpoint) *registryv1.Endpoint {
	return &registryv1.Endpoint{
		Id:                 e.ID,
		Url:                e.URL,
		EventTypes:         e.EventTypes,
		Description:        e.Description,
		Status:             statusToProto(e.Status),
		Headers:            e.Headers,
		RateLimitPerSecond: int32(e.RateLimit),
		Ordering:           orderingToProto(e.Ordering),
		DisabledReason:     e.DisabledReason,
		DisableTime:        ts(e.DisableTime),
		CreateTime:         ts(e.CreateTime),
		UpdateTime:         ts(e.UpdateTime),
	}
}

// apiKeyToProto never carries the key or its hash.
func apiKeyToProto(k registry.APIKey) *registryv1.ApiKey {
	return &registryv1.ApiKey{Id: k.ID, Name: k.Name, Prefix: k.Prefix, CreateTime: ts(k.CreateTime), LastUsedTime: ts(k.LastUsedTime)}
}

func settingsToProto(s registry.Settings) *registryv1.Settings {
	return &registryv1.Settings{NotificationEmail: s.NotificationEmail, CreditsLowThreshold: s.CreditsLowThreshold}
}

func statusToProto(s registry.Status) registryv1.EndpointStatus {
	switch s {
	case registry.StatusActive:
		return registryv1.EndpointStatus_ENDPOINT_STATUS_ACTIVE
	case registry.StatusInactive:
		return registryv1.EndpointStatus_ENDPOINT_STATUS_INACTIVE
	case registry.StatusDisabled:
		return registryv1.EndpointStatus_ENDPOINT_STATUS_DISABLED
	}
	return registryv1.EndpointStatus_ENDPOINT_STATUS_UNSPECIFIED
}

// statusFromProto maps UNSPECIFIED to "" (the domain's default) and values
// outside the enum to a status the domain refuses.
func statusFromProto(s registryv1.EndpointStatus) registry.Status {
	switch s {
	case registryv1.EndpointStatus_ENDPOINT_STATUS_UNSPECIFIED:
		return ""
	case registryv1.EndpointStatus_ENDPOINT_STATUS_ACTIVE:
		return registry.StatusActive
	case registryv1.EndpointStatus_ENDPOINT_STATUS_INACTIVE:
		return registry.StatusInactive
	case registryv1.EndpointStatus_ENDPOINT_STATUS_DISABLED:
		return registry.StatusDisabled
	}
	return registry.Status(s.String())
}

func orderingToProto(o registry.Ordering) registryv1.EndpointOrdering {
	switch o {
	case registry.OrderingUnordered:
		return registryv1.EndpointOrdering_ENDPOINT_ORDERING_UNORDERED
	case registry.OrderingOrderedByKey:
		return registryv1.EndpointOrdering_ENDPOINT_ORDERING_ORDERED_BY_KEY
	}
	return registryv1.EndpointOrdering_ENDPOINT_ORDERING_UNSPECIFIED
}

// orderingFromProto maps UNSPECIFIED to "" (the domain's default) and
// values outside the enum to an ordering the domain refuses.
func orderingFromProto(o registryv1.EndpointOrdering) registry.Ordering {
	switch o {
	case registryv1.EndpointOrdering_ENDPOINT_ORDERING_UNSPECIFIED:
		return ""
	case registryv1.EndpointOrdering_ENDPOINT_ORDERING_UNORDERED:
		return registry.OrderingUnordered
	case registryv1.EndpointOrdering_ENDPOINT_ORDERING_ORDERED_BY_KEY:
		return registry.OrderingOrderedByKey
	}
	return registry.Ordering(o.String())
}
