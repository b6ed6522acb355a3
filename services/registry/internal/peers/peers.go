// Package peers adapts the other services' internal RPCs, and the history
// store, to what the registry's erasure needs (erasure.Delivery,
// erasure.Ingestion, erasure.History).
package peers

import (
	"context"
	"time"

	"google.golang.org/grpc"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/history"
)

// callTimeout bounds each erase call; a peer that is restarting is waited
// for within it (WaitForReady) rather than failed at once.
const callTimeout = 5 * time.Second

// Delivery erases through DeliveryInternalService.
type Delivery struct {
	C deliveryv1.DeliveryInternalServiceClient
}

// EraseAccount implements erasure.Delivery.
func (d Delivery) EraseAccount(ctx context.Context, accountID string, endpointIDs []string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	r, err := d.C.EraseAccount(ctx, &deliveryv1.EraseAccountRequest{AccountId: accountID, EndpointIds: endpointIDs}, grpc.WaitForReady(true))
	if err != nil {
		return 0, err
	}
	return int(r.GetDeliveriesErased()), nil
}

// Ingestion erases through IngestionInternalService.
type Ingestion struct {
	C ingestionv1.IngestionInternalServiceClient
}

// EraseAccount implements erasure.Ingestion.
func (i Ingestion) EraseAccount(ctx context.Context, accountID string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	r, err := i.C.EraseAccount(ctx, &ingestionv1.EraseAccountRequest{AccountId: accountID}, grpc.WaitForReady(true))
	if err != nil {
		return 0, err
	}
	return int(r.GetEventsErased()), nil
}

// History erases through the lazily opened history store.
type History struct{ L *history.Lazy }

// Erase implements erasure.History.
func (h History) Erase(ctx context.Context, accountID string) error {
	s, err := h.L.Store()
	if err != nil {
		return err
	}
	return s.Erase(ctx, accountID)
}
