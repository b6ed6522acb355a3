// Package targetcache is the delivery service's cache of endpoint lookups
// at send time, so that a claimed batch does not hammer the registry. The
// registry itself is called through the shared pkg/registryclient, which
// also implements delivery.Registry and authn.Resolver.
package targetcache

import (
	"context"
	"errors"
	"strings"
	"time"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/registryclient"
	"github.com/voxscriber/webhooks/services/delivery/internal/cache"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// DefaultTTL is how long an endpoint lookup is reused. Changes arrive
// sooner through Invalidate (wired to pkg/changefeed); the TTL bounds the
// staleness when an announcement is missed.
const DefaultTTL = 3 * time.Second

// Lookup is the registry call the cache stands in front of
// (*registryclient.Client): an endpoint that no longer exists is an error
// wrapping apierr.ErrNotFound.
type Lookup interface {
	DeliveryTarget(ctx context.Context, accountID, endpointID string) (*registryv1.GetDeliveryTargetResponse, error)
}

// Cache implements delivery.Targets.
type Cache struct {
	lookup Lookup
	cache  *cache.Cache[string, *delivery.Target]
}

var (
	_ delivery.Targets  = (*Cache)(nil)
	_ delivery.Registry = (*registryclient.Client)(nil)
	_ Lookup            = (*registryclient.Client)(nil)
)

// New returns a Cache keeping answers for ttl (DefaultTTL when 0).
func New(lookup Lookup, ttl time.Duration) *Cache {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Cache{lookup: lookup, cache: cache.New[string, *delivery.Target](cache.Options[*delivery.Target]{MaxEntries: 10_000, TTL: ttl})}
}

// Target returns the endpoint's URL, status, headers and valid secrets, or
// an error wrapping apierr.ErrNotFound when it no longer exists.
func (c *Cache) Target(ctx context.Context, accountID, endpointID string) (*delivery.Target, error) {
	tg, err := c.cache.Load(ctx, accountID+"|"+endpointID, func(ctx context.Context) (*delivery.Target, error) {
		resp, err := c.lookup.DeliveryTarget(ctx, accountID, endpointID)
		if errors.Is(err, apierr.ErrNotFound) {
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
func (c *Cache) Invalidate(accountID string) {
	prefix := accountID + "|"
	c.cache.DeleteFunc(func(k string) bool { return strings.HasPrefix(k, prefix) })
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
