package registry

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/pkg/ids"
)

// checkAccountID is for internal calls that name the account.
func checkAccountID(id string) error {
	if id == "" {
		return apierr.Invalid("account_id", "is required")
	}
	if !ids.Valid(ids.Account, id) {
		return apierr.NotFound("account", id)
	}
	return nil
}

// ListSubscribers returns the ids of the account's endpoints subscribed to
// eventType that are to get an event published now, oldest first: ACTIVE
// ones, and DISABLED ones (by the system, after failures or a 410), whose
// deliveries delivery parks and resumes when they are enabled again, so an
// outage never costs the customer an event. INACTIVE endpoints (paused by
// their owner) are left out: what is published while paused is not theirs.
// ordered is the subset of ids whose ordering is OrderingOrderedByKey.
func (s *Service) ListSubscribers(ctx context.Context, accountID, eventType string) (ids, ordered []string, err error) {
	if err := checkAccountID(accountID); err != nil {
		return nil, nil, err
	}
	if _, ok := events.Lookup(eventType); !ok {
		return nil, nil, apierr.Invalid("event_type", "unknown event type %q", eventType)
	}
	eps, err := s.store.AllEndpoints(ctx, accountID)
	if err != nil {
		return nil, nil, err
	}
	ids, ordered = []string{}, []string{}
	for i := range eps {
		if (eps[i].Status == StatusActive || eps[i].Status == StatusDisabled) && eps[i].Subscribes(eventType) {
			ids = append(ids, eps[i].ID)
			if eps[i].Ordering == OrderingOrderedByKey {
				ordered = append(ordered, eps[i].ID)
			}
		}
	}
	return ids, ordered, nil
}

// DeliveryTarget returns an endpoint with its currently valid secrets
// decrypted, newest first.
func (s *Service) DeliveryTarget(ctx context.Context, accountID, id string) (Endpoint, []Secret, error) {
	if err := checkAccountID(accountID); err != nil {
		return Endpoint{}, nil, err
	}
	if err := checkEndpointID("endpoint_id", id); err != nil {
		return Endpoint{}, nil, err
	}
	e, err := s.store.GetEndpoint(ctx, accountID, id)
	if err != nil {
		return Endpoint{}, nil, err
	}
	secrets, err := s.validSecrets(e, s.clock())
	if err != nil {
		return Endpoint{}, nil, err
	}
	return e, secrets, nil
}

// DisableBySystem marks an endpoint DISABLED with a reason. An endpoint
// already DISABLED keeps its first reason and time.
func (s *Service) DisableBySystem(ctx context.Context, accountID, id, reason string) (Endpoint, error) {
	if err := checkAccountID(accountID); err != nil {
		return Endpoint{}, err
	}
	if err := checkEndpointID("endpoint_id", id); err != nil {
		return Endpoint{}, err
	}
	reason = strings.TrimSpace(reason)
	if reason == "" {
		reason = "disabled by the system"
	}
	if utf8.RuneCountInString(reason) > MaxReasonLen {
		reason = string([]rune(reason)[:MaxReasonLen])
	}
	before := s.clock()
	e, err := s.changeStatus(ctx, accountID, id, StatusDisabled, reason)
	if err == nil && !e.DisableTime.Before(before) {
		s.countDisabled(ctx) // disabled by this call, not earlier
	}
	return e, err
}
