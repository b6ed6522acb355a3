// Package historytier is ingestion's view of the PostgreSQL history tier
// (pkg/history): the events that left Redis, as ingest.History wants them.
//
// PostgreSQL is never a start-up or readiness dependency of ingestion: the
// store is opened by history.OpenLazy (a first attempt, then retries in the
// background, 1 s doubling to 30 s). Until it is open every read answers an
// error wrapping apierr.ErrUnavailable whose message starts "history store
// unreachable" and names the last connection error, like the store's own
// once connected. A configuration error fails Open at once.
package historytier

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

// Tier implements ingest.History over a history store that may not be
// open yet.
type Tier struct {
	l *history.Lazy
}

var _ ingest.History = (*Tier)(nil)

// Open opens the history store at url lazily (history.OpenLazy, no
// maintenance: delivery runs it). A configuration error (DATABASE_URL not
// a connection string, a bad retention) is returned at once; an
// unreachable PostgreSQL is not: the Tier then retries in the background
// until it connects or Close is called.
func Open(ctx context.Context, url string, cfg history.Config, log *slog.Logger) (*Tier, error) {
	l, err := history.OpenLazy(ctx, url, cfg, history.LazyOptions{Logger: log})
	if err != nil {
		return nil, err
	}
	return &Tier{l: l}, nil
}

// New wraps a connected store (tests).
func New(s *history.Store) *Tier { return &Tier{l: history.Opened(s)} }

// Close stops the background attempts and closes the store.
func (t *Tier) Close() { t.l.Close() }

// current returns the connected store, or the Unavailable error to answer.
func (t *Tier) current() (*history.Store, error) { return t.l.Store() }

// Ping reports whether the history store answers (health of the
// component, never of the service).
func (t *Tier) Ping(ctx context.Context) error { return t.l.Ping(ctx) }

// GetEvent implements ingest.History.
func (t *Tier) GetEvent(ctx context.Context, accountID, id string) (*eventstore.Event, error) {
	s, err := t.current()
	if err != nil {
		return nil, err
	}
	e, err := s.GetEvent(ctx, accountID, id)
	if err != nil {
		return nil, err
	}
	return fromHistory(e), nil
}

// FindEvent implements ingest.History.
func (t *Tier) FindEvent(ctx context.Context, id string) (*eventstore.Event, error) {
	s, err := t.current()
	if err != nil {
		return nil, err
	}
	e, err := s.FindEvent(ctx, id)
	if err != nil {
		return nil, err
	}
	return fromHistory(e), nil
}

// ListEvents implements ingest.History.
func (t *Tier) ListEvents(ctx context.Context, accountID string, q ingest.HistoryQuery) ([]*eventstore.Event, bool, error) {
	s, err := t.current()
	if err != nil {
		return nil, false, err
	}
	evs, next, err := s.ListEvents(ctx, accountID, history.EventQuery{
		Type: q.Type, UploadID: q.UploadID, Since: q.Since, Until: q.Until,
		PageSize: q.PageSize, After: history.CursorAt(q.Before),
	})
	if err != nil {
		return nil, false, err
	}
	out := make([]*eventstore.Event, len(evs))
	for i := range evs {
		out[i] = fromHistory(&evs[i])
	}
	return out, next != "", nil
}

// DeliverySeries implements ingest.History: per-minute rollups.
func (t *Tier) DeliverySeries(ctx context.Context, accountID, endpointID string, from, to time.Time) ([]history.Point, error) {
	s, err := t.current()
	if err != nil {
		return nil, err
	}
	return s.Series(ctx, accountID, endpointID, from, to)
}

// fromHistory is an archived event as ingestion's reads return events: its
// fan-out is done (it was archived because all its deliveries ended).
func fromHistory(e *history.Event) *eventstore.Event {
	return &eventstore.Event{
		ID: e.ID, AccountID: e.AccountID, Type: e.Type, Payload: e.Payload,
		CreateTime: e.CreateTime, IdempotencyKey: e.IdempotencyKey, UploadID: e.UploadID,
		TraceID: e.TraceID, FanoutDone: true, DeliveryCount: e.DeliveryCount,
	}
}

// String names the tier in logs.
func (t *Tier) String() string {
	_, err := t.current()
	return fmt.Sprintf("history tier (connected: %t)", err == nil)
}
