// Package peers holds what ingestion adds to its calls of the other
// services: the delivery client behind ingest.Scheduler and the cache of
// subscriber lists. The registry itself is called through the shared
// pkg/registryclient, which implements ingest.Subscribers, ingest.Settings
// and authn.Resolver. Errors of the delivery service are turned into plain
// errors (never passed through as status errors), so that its answers
// never reach a producer as ours.
package peers

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/status"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	"github.com/voxscriber/webhooks/pkg/registryclient"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

// DefaultTimeout bounds each call to the delivery service.
const DefaultTimeout = 10 * time.Second

var (
	_ ingest.Subscribers = (*registryclient.Client)(nil)
	_ ingest.Settings    = (*registryclient.Client)(nil)
	_ ingest.Scheduler   = (*Delivery)(nil)
)

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
		req.Items[i] = &deliveryv1.ScheduleItem{EventId: it.EventID, EndpointId: it.EndpointID,
			TraceParent: it.TraceParent, TraceState: it.TraceState, OrderingKey: it.OrderingKey,
			RepeatOrderingKey: it.RepeatOrderingKey}
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
