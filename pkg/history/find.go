package history

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/voxscriber/webhooks/pkg/apierr"
)

// FindEvent returns the event stored under id whatever its account, or an
// error wrapping apierr.ErrNotFound. It serves idempotency only: a publish
// that repeats an archived event's id or key must answer with that event
// (or refuse another account's) instead of storing a second one. Never
// answer a customer with it; GetEvent is the account-scoped read.
func (s *Store) FindEvent(ctx context.Context, id string) (*Event, error) {
	k, ok := parseKey(prefixEvent, id)
	if !ok {
		return nil, apierr.NotFound("event", id)
	}
	e, err := scanEvent(s.pool.QueryRow(ctx, eventSelect+` WHERE t = $1 AND id = $2`, k.t, k.id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, apierr.NotFound("event", id)
	}
	if err != nil {
		return nil, wrapErr("find event", err)
	}
	return e, nil
}
