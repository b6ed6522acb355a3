package ingest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/events"
	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/ids"
)

// Page sizes of ListEvents.
const (
	DefaultPageSize = 50
	MaxPageSize     = 100
	// maxScan bounds how many listed Redis entries one ListEvents call
	// reads while filtering; it then answers with what both tiers hold
	// down to the last entry read, and a next page token.
	maxScan = 1000
)

// Get returns an event of the account from Redis (live events) or, when
// Redis no longer holds it, from history (archived events). Events of
// other accounts, and events whose publish was never acknowledged (fan-out
// not done), are not found. A live event is read without history, so it
// is found while PostgreSQL is down; an archived one then answers
// Unavailable ("history store unreachable …").
func (s *Service) Get(ctx context.Context, accountID, id string) (*eventstore.Event, error) {
	if !ids.Valid(ids.Event, id) {
		return nil, apierr.NotFound("event", id)
	}
	e, err := s.store.Get(ctx, id)
	switch {
	case err == nil && e.AccountID == accountID && e.FanoutDone:
		return e, nil
	case err != nil && !errors.Is(err, apierr.ErrNotFound):
		return nil, err
	case s.history == nil:
		return nil, apierr.NotFound("event", id)
	}
	return s.history.GetEvent(ctx, accountID, id)
}

// ListQuery selects events of an account.
type ListQuery struct {
	Type     string // "" = any
	UploadID string // "" = any; the data.uploadId of the event
	// Since and Until bound the event's time (the time part of its id):
	// Since <= time < Until. Zero: unbounded.
	Since, Until time.Time
	PageSize     int // 0 = DefaultPageSize; larger than MaxPageSize is capped
	// PageToken is the id of the last event of the previous page ("" =
	// from the newest).
	PageToken string
}

// List returns the account's events, newest first (by id, whose first
// bits are its time), and the token of the next page ("" when there is
// none). It reads both tiers as one (the merged read path of pkg/history):
// each is asked for PageSize events before the token's id, the two lists
// are merged by id descending, an event found in both counts once (Redis's
// copy), and the page is the first PageSize; the token is its last id. So
// a listing neither skips nor repeats an event that moves to history
// meanwhile, and a search by uploadId covers the whole retention. When
// PostgreSQL is down it answers Unavailable.
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
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return nil, "", apierr.Invalid("until", "must be after since (%s), got %s", q.Since.UTC().Format(time.RFC3339Nano), q.Until.UTC().Format(time.RFC3339Nano))
	}
	if q.PageToken != "" && !ids.Valid(ids.Event, q.PageToken) {
		return nil, "", apierr.Invalid("page_token", "is not a page token from a previous ListEvents call")
	}

	var (
		live          []*eventstore.Event
		liveMore      bool
		stop          string // lowest id the Redis scan read, when it stopped before the end
		hist          []*eventstore.Event
		histMore      bool
		liveErr, hErr error
		wg            sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		live, liveMore, stop, liveErr = s.listLive(ctx, accountID, q)
	}()
	if s.history != nil {
		hist, histMore, hErr = s.history.ListEvents(ctx, accountID, HistoryQuery{
			Type: q.Type, UploadID: q.UploadID, Since: q.Since, Until: q.Until,
			Before: q.PageToken, PageSize: q.PageSize,
		})
	}
	wg.Wait()
	if liveErr != nil {
		return nil, "", liveErr
	}
	if hErr != nil {
		return nil, "", hErr
	}

	out := mergeNewestFirst(live, hist)
	more := liveMore || histMore
	if stop != "" {
		// Redis was read down to stop only: what history holds below it
		// waits for the next page, which continues the Redis scan too.
		out = slices.DeleteFunc(out, func(e *eventstore.Event) bool { return e.ID < stop })
	}
	if len(out) > q.PageSize {
		out, more = out[:q.PageSize], true
	}
	switch {
	case !more:
		return out, "", nil
	case len(out) < q.PageSize && stop != "":
		return out, stop, nil
	case len(out) == 0:
		return out, "", nil
	}
	return out, out[len(out)-1].ID, nil
}

// listLive returns up to q.PageSize of the account's acknowledged live
// events matching q, before q.PageToken, newest first; whether more may
// follow; and, when it stopped after reading maxScan entries without
// filling the page, the lowest id it read. Entries whose event left Redis
// (archived or expired) are dropped from the list as they are met.
func (s *Service) listLive(ctx context.Context, accountID string, q ListQuery) (out []*eventstore.Event, more bool, stop string, err error) {
	filtered := q.Type != "" || q.UploadID != ""
	r := IndexRange{Before: q.PageToken, Since: q.Since, Until: q.Until}
	scanned := 0
	for {
		n := min(q.PageSize-len(out), maxScan-scanned)
		if filtered {
			n = min(MaxPageSize, maxScan-scanned)
		}
		idList, pageMore, err := s.index.Page(ctx, accountID, r, n)
		if err != nil {
			return nil, false, "", err
		}
		evs, err := s.getMany(ctx, idList)
		if err != nil {
			return nil, false, "", err
		}
		var gone []string
		for i, e := range evs {
			r.Before = idList[i]
			scanned++
			if e == nil {
				gone = append(gone, idList[i])
				continue
			}
			if e.AccountID != accountID || !e.FanoutDone ||
				q.Type != "" && e.Type != q.Type || q.UploadID != "" && e.UploadID != q.UploadID {
				continue
			}
			out = append(out, e)
			if len(out) == q.PageSize {
				s.forget(ctx, accountID, gone)
				return out, i < len(evs)-1 || pageMore, "", nil
			}
		}
		s.forget(ctx, accountID, gone)
		if !pageMore {
			return out, false, "", nil
		}
		if scanned >= maxScan {
			return out, true, r.Before, nil
		}
	}
}

// forget drops list entries whose events left Redis; best effort (the
// next listing tries again, and retention trims them anyway).
func (s *Service) forget(ctx context.Context, accountID string, gone []string) {
	if len(gone) > 0 {
		_ = s.index.Forget(ctx, accountID, gone)
	}
}

// mergeNewestFirst merges two lists sorted by id descending into one,
// keeping a's copy of an id present in both.
func mergeNewestFirst(a, b []*eventstore.Event) []*eventstore.Event {
	out := make([]*eventstore.Event, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i].ID > b[j].ID:
			out = append(out, a[i])
			i++
		case i == len(a) || b[j].ID > a[i].ID:
			out = append(out, b[j])
			j++
		default: // the same event in both tiers
			out = append(out, a[i])
			i, j = i+1, j+1
		}
	}
	return out
}

// getMany reads the listed events; those no longer in Redis are nil.
func (s *Service) getMany(ctx context.Context, idList []string) ([]*eventstore.Event, error) {
	out := make([]*eventstore.Event, len(idList))
	err := parallel(ctx, len(idList), 16, func(ctx context.Context, i int) error {
		e, err := s.store.Get(ctx, idList[i])
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
