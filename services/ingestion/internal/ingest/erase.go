package ingest

import (
	"context"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/ids"
)

// AccountEraser deletes an account's events from the live tier
// (eventstore.Store). Idempotent.
type AccountEraser interface {
	EraseAccount(ctx context.Context, accountID string) (int, error)
}

// EraseAccount deletes an account's events, with their payloads, from the
// live tier: the registry's erasure calls it after delivery erased the
// account's deliveries. The rest of what ingestion keeps of an account
// (idempotency markers, credit-balance state, the event list) lives under
// the account's hash tag, which the registry deletes as a whole last; its
// history is erased by the registry too. Idempotent.
func (s *Service) EraseAccount(ctx context.Context, accountID string) (int, error) {
	if !ids.Valid(ids.Account, accountID) {
		return 0, apierr.Invalid("account_id", "must be an account id (acct_...), got %q", accountID)
	}
	if s.eraser == nil {
		return 0, apierr.Wrap(apierr.ErrUnavailable, "erasure is not configured in this ingestion process")
	}
	n, err := s.eraser.EraseAccount(ctx, accountID)
	if err != nil {
		return 0, apierr.Wrap(apierr.ErrUnavailable, "erase the events of account %s: %v", accountID, err)
	}
	return n, nil
}
