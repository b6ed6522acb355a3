package history

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Parked is a parked delivery with its event when history holds the event
// (nil when the event is still live in Redis: another of its deliveries is
// live).
type Parked struct {
	Delivery
	Event *Event
}

// Ref names one version of a delivery.
type Ref struct {
	ID      string
	Version int64
}

// TakeParked returns up to limit of an endpoint's parked deliveries after
// the cursor, in publish order (event time, then id: the order their events
// were published), with their events. It changes nothing and locks
// nothing: ResumeParked is the way to bring them back. next is the cursor
// to continue from (empty when this was the last page).
func (s *Store) TakeParked(ctx context.Context, endpointID string, after Cursor, limit int) (ps []Parked, next Cursor, err error) {
	return s.takeParked(ctx, s.pool, endpointID, after, limit, "")
}

// ResumeParked brings back one page of an endpoint's parked deliveries
// (TakeParked's page), in one transaction: it reads the page with its rows
// locked (FOR UPDATE), hands it to restore, which brings them to Redis (an
// upsert by delivery id that leaves a live copy alone, continuing from
// Version) and returns the ones it restored, and unparks those. While the
// rows are locked, no other write of them (the archiver's upsert of a
// newer copy, ExpireParked) can land between the read and the restore: a
// restore from a row no longer current would bring back an old copy of a
// delivery whose newer copy ended and left Redis meanwhile, which would be
// sent again with its versions forked from history's. A crash (or an
// error of restore) after restoring leaves the rows parked and the copies
// live: taking the page again restores nothing twice, and a live copy's
// next archive supersedes its row. It returns the cursor after the page
// and how many rows it read (0: nothing is left after the cursor); an
// error of restore is returned as it is.
func (s *Store) ResumeParked(ctx context.Context, endpointID string, after Cursor, limit int, restore func([]Parked) ([]Ref, error)) (next Cursor, taken int, err error) {
	var restoreErr error
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		ps, _, err := s.takeParked(ctx, tx, endpointID, after, limit, " FOR UPDATE")
		if err != nil || len(ps) == 0 {
			return err
		}
		// Locked rows that changed while it waited for them (a newer copy
		// archived) are left out, so a short page is not the last one:
		// the caller goes on until a page is empty.
		next, taken = CursorAt(ps[len(ps)-1].ID), len(ps)
		refs, err := restore(ps)
		if err != nil {
			restoreErr = err
			return err
		}
		_, err = unpark(ctx, tx, refs)
		return err
	})
	switch {
	case restoreErr != nil:
		return "", 0, restoreErr // as restore returned it
	case err != nil:
		return "", 0, wrapErr("resume parked", err)
	}
	return next, taken, nil
}

func (s *Store) takeParked(ctx context.Context, q querier, endpointID string, after Cursor, limit int, lock string) (ps []Parked, next Cursor, err error) {
	ep, ok := idBytes(prefixEndpoint, endpointID)
	if !ok || limit <= 0 {
		return nil, "", nil
	}
	w := where{}
	w.add("endpoint_id = %s", ep)
	w.conds = append(w.conds, "status = 'parked'")
	if err := w.window(prefixDelivery, timeZero, timeZero, after, false); err != nil {
		return nil, "", err
	}
	rows, err := q.Query(ctx, deliverySelect+w.sql()+fmt.Sprintf(" ORDER BY t, id LIMIT %d", limit)+lock, w.args...)
	if err != nil {
		return nil, "", wrapErr("take parked", err)
	}
	ds, err := collect(rows, scanDelivery, "take parked")
	if err != nil || len(ds) == 0 {
		return nil, "", err
	}
	// Events, per account (an endpoint has one account).
	evIDs := make([]string, len(ds))
	for i := range ds {
		evIDs[i] = ds[i].EventID
	}
	evs, err := getEvents(ctx, q, ds[0].AccountID, evIDs)
	if err != nil {
		return nil, "", err
	}
	byID := make(map[string]*Event, len(evs))
	for i := range evs {
		byID[evs[i].ID] = &evs[i]
	}
	ps = make([]Parked, len(ds))
	for i := range ds {
		ps[i] = Parked{Delivery: ds[i], Event: byID[ds[i].EventID]}
	}
	if len(ds) == limit {
		next = CursorAt(ds[len(ds)-1].ID)
	}
	return ps, next, nil
}

// Unpark removes deliveries restored to Redis from history, each only while
// still at the version taken (whatever its status: a copy that
// ExpireParked ended meanwhile goes too, since the live copy supersedes
// it). It returns how many it removed; removing again is a no-op.
func (s *Store) Unpark(ctx context.Context, refs []Ref) (int, error) {
	return unpark(ctx, s.pool, refs)
}

func unpark(ctx context.Context, q querier, refs []Ref) (int, error) {
	ids := make([]string, len(refs))
	vers := make([]int64, 0, len(refs))
	for i, r := range refs {
		ids[i] = r.ID
	}
	ts, bs := keysOf(prefixDelivery, ids)
	for _, r := range refs {
		if _, ok := parseKey(prefixDelivery, r.ID); ok {
			vers = append(vers, r.Version)
		}
	}
	if len(bs) == 0 {
		return 0, nil
	}
	tag, err := q.Exec(ctx, `DELETE FROM deliveries d USING unnest($1::timestamptz[], $2::uuid[], $3::bigint[]) k(t, id, version)
		WHERE d.t = k.t AND d.id = k.id AND d.version <= k.version`, ts, bs, vers)
	if err != nil {
		return 0, wrapErr("unpark", err)
	}
	// Their attempts stay: attempts are keyed by number and the live copy
	// continues the numbering, so archiving it again finds them in place.
	return int(tag.RowsAffected()), nil
}

// Held reads history inside HoldDeliveries, on its transaction (so a
// hold takes one connection of the pool, never a second while it holds
// the first).
type Held struct{ q querier }

// GetDelivery is Store.GetDelivery, read on the hold's transaction.
func (h Held) GetDelivery(ctx context.Context, accountID, id string) (*Delivery, []Attempt, error) {
	return getDelivery(ctx, h.q, accountID, id)
}

// GetEvents is Store.GetEvents, read on the hold's transaction.
func (h Held) GetEvents(ctx context.Context, accountID string, ids []string) ([]Event, error) {
	return getEvents(ctx, h.q, accountID, ids)
}

// HoldDeliveries runs fn with the history rows of the deliveries ids
// locked (FOR UPDATE, in a transaction committed when fn returns): what fn
// reads through h is their last committed copy, and no other write of
// them (the archiver's upsert of a newer copy) lands until fn is done. A
// caller that restores deliveries from history to Redis reads and
// restores inside fn, so that it never brings back a copy that a newer
// one, archived in between, superseded. Ids history does not hold lock
// nothing. An error of fn is returned as it is.
func (s *Store) HoldDeliveries(ctx context.Context, ids []string, fn func(h Held) error) error {
	ts, bs := keysOf(prefixDelivery, ids)
	var fnErr error
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if len(bs) > 0 {
			if _, err := tx.Exec(ctx, `SELECT 1 FROM deliveries d JOIN unnest($1::timestamptz[], $2::uuid[]) k(t, id)
				ON d.t = k.t AND d.id = k.id ORDER BY d.t, d.id FOR UPDATE OF d`, ts, bs); err != nil {
				return err
			}
		}
		fnErr = fn(Held{q: tx})
		return fnErr
	})
	if fnErr != nil {
		return fnErr
	}
	return wrapErr("hold deliveries", err)
}
