// Package historytier is ingestion's view of the PostgreSQL history tier
// (pkg/history): the events that left Redis, as ingest.History wants them.
//
// PostgreSQL is never a start-up or readiness dependency of ingestion: Open
// tries once and, when PostgreSQL cannot be reached, keeps trying in the
// background (1 s doubling to 30 s) while the service runs. Until then
// every read answers an error wrapping apierr.ErrUnavailable whose message
// starts "history store unreachable", like the store's own once connected.
package historytier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/history"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

// Retry bounds of the background connection attempts.
const (
	firstRetry = time.Second
	maxRetry   = 30 * time.Second
)

// Tier implements ingest.History over a *history.Store that may not be
// connected yet.
type Tier struct {
	mu      sync.RWMutex
	store   *history.Store
	lastErr error
	done    chan struct{}
	cancel  context.CancelFunc
}

var _ ingest.History = (*Tier)(nil)

// Open connects to the history store at url. A configuration error
// (DATABASE_URL not a connection string, a bad retention) is returned at
// once; an unreachable PostgreSQL is not: the Tier then retries in the
// background until it connects or Close is called.
func Open(ctx context.Context, url string, cfg history.Config, log *slog.Logger) (*Tier, error) {
	if log == nil {
		log = slog.Default()
	}
	t := &Tier{done: make(chan struct{})}
	s, err := history.Open(ctx, url, cfg)
	if err == nil {
		t.store = s
		close(t.done)
		return t, nil
	}
	if !errors.Is(err, apierr.ErrUnavailable) {
		return nil, err
	}
	log.Warn("history store unreachable at start-up; reads of archived events answer Unavailable until it connects (retrying in the background)", "error", err.Error())
	t.lastErr = err
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t.cancel = cancel
	go t.connect(bg, url, cfg, log)
	return t, nil
}

// New wraps a connected store (tests).
func New(s *history.Store) *Tier {
	t := &Tier{store: s, done: make(chan struct{})}
	close(t.done)
	return t
}

func (t *Tier) connect(ctx context.Context, url string, cfg history.Config, log *slog.Logger) {
	defer close(t.done)
	wait := firstRetry
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		s, err := history.Open(ctx, url, cfg)
		if err == nil {
			t.mu.Lock()
			t.store, t.lastErr = s, nil
			t.mu.Unlock()
			log.Info("history store connected")
			return
		}
		if ctx.Err() != nil {
			return
		}
		t.mu.Lock()
		t.lastErr = err
		t.mu.Unlock()
		if !errors.Is(err, apierr.ErrUnavailable) {
			log.Error("history store refused (reads of archived events answer Unavailable)", "error", err.Error())
		}
		wait = min(2*wait, maxRetry)
	}
}

// Close stops the background attempts and closes the store.
func (t *Tier) Close() {
	if t.cancel != nil {
		t.cancel()
	}
	<-t.done
	if s, _ := t.current(); s != nil {
		s.Close()
	}
}

// current returns the connected store, or the Unavailable error to answer.
func (t *Tier) current() (*history.Store, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.store != nil {
		return t.store, nil
	}
	if errors.Is(t.lastErr, apierr.ErrUnavailable) {
		return nil, t.lastErr
	}
	return nil, apierr.Wrap(apierr.ErrUnavailable, "history store unreachable (not connected yet): %v", t.lastErr)
}

// Ping reports whether the history store answers (health of the
// component, never of the service).
func (t *Tier) Ping(ctx context.Context) error {
	s, err := t.current()
	if err != nil {
		return err
	}
	return s.Ping(ctx)
}

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
func (t *Tier) String() string { return fmt.Sprintf("history tier (connected: %t)", t.connected()) }

func (t *Tier) connected() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.store != nil
}
