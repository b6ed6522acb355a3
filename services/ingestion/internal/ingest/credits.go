package ingest

import (
	"context"
	"fmt"
	"math"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/ids"
)

// CreditsLowType is the event type ReportCreditBalance emits.
const CreditsLowType = "credits.low"

// Settings reads an account's credits.low threshold (0: none).
type Settings interface {
	CreditsLowThreshold(ctx context.Context, accountID string) (float64, error)
}

// CreditTracker records balances and detects threshold crossings atomically.
type CreditTracker interface {
	// Record stores the balance and returns the number (> 0) of a crossing
	// below threshold that the caller must publish, or 0. Concurrent calls
	// return one crossing once; a crossing whose publisher did not confirm
	// it (Published) within a lease is returned again, so that a crash
	// between detection and publication loses nothing.
	Record(ctx context.Context, accountID string, balance, threshold float64) (int64, error)
	// Published confirms that a crossing's event is stored and fanned out.
	Published(ctx context.Context, accountID string, crossing int64) error
}

// ReportCreditBalance records an account's balance and emits credits.low
// {balance, threshold} when it crosses below the account's threshold: once
// per crossing, re-armed when the balance is back at or above it. It
// returns the emitted event, or nil.
func (s *Service) ReportCreditBalance(ctx context.Context, accountID string, balance float64) (_ *eventstore.Event, err error) {
	if s.settings == nil || s.credits == nil {
		return nil, apierr.Wrap(apierr.ErrUnimplemented, "ReportCreditBalance is not configured on this ingestion instance")
	}
	switch {
	case accountID == "":
		return nil, apierr.Invalid("account_id", "is required")
	case !ids.Valid(ids.Account, accountID):
		return nil, apierr.Invalid("account_id", "must be an account id (acct_ followed by 26 characters), got %q", short(accountID))
	case math.IsNaN(balance) || math.IsInf(balance, 0):
		return nil, apierr.Invalid("balance", "must be a finite number")
	}
	ctx, span := s.tracer.Start(ctx, "ingest.credits")
	defer func() { end(span, err) }()

	threshold, err := s.settings.CreditsLowThreshold(ctx, accountID)
	if err != nil {
		return nil, unavailable(ctx, "reading the account's credits.low threshold", err)
	}
	if threshold <= 0 {
		// Still recorded, so that a threshold set later starts armed.
		if _, err := s.credits.Record(ctx, accountID, balance, 0); err != nil {
			return nil, unavailable(ctx, "recording the balance", err)
		}
		return nil, nil
	}
	crossing, err := s.credits.Record(ctx, accountID, balance, threshold)
	if err != nil {
		return nil, unavailable(ctx, "recording the balance", err)
	}
	if crossing == 0 {
		return nil, nil
	}
	res, err := s.Publish(ctx, Request{
		AccountID: accountID, Type: CreditsLowType,
		Data:           map[string]any{"balance": balance, "threshold": threshold},
		IdempotencyKey: fmt.Sprintf("credits.low:%s:%d", accountID, crossing),
	})
	if err != nil {
		return nil, err
	}
	// A failed confirmation only means a later report may publish the same
	// crossing again, which its idempotency key turns into a repeat.
	_ = s.credits.Published(ctx, accountID, crossing)
	return res.Event, nil
}
