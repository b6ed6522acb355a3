// Package registryclient is the delivery service's view of the registry:
// endpoint lookups at send time (briefly cached, so a claimed batch does not
// hammer the registry) and API key resolution for customer calls.
package registryclient

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/services/delivery/internal/cache"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// DefaultTTL is how long an endpoint lookup is reused. Changes arrive
// sooner through Invalidate (wired to pkg/changefeed); the TTL bounds the
// staleness when an announcement is missed.
const DefaultTTL = 3 * time.Second

// Targets implements delivery.Targets over RegistryInternalService.
type Targets struct {
	c     registryv1.RegistryInternalServiceClient
	cache *cache.Cache[string, *delivery.Target]
}

var (
	_ delivery.Targets = (*Targets)(nil)
	_ authn.Resolver   = Resolver{}
)

// NewTargets returns Targets caching answers for ttl (DefaultTTL when 0).
func NewTargets(c registryv1.RegistryInternalServiceClient, ttl time.Duration) *Targets {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Targets{c: c, cache: cache.New[string, *delivery.Target](cache.Options[*delivery.Target]{MaxEntries: 10_000, TTL: ttl})}
}

// Target returns the endpoint's URL, status, headers and valid secrets, or
// an error wrapping apierr.ErrNotFound when it no longer exists.
func (t *Targets) Target(ctx context.Context, accountID, endpointID string) (*delivery.Target, error) {
	tg, err := t.cache.Load(ctx, accountID+"|"+endpointID, func(ctx context.Context) (*delivery.Target, error) {
		resp, err := t.c.GetDeliveryTarget(ctx, &registryv1.GetDeliveryTargetRequest{AccountId: accountID, EndpointId: endpointID})
		if status.Code(err) == codes.NotFound {
			return nil, nil // remembered too: a deleted endpoint's batch asks once
		}
		if err != nil {
			return nil, err
		}
		return convert(accountID, resp, time.Now()), nil
	})
	if err != nil {
		return nil, err
	}
	if tg == nil {
		return nil, apierr.NotFound("endpoint", endpointID)
	}
	return tg, nil
}

// Invalidate forgets the cached endpoints of an account.
func (t *Targets) Invalidate(accountID string) {
	prefix := accountID + "|"
	t.cache.DeleteFunc(func(k string) bool { return strings.HasPrefix(k, prefix) })
}

func convert(accountID string, resp *registryv1.GetDeliveryTargetResponse, now time.Time) *delivery.Target {
	ep := resp.GetEndpoint()
	t := &delivery.Target{
		AccountID: accountID, EndpointID: ep.GetId(), URL: ep.GetUrl(), Headers: ep.GetHeaders(),
		RateLimit: int(ep.GetRateLimitPerSecond()),
	}
	switch ep.GetStatus() {
	case registryv1.EndpointStatus_ENDPOINT_STATUS_ACTIVE:
		t.Status = delivery.EndpointActive
	case registryv1.EndpointStatus_ENDPOINT_STATUS_INACTIVE:
		t.Status = delivery.EndpointInactive
	default:
		t.Status = delivery.EndpointDisabled
	}
	for _, s := range resp.GetSecrets() {
		if exp := s.GetExpireTime(); exp != nil && !exp.AsTime().After(now) {
			continue // past its overlap window
		}
		if s.GetValue() != "" {
			t.Secrets = append(t.Secrets, s.GetValue())
		}
	}
	return t
}

// Resolver implements authn.Resolver with the registry's Authenticate.
// Wrap it in authn.CachingResolver.
type Resolver struct {
	C registryv1.RegistryInternalServiceClient
}

// AccountForKey returns the key's account, or "" for an unknown key.
func (r Resolver) AccountForKey(ctx context.Context, apiKey string) (string, error) {
	resp, err := r.C.Authenticate(ctx, &registryv1.AuthenticateRequest{ApiKey: apiKey})
	switch status.Code(err) {
	case codes.OK:
		return resp.GetAccountId(), nil
	case codes.NotFound, codes.Unauthenticated, codes.InvalidArgument:
		return "", nil
	}
	return "", err
}

// Registry implements delivery.Registry over RegistryInternalService.
type Registry struct {
	C registryv1.RegistryInternalServiceClient
}

var _ delivery.Registry = Registry{}

// DisableEndpoint marks an endpoint DISABLED with a reason.
func (r Registry) DisableEndpoint(ctx context.Context, accountID, endpointID, reason string) error {
	_, err := r.C.DisableEndpointBySystem(ctx, &registryv1.DisableEndpointBySystemRequest{
		AccountId: accountID, EndpointId: endpointID, Reason: reason,
	})
	if status.Code(err) == codes.NotFound {
		return apierr.NotFound("endpoint", endpointID)
	}
	return err
}

// NotificationEmail returns the account's notice address.
func (r Registry) NotificationEmail(ctx context.Context, accountID string) (string, error) {
	resp, err := r.C.GetAccountSettings(ctx, &registryv1.GetAccountSettingsRequest{AccountId: accountID})
	if err != nil {
		return "", err
	}
	return resp.GetSettings().GetNotificationEmail(), nil
}
