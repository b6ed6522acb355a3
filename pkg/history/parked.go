package history

import (
	"context"
	"fmt"
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
// were published), with their events. It changes nothing: the caller
// restores them to Redis (an upsert by delivery id, continuing from
// Version), then calls Unpark; after a crash in between, taking again
// restores nothing twice. next is the cursor to continue from (empty when
// this was the last page).
func (s *Store) TakeParked(ctx context.Context, endpointID string, after Cursor, limit int) (ps []Parked, next Cursor, err error) {
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
	rows, err := s.pool.Query(ctx, deliverySelect+w.sql()+fmt.Sprintf(" ORDER BY t, id LIMIT %d", limit), w.args...)
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
	evs, err := s.GetEvents(ctx, ds[0].AccountID, evIDs)
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
	tag, err := s.pool.Exec(ctx, `DELETE FROM deliveries d USING unnest($1::timestamptz[], $2::uuid[], $3::bigint[]) k(t, id, version)
		WHERE d.t = k.t AND d.id = k.id AND d.version <= k.version`, ts, bs, vers)
	if err != nil {
		return 0, wrapErr("unpark", err)
	}
	// Their attempts stay: attempts are keyed by number and the live copy
	// continues the numbering, so archiving it again finds them in place.
	return int(tag.RowsAffected()), nil
}
