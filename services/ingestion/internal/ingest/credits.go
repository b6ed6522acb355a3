package ingest

import (
	"context"
	"fmt"
	"math"
	"time"

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
// A crossing stays unpublished until Published confirms it; meanwhile
// every report claims it in turn (one claim at a time, each with a lease)
// and publishes it under the crossing's own event id and idempotency key,
// so retries and concurrent reports yield one event.
type CreditTracker interface {
	// Record stores the balance, detects a crossing below threshold (a
	// new unpublished crossing), and claims every unpublished crossing
	// whose claim is free or expired.
	Record(ctx context.Context, accountID string, balance, threshold float64) (Claimed, error)
	// Claim claims the unpublished crossings whose claim is free or
	// expired, recording nothing.
	Claim(ctx context.Context, accountID string) (Claimed, error)
	// Published settles a crossing: its event is stored and fanned out.
	Published(ctx context.Context, accountID string, c Crossing) error
	// Release gives a claim up (the publish failed), so that the next
	// report publishes the crossing at once.
	Release(ctx context.Context, accountID string, c Crossing) error
}

// Crossing is one unpublished crossing below the threshold.
type Crossing struct {
	N                  int64   // the account's crossing number, from 1
	Balance, Threshold float64 // as reported when it crossed
	EventID            string  // the id its event gets ("" for crossings recorded before ids were kept)
	Claim              int64   // the claim's end (ms): identifies the claim
}

// Claimed is what Record and Claim hand to their caller.
type Claimed struct {
	// Crossings are the caller's to publish, oldest first.
	Crossings []Crossing
	// BusyUntil, when set, is the latest claim of another caller on an
	// unpublished crossing: its fate is unknown until then.
	BusyUntil time.Time
}

// claimPoll is how often a report waiting for another report's publish
// looks again.
const claimPoll = 20 * time.Millisecond

// ReportCreditBalance records an account's balance and emits credits.low
// {balance, threshold} when it crosses below the account's threshold: once
// per crossing, re-armed when the balance is back at or above it. A
// crossing whose publish failed is published by the next report, whatever
// its balance, so a producer's retry after Unavailable emits it. A report
// answers OK only once no crossing of the account is left unpublished or
// held by a live publisher. It returns the last event it published, or nil.
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
	// With no threshold the balance is still recorded, so that a threshold
	// set later starts armed; unpublished crossings still go out.
	claimed, err := s.credits.Record(ctx, accountID, balance, max(threshold, 0))
	if err != nil {
		return nil, unavailable(ctx, "recording the balance", err)
	}
	var last *eventstore.Event
	for {
		for i, c := range claimed.Crossings {
			ev, err := s.publishCrossing(ctx, accountID, c, balance, threshold)
			if err != nil {
				s.release(ctx, accountID, claimed.Crossings[i:])
				return nil, err
			}
			last = ev
		}
		if claimed.BusyUntil.IsZero() {
			return last, nil
		}
		// Another report is publishing a crossing: answer only once it has
		// (or has failed and this report takes over).
		t := time.NewTimer(min(max(time.Until(claimed.BusyUntil), time.Millisecond), claimPoll))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, apierr.Wrap(apierr.ErrUnavailable, "a credits.low event of this account is still being published; retry")
		case <-t.C:
		}
		if claimed, err = s.credits.Claim(ctx, accountID); err != nil {
			return nil, unavailable(ctx, "recording the balance", err)
		}
	}
}

// publishCrossing publishes one claimed crossing and settles it.
func (s *Service) publishCrossing(ctx context.Context, accountID string, c Crossing, balance, threshold float64) (*eventstore.Event, error) {
	if c.EventID != "" {
		balance, threshold = c.Balance, c.Threshold
	}
	res, err := s.Publish(ctx, Request{
		AccountID: accountID, Type: CreditsLowType, ID: c.EventID,
		Data:           map[string]any{"balance": balance, "threshold": threshold},
		IdempotencyKey: fmt.Sprintf("credits.low:%s:%d", accountID, c.N),
	})
	if err != nil {
		return nil, err
	}
	// A failed confirmation only means a later report publishes the same
	// crossing again, which its id and idempotency key make a repeat.
	_ = s.credits.Published(ctx, accountID, c)
	return res.Event, nil
}

// release gives up the claims of crossings this call could not publish,
// even when its context has ended; a claim not released expires.
func (s *Service) release(ctx context.Context, accountID string, cs []Crossing) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	for _, c := range cs {
		_ = s.credits.Release(ctx, accountID, c)
	}
}
