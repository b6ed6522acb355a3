package delivery

import (
	"context"
	"fmt"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/ids"
)

// AccountEraser deletes the live state of an account's deliveries and
// endpoints (redisqueue.Queue). Idempotent.
type AccountEraser interface {
	EraseAccount(ctx context.Context, accountID string, endpointIDs []string) (int, error)
}

// EraseAccount deletes an account's deliveries and their attempts from the
// live tier, pending ones included: they leave the schedule, so none is sent
// again, and an attempt in flight records nothing when it ends. It forgets
// the account's cached endpoints. The account's history is the caller's to
// erase (the registry orchestrates: pkg/history Erase). Idempotent.
func (s *Service) EraseAccount(ctx context.Context, accountID string, endpointIDs []string) (int, error) {
	if !ids.Valid(ids.Account, accountID) {
		return 0, apierr.Invalid("account_id", "must be an account id (acct_...), got %q", accountID)
	}
	for i, ep := range endpointIDs {
		if !ids.Valid(ids.Endpoint, ep) {
			return 0, apierr.Invalid(fmt.Sprintf("endpoint_ids[%d]", i), "must be an endpoint id (ep_...), got %q", ep)
		}
	}
	if s.d.deps.Erase == nil {
		return 0, apierr.Wrap(apierr.ErrUnavailable, "erasure is not configured in this delivery process")
	}
	n, err := s.d.deps.Erase.EraseAccount(ctx, accountID, endpointIDs)
	if err != nil {
		return 0, apierr.Wrap(apierr.ErrUnavailable, "erase the deliveries of account %s: %v", accountID, err)
	}
	if s.d.deps.Invalidate != nil {
		s.d.deps.Invalidate(accountID)
	}
	return n, nil
}
