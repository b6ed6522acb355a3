// Package erasure deletes an account and everything of it in both tiers
// (DeleteAccount): the registry orchestrates, each service erases what it
// owns.
//
// The steps, each idempotent, so a retried call (or the registry's
// background pass after a crash) finishes an interrupted erasure:
//
//  1. Begin (registry, Redis): the account is marked erasing; its API keys
//     stop resolving, its endpoints are deleted (fan-out finds none, and
//     delivery cancels what it holds for them) and the caches are told.
//  2. Settle: wait until every service's key and endpoint caches have
//     expired (Settle after the first begin), so no call authorised before
//     step 1 is still publishing or scheduling for the account.
//  3. Delivery erases the account's deliveries (pending ones leave the
//     schedule first, so none is sent again) and its endpoints' state;
//     ingestion erases its events.
//  4. History (PostgreSQL) erases every table's rows of the account. It
//     first records the account as erased, so an archive pass that read
//     the account's records from Redis before step 3 cannot bring them back.
//  5. Finish (registry, Redis): everything under the account's hash tag
//     and its lookup entries are deleted; the account is gone.
package erasure

import (
	"context"
	"log/slog"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/ids"
)

// DefaultSettle is how long after the start of an erasure the services'
// data is erased: twice the key caches' 1 s bound.
const DefaultSettle = 2 * time.Second

// Store is the registry's part (redisstore.Store).
type Store interface {
	BeginErase(ctx context.Context, accountID string) (endpointIDs []string, began time.Time, err error)
	FinishErase(ctx context.Context, accountID string) error
	Erasing(ctx context.Context) (map[string]time.Time, error)
}

// Delivery erases the account's deliveries and endpoint state (its
// internal RPC).
type Delivery interface {
	EraseAccount(ctx context.Context, accountID string, endpointIDs []string) (int, error)
}

// Ingestion erases the account's events (its internal RPC).
type Ingestion interface {
	EraseAccount(ctx context.Context, accountID string) (int, error)
}

// History erases the account's rows in PostgreSQL (pkg/history).
type History interface {
	Erase(ctx context.Context, accountID string) error
}

// Eraser runs erasures.
type Eraser struct {
	Store     Store
	Delivery  Delivery
	Ingestion Ingestion
	History   History
	Settle    time.Duration // DefaultSettle when 0
	Log       *slog.Logger
}

// EraseAccount erases an account, or finishes an interrupted erasure of it.
// NotFound for an account that does not exist (any more); Unavailable,
// naming the step, when a part could not be erased: call again.
func (e *Eraser) EraseAccount(ctx context.Context, accountID string) error {
	if !ids.Valid(ids.Account, accountID) {
		return apierr.Invalid("id", "must be an account id (acct_...), got %q", accountID)
	}
	eps, began, err := e.Store.BeginErase(ctx, accountID)
	if err != nil {
		return err
	}
	settle := e.Settle
	if settle == 0 {
		settle = DefaultSettle
	}
	if wait := time.Until(began.Add(settle)); wait > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	dlv, err := e.Delivery.EraseAccount(ctx, accountID, eps)
	if err != nil {
		return step("deliveries", err)
	}
	evs, err := e.Ingestion.EraseAccount(ctx, accountID)
	if err != nil {
		return step("events", err)
	}
	if err := e.History.Erase(ctx, accountID); err != nil {
		return step("history", err)
	}
	if err := e.Store.FinishErase(ctx, accountID); err != nil {
		return step("account", err)
	}
	e.log().InfoContext(ctx, "account erased", "account_id", accountID, "endpoints", len(eps),
		"live_deliveries", dlv, "live_events", evs, "took", time.Since(began).Round(time.Millisecond).String())
	return nil
}

// RunPending finishes, every interval, erasures that were interrupted (a
// registry killed mid-way, a service or PostgreSQL unavailable) and not
// retried by their caller within grace.
func (e *Eraser) RunPending(ctx context.Context, interval, grace time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pending, err := e.Store.Erasing(ctx)
		if err != nil {
			continue
		}
		for acct, began := range pending {
			if time.Since(began) < grace {
				continue
			}
			if err := e.EraseAccount(ctx, acct); err != nil && ctx.Err() == nil {
				e.log().WarnContext(ctx, "erasure not finished; will try again", "account_id", acct, "err", err)
			}
		}
	}
}

func (e *Eraser) log() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.Default()
}

func step(what string, err error) error {
	return apierr.Wrap(apierr.ErrUnavailable, "erasure interrupted at the account's %s (%v); the account's keys and endpoints are already gone: call DeleteAccount again to finish", what, err)
}
