package ingest

import (
	"context"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/pkg/ids"
)

// Operational events (endpoint.disabled, endpoint.enabled,
// delivery.exhausted) are emitted by the suite itself, never by producers:
// Publish and PublishBatch refuse their types (prepare), and the suite's
// services publish them with PublishSystem, through the internal RPC. They
// are validated, stored and fanned out like every event, into the
// account's own stream, except that the endpoint an event is about never
// receives it. The emitter (delivery) folds bursts before they get here
// and names each event with a deterministic idempotency key, so its
// retries publish it once.

// SystemRequest is one operational event as a service of the suite emits
// it.
type SystemRequest struct {
	AccountID string
	Type      string
	Data      map[string]any
	// EndpointID is the endpoint the event is about: fan-out leaves it out.
	EndpointID string
	// IdempotencyKey is required: the emitter's key of this event.
	IdempotencyKey string
}

// PublishSystem validates, stores and fans out one operational event,
// like Publish, to the account's subscribed endpoints other than
// r.EndpointID.
func (s *Service) PublishSystem(ctx context.Context, r SystemRequest) (Result, error) {
	switch {
	case !events.IsOperational(r.Type):
		return Result{}, apierr.Invalid("type", "%q is not an operational event type (endpoint.disabled, endpoint.enabled, delivery.exhausted); producers publish with PublishEvent", short(r.Type))
	case !ids.Valid(ids.Endpoint, r.EndpointID):
		return Result{}, apierr.Invalid("endpoint_id", "must be the id of the endpoint the event is about (ep_ followed by 26 characters), got %q", short(r.EndpointID))
	case r.IdempotencyKey == "":
		return Result{}, apierr.Invalid("idempotency_key", "is required for operational events")
	}
	res, err := s.publish(ctx, []Request{{
		AccountID: r.AccountID, Type: r.Type, Data: r.Data, IdempotencyKey: r.IdempotencyKey,
		system: true, exclude: r.EndpointID,
	}}, false)
	if err != nil {
		return Result{}, err
	}
	return res[0], nil
}

// refuseOperational is prepare's check of a producer's request.
func refuseOperational(r Request, prefix string) error {
	if r.system || !events.IsOperational(r.Type) {
		return nil
	}
	return apierr.Invalid(prefix+"type", "%s is an operational event emitted by VoxScriber itself; producers cannot publish it", r.Type)
}
