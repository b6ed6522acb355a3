package ingest

import (
	"context"
	"errors"
	"sync"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/ids"
)

// Page sizes of ListEvents.
const (
	DefaultPageSize = 50
	MaxPageSize     = 100
	// maxScan bounds how many listed events one ListEvents call reads while
	// filtering; it then answers with what it found and a next page token.
	maxScan = 1000
)

// Get returns an event of the account. Events of other accounts, and events
// whose publish was never acknowledged (fan-out not done), are not found.
func (s *Service) Get(ctx context.Context, accountID, id string) (*eventstore.Event, error) {
	if !ids.Valid(ids.Event, id) {
		return nil, apierr.NotFound("event", id)
	}
	e, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if e.AccountID != accountID || !e.FanoutDone {
		return nil, apierr.NotFound("event", id)
	}
	return e, nil
}

// ListQuery selects events of an account.
type ListQuery struct {
	Type      string // "" = any
	UploadID  string // "" = any; the data.uploadId of the event
	PageSize  int    // 0 = DefaultPageSize; larger than MaxPageSize is capped
	PageToken string
}

// List returns the account's events, newest first, and the token of the
// next page ("" when there is none).
func (s *Service) List(ctx context.Context, accountID string, q ListQuery) ([]*eventstore.Event, string, error) {
	switch {
	case q.PageSize < 0:
		return nil, "", apierr.Invalid("page_size", "must not be negative, got %d", q.PageSize)
	case q.PageSize == 0:
		q.PageSize = DefaultPageSize
	case q.PageSize > MaxPageSize:
		q.PageSize = MaxPageSize
	}
	if q.Type != "" {
		if _, ok := events.Lookup(q.Type); !ok {
			return nil, "", apierr.Invalid("type", "unknown event type %q", short(q.Type))
		}
	}
	filtered := q.Type != "" || q.UploadID != ""
	var out []*eventstore.Event
	cursor, scanned := q.PageToken, 0
	for {
		n := q.PageSize - len(out)
		if filtered {
			n = min(MaxPageSize, maxScan-scanned)
		}
		entries, more, err := s.index.Page(ctx, accountID, cursor, n)
		if err != nil {
			return nil, "", err
		}
		evs, err := s.getMany(ctx, entries)
		if err != nil {
			return nil, "", err
		}
		for i, e := range evs {
			cursor = entries[i].Cursor
			scanned++
			if e == nil || e.AccountID != accountID || !e.FanoutDone ||
				q.Type != "" && e.Type != q.Type || q.UploadID != "" && e.UploadID != q.UploadID {
				continue
			}
			out = append(out, e)
			if len(out) == q.PageSize {
				if i < len(evs)-1 || more {
					return out, cursor, nil
				}
				return out, "", nil
			}
		}
		if !more {
			return out, "", nil
		}
		if scanned >= maxScan {
			return out, cursor, nil
		}
	}
}

// getMany reads the listed events; expired ones are nil.
func (s *Service) getMany(ctx context.Context, entries []IndexEntry) ([]*eventstore.Event, error) {
	out := make([]*eventstore.Event, len(entries))
	err := parallel(ctx, len(entries), 16, func(ctx context.Context, i int) error {
		e, err := s.store.Get(ctx, entries[i].ID)
		if errors.Is(err, apierr.ErrNotFound) {
			return nil
		}
		out[i] = e
		return err
	})
	return out, err
}

// parallel runs fn for 0..n-1 with at most limit at a time and returns the
// first error; the others are then cancelled.
func parallel(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	switch n {
	case 0:
		return nil
	case 1:
		return fn(ctx, 0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, limit)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}
