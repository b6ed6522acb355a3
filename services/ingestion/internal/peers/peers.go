// Package peers adapts the registry and delivery gRPC clients to the small
// interfaces the ingest domain and authn declare. Errors of the other
// services are turned into plain errors (never passed through as status
// errors), so that a registry NotFound never reaches a producer as ours.
package peers

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

// DefaultTimeout bounds each call to another service.
const DefaultTimeout = 10 * time.Second

// Registry calls the registry's internal service.
type Registry struct {
	c       registryv1.RegistryInternalServiceClient
	timeout time.Duration
}

var (
	_ ingest.Subscribers = (*Registry)(nil)
	_ ingest.Settings    = (*Registry)(nil)
	_ authn.Resolver     = (*Registry)(nil)
	_ ingest.Scheduler   = (*Delivery)(nil)
)

// NewRegistry wraps a registry client.
func NewRegistry(c registryv1.RegistryInternalServiceClient) *Registry {
	return &Registry{c: c, timeout: DefaultTimeout}
}

// ListSubscribers implements ingest.Subscribers.
func (r *Registry) ListSubscribers(ctx context.Context, accountID, eventType string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	resp, err := r.c.ListSubscribers(ctx, &registryv1.ListSubscribersRequest{AccountId: accountID, EventType: eventType})
	if err != nil {
		return nil, plain("registry ListSubscribers", err)
	}
	return resp.GetEndpointIds(), nil
}

// CreditsLowThreshold implements ingest.Settings; an unknown account is an
// error wrapping apierr.ErrNotFound.
func (r *Registry) CreditsLowThreshold(ctx context.Context, accountID string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	resp, err := r.c.GetAccountSettings(ctx, &registryv1.GetAccountSettingsRequest{AccountId: accountID})
	if status.Code(err) == codes.NotFound {
		return 0, apierr.NotFound("account", accountID)
	}
	if err != nil {
		return 0, plain("registry GetAccountSettings", err)
	}
	return resp.GetSettings().GetCreditsLowThreshold(), nil
}

// AccountForKey implements authn.Resolver: an unknown key is "".
func (r *Registry) AccountForKey(ctx context.Context, apiKey string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	resp, err := r.c.Authenticate(ctx, &registryv1.AuthenticateRequest{ApiKey: apiKey})
	switch status.Code(err) {
	case codes.OK:
		return resp.GetAccountId(), nil
	case codes.NotFound, codes.Unauthenticated:
		return "", nil
	}
	return "", plain("registry Authenticate", err)
}

// Delivery calls the delivery service.
type Delivery struct {
	c       deliveryv1.DeliveryServiceClient
	timeout time.Duration
}

// NewDelivery wraps a delivery client.
func NewDelivery(c deliveryv1.DeliveryServiceClient) *Delivery {
	return &Delivery{c: c, timeout: DefaultTimeout}
}

// Schedule implements ingest.Scheduler with one Schedule call.
func (d *Delivery) Schedule(ctx context.Context, accountID, eventType string, items []ingest.ScheduleItem) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	req := &deliveryv1.ScheduleRequest{AccountId: accountID, EventType: eventType, Items: make([]*deliveryv1.ScheduleItem, len(items))}
	for i, it := range items {
		req.Items[i] = &deliveryv1.ScheduleItem{EventId: it.EventID, EndpointId: it.EndpointID}
	}
	resp, err := d.c.Schedule(ctx, req)
	if err != nil {
		return plain("delivery Schedule", err)
	}
	if n := len(resp.GetDeliveryIds()); n != len(items) {
		return fmt.Errorf("delivery Schedule answered %d delivery ids for %d items", n, len(items))
	}
	return nil
}

// plain describes a status error without wrapping it.
func plain(call string, err error) error {
	st := status.Convert(err)
	return fmt.Errorf("%s: %s: %s", call, st.Code(), st.Message())
}
