// Package registryclient is the one client of the registry's internal
// service, shared by ingestion and delivery. Every call has a deadline
// (DefaultTimeout, or the caller's when that is sooner), and every failure
// is an *Error: the registry's status code mapped once, by Kind, to the
// suite's domain errors (pkg/apierr). The registry's status is never passed
// on as a status error, so its NotFound or InvalidArgument cannot reach a
// producer or a customer as if it were an answer about their request.
//
// The mapping (registry's code → what errors.Is finds → our edge code when
// nobody handles it):
//
//	NotFound                                  → apierr.ErrNotFound    → NotFound
//	Unavailable, DeadlineExceeded,
//	ResourceExhausted, Aborted                → apierr.ErrUnavailable → Unavailable (try again)
//	Canceled                                  → context.Canceled      → Canceled
//	InvalidArgument, FailedPrecondition,
//	OutOfRange, AlreadyExists, Unimplemented,
//	Unauthenticated, PermissionDenied,
//	Internal, Unknown, DataLoss               → no sentinel           → Internal
//
// InvalidArgument is Internal because the caller validated its input before
// asking the registry (ingestion checks the account and event type,
// delivery sends ids it stored): if the registry refuses the request, our
// request is wrong, which the producer or customer can neither fix nor
// should be told is their fault. Unauthenticated and PermissionDenied mean
// the registry refused this service's internal credential: a deployment
// error, not an unknown API key. Callers that treat some of these
// specially (an unknown key, a deleted endpoint) test the domain error with
// errors.Is, never the status code.
package registryclient

import (
	"context"
	"errors"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/authn"
)

// DefaultTimeout bounds each registry call whose context allows longer.
const DefaultTimeout = 10 * time.Second

// Client calls RegistryInternalService.
type Client struct {
	rpc     registryv1.RegistryInternalServiceClient
	timeout time.Duration
}

var _ authn.Resolver = (*Client)(nil)

// New wraps a registry client; each call is bounded by timeout
// (DefaultTimeout when 0).
func New(rpc registryv1.RegistryInternalServiceClient, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{rpc: rpc, timeout: timeout}
}

// Error is a failed registry call. It wraps the domain error of its code
// (Kind), when there is one, and never the status error itself.
type Error struct {
	Method  string     // the RPC, e.g. "ListSubscribers"
	Code    codes.Code // the registry's answer
	Message string     // the registry's message
}

func (e *Error) Error() string {
	msg := "registry " + e.Method + ": " + e.Code.String() + ": " + e.Message
	if e.Code == codes.Unauthenticated || e.Code == codes.PermissionDenied {
		msg += " (the registry refused this service's internal credential)"
	}
	return msg
}

// Unwrap returns Kind(e.Code).
func (e *Error) Unwrap() error { return Kind(e.Code) }

// Kind is the domain error a registry status code stands for: the one
// mapping of the package comment. It is nil for the codes that mean a bug
// or a misconfiguration on our side (they surface as Internal).
func Kind(c codes.Code) error {
	switch c {
	case codes.NotFound:
		return apierr.ErrNotFound
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return apierr.ErrUnavailable
	case codes.Canceled:
		return context.Canceled
	}
	return nil
}

// fail turns an RPC error into an *Error (nil stays nil).
func fail(method string, err error) error {
	if err == nil {
		return nil
	}
	st := status.Convert(err)
	return &Error{Method: method, Code: st.Code(), Message: st.Message()}
}

func (c *Client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// SubscriberList is ListSubscribers' answer.
type SubscriberList struct {
	// EndpointIDs are the endpoints that are to get an event of the type,
	// oldest first.
	EndpointIDs []string
	// OrderedIDs is the subset of EndpointIDs (in their order) whose
	// ordering is ORDERED_BY_KEY.
	OrderedIDs []string
}

// Ordered reports whether the endpoint is ordered by key: it gets the
// events of one ordering key one at a time, in publish order.
func (l SubscriberList) Ordered(endpointID string) bool {
	return slices.Contains(l.OrderedIDs, endpointID)
}

// Clone returns a copy that shares no memory with l.
func (l SubscriberList) Clone() SubscriberList {
	return SubscriberList{EndpointIDs: slices.Clone(l.EndpointIDs), OrderedIDs: slices.Clone(l.OrderedIDs)}
}

// ListSubscribers returns the endpoints of the account that are to get an
// event of eventType published now, and which of them are ordered by key.
func (c *Client) ListSubscribers(ctx context.Context, accountID, eventType string) (SubscriberList, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	resp, err := c.rpc.ListSubscribers(ctx, &registryv1.ListSubscribersRequest{AccountId: accountID, EventType: eventType})
	if err != nil {
		return SubscriberList{}, fail("ListSubscribers", err)
	}
	return SubscriberList{EndpointIDs: resp.GetEndpointIds(), OrderedIDs: resp.GetOrderedEndpointIds()}, nil
}

// DeliveryTarget returns an endpoint with its currently valid secrets; an
// endpoint that no longer exists is an error wrapping apierr.ErrNotFound.
func (c *Client) DeliveryTarget(ctx context.Context, accountID, endpointID string) (*registryv1.GetDeliveryTargetResponse, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	resp, err := c.rpc.GetDeliveryTarget(ctx, &registryv1.GetDeliveryTargetRequest{AccountId: accountID, EndpointId: endpointID})
	if err != nil {
		return nil, fail("GetDeliveryTarget", err)
	}
	return resp, nil
}

// AccountForKey implements authn.Resolver: the key's account, or "" for a
// key the registry does not know (NotFound). Any other failure is an error,
// which the authn interceptor answers with Unavailable.
func (c *Client) AccountForKey(ctx context.Context, apiKey string) (string, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	resp, err := c.rpc.Authenticate(ctx, &registryv1.AuthenticateRequest{ApiKey: apiKey})
	if err := fail("Authenticate", err); err != nil {
		if errors.Is(err, apierr.ErrNotFound) {
			return "", nil
		}
		return "", err
	}
	return resp.GetAccountId(), nil
}

// Settings returns an account's settings; an unknown account is an error
// wrapping apierr.ErrNotFound.
func (c *Client) Settings(ctx context.Context, accountID string) (*registryv1.Settings, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	resp, err := c.rpc.GetAccountSettings(ctx, &registryv1.GetAccountSettingsRequest{AccountId: accountID})
	if err != nil {
		return nil, fail("GetAccountSettings", err)
	}
	return resp.GetSettings(), nil
}

// CreditsLowThreshold is the account's credits.low threshold (0: none).
func (c *Client) CreditsLowThreshold(ctx context.Context, accountID string) (float64, error) {
	s, err := c.Settings(ctx, accountID)
	if err != nil {
		return 0, err
	}
	return s.GetCreditsLowThreshold(), nil
}

// NotificationEmail is the account's notice address ("" when unset).
func (c *Client) NotificationEmail(ctx context.Context, accountID string) (string, error) {
	s, err := c.Settings(ctx, accountID)
	if err != nil {
		return "", err
	}
	return s.GetNotificationEmail(), nil
}

// DisableEndpoint marks an endpoint DISABLED by the system with a reason;
// an endpoint that no longer exists is an error wrapping apierr.ErrNotFound.
func (c *Client) DisableEndpoint(ctx context.Context, accountID, endpointID, reason string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	_, err := c.rpc.DisableEndpointBySystem(ctx, &registryv1.DisableEndpointBySystemRequest{
		AccountId: accountID, EndpointId: endpointID, Reason: reason,
	})
	return fail("DisableEndpointBySystem", err)
}
