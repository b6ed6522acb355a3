package history

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/voxscriber/webhooks/pkg/apierr"
)

const eventSelect = `SELECT id, account_id, type, payload, create_time, idempotency_key, upload_id, trace_id, delivery_count FROM events`

func scanEvent(r pgx.Row) (*Event, error) {
	var (
		id, acct     [16]byte
		trace        pgtype.UUID
		idem, upload *string
		e            Event
	)
	if err := r.Scan(&id, &acct, &e.Type, &e.Payload, &e.CreateTime, &idem, &upload, &trace, &e.DeliveryCount); err != nil {
		return nil, err
	}
	e.ID = idString(prefixEvent, id)
	e.AccountID = idString(prefixAccount, acct)
	e.CreateTime = e.CreateTime.UTC()
	e.IdempotencyKey = deref(idem)
	e.UploadID = deref(upload)
	if trace.Valid {
		e.TraceID = traceString(&trace.Bytes)
	}
	return &e, nil
}

const deliverySelect = `SELECT id, account_id, endpoint_id, event_id, event_type, upload_id, status, version, attempts, base,
	first_attempt, create_time, update_time, trace_parent, trace_state, last_code, last_error, test, body, ordering_key, line_seq FROM deliveries`

func scanDelivery(r pgx.Row) (*Delivery, error) {
	var (
		id, acct, ep, ev [16]byte
		upload, lastErr  *string
		okey             *string
		seq              *int64
		tp, ts           *string
		first            *time.Time
		code             int16
		status           string
		d                Delivery
	)
	if err := r.Scan(&id, &acct, &ep, &ev, &d.EventType, &upload, &status, &d.Version, &d.Attempts, &d.Base,
		&first, &d.CreateTime, &d.UpdateTime, &tp, &ts, &code, &lastErr, &d.Test, &d.Body, &okey, &seq); err != nil {
		return nil, err
	}
	d.ID = idString(prefixDelivery, id)
	d.AccountID = idString(prefixAccount, acct)
	d.EndpointID = idString(prefixEndpoint, ep)
	d.EventID = idString(prefixEvent, ev)
	d.UploadID = deref(upload)
	d.Status = Status(status)
	if first != nil {
		d.FirstAttempt = first.UTC()
	}
	d.CreateTime = d.CreateTime.UTC()
	d.UpdateTime = d.UpdateTime.UTC()
	d.TraceParent, d.TraceState = deref(tp), deref(ts)
	d.LastCode = int(code)
	d.LastError = deref(lastErr)
	d.OrderingKey = deref(okey)
	if seq != nil {
		d.LineSeq = *seq
	}
	return &d, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// GetEvent returns an account's event, or an error wrapping
// apierr.ErrNotFound (also for another account's event).
func (s *Store) GetEvent(ctx context.Context, accountID, id string) (*Event, error) {
	k, ok := parseKey(prefixEvent, id)
	acct, ok2 := idBytes(prefixAccount, accountID)
	if !ok || !ok2 {
		return nil, apierr.NotFound("event", id)
	}
	e, err := scanEvent(s.pool.QueryRow(ctx, eventSelect+` WHERE t = $1 AND id = $2 AND account_id = $3`, k.t, k.id, acct))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, apierr.NotFound("event", id)
	}
	if err != nil {
		return nil, wrapErr("get event", err)
	}
	return e, nil
}

// GetEvents returns those of an account's events that history holds, in
// the order of ids (missing ones left out): the payloads a replay or a
// resume brings back to Redis.
func (s *Store) GetEvents(ctx context.Context, accountID string, ids []string) ([]Event, error) {
	return getEvents(ctx, s.pool, accountID, ids)
}

func getEvents(ctx context.Context, q querier, accountID string, ids []string) ([]Event, error) {
	acct, ok := idBytes(prefixAccount, accountID)
	if !ok || len(ids) == 0 {
		return nil, nil
	}
	ts, bs := keysOf(prefixEvent, ids)
	// One primary-key probe per id (the LIMIT keeps the planner from
	// turning the lateral join into a hash join over every partition).
	rows, err := q.Query(ctx, `SELECT e.* FROM unnest($1::timestamptz[], $2::uuid[]) k(t, id)
		CROSS JOIN LATERAL (`+eventSelect+` WHERE t = k.t AND id = k.id AND account_id = $3 LIMIT 1) e`, ts, bs, acct)
	if err != nil {
		return nil, wrapErr("get events", err)
	}
	got, err := collect(rows, scanEvent, "get events")
	if err != nil {
		return nil, err
	}
	byID := make(map[string]int, len(got))
	for i := range got {
		byID[got[i].ID] = i
	}
	out := make([]Event, 0, len(got))
	for _, id := range ids {
		if i, ok := byID[id]; ok {
			out = append(out, got[i])
			delete(byID, id)
		}
	}
	return out, nil
}

func keysOf(prefix string, ids []string) ([]time.Time, [][16]byte) {
	ts := make([]time.Time, 0, len(ids))
	bs := make([][16]byte, 0, len(ids))
	for _, id := range ids {
		if k, ok := parseKey(prefix, id); ok {
			ts = append(ts, k.t)
			bs = append(bs, k.id)
		}
	}
	return ts, bs
}

func collect[T any](rows pgx.Rows, scan func(pgx.Row) (*T, error), op string) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, wrapErr(op, err)
		}
		out = append(out, *v)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapErr(op, err)
	}
	return out, nil
}

// EventQuery selects an account's events. Zero fields do not filter.
type EventQuery struct {
	Type     string
	UploadID string
	// Since and Until bound the event's time (the time part of its id):
	// Since <= time < Until.
	Since, Until time.Time
	PageSize     int
	After        Cursor
}

// ListEvents pages through an account's events, newest first: ordered by
// (time part of the id, id) descending, which is the id's own order. next
// is empty on the last page.
func (s *Store) ListEvents(ctx context.Context, accountID string, q EventQuery) (events []Event, next Cursor, err error) {
	acct, ok := idBytes(prefixAccount, accountID)
	if !ok {
		return nil, "", nil
	}
	w := where{}
	w.add("account_id = %s", acct)
	if q.Type != "" {
		w.add("type = %s", q.Type)
	}
	if q.UploadID != "" {
		w.add("upload_id = %s", q.UploadID)
	}
	if err := w.window(prefixEvent, q.Since, q.Until, q.After, true); err != nil {
		return nil, "", err
	}
	n := pageSize(q.PageSize)
	rows, err := s.pool.Query(ctx, eventSelect+w.sql()+fmt.Sprintf(" ORDER BY t DESC, id DESC LIMIT %d", n+1), w.args...)
	if err != nil {
		return nil, "", wrapErr("list events", err)
	}
	events, err = collect(rows, scanEvent, "list events")
	if err != nil {
		return nil, "", err
	}
	if len(events) > n {
		events = events[:n]
		next = CursorAt(events[n-1].ID)
	}
	return events, next, nil
}

// GetDelivery returns an account's delivery and its attempts, oldest
// first, or an error wrapping apierr.ErrNotFound.
func (s *Store) GetDelivery(ctx context.Context, accountID, id string) (*Delivery, []Attempt, error) {
	return getDelivery(ctx, s.pool, accountID, id)
}

func getDelivery(ctx context.Context, q querier, accountID, id string) (*Delivery, []Attempt, error) {
	k, ok := parseKey(prefixDelivery, id)
	acct, ok2 := idBytes(prefixAccount, accountID)
	if !ok || !ok2 {
		return nil, nil, apierr.NotFound("delivery", id)
	}
	b := &pgx.Batch{}
	b.Queue(deliverySelect+` WHERE t = $1 AND id = $2 AND account_id = $3`, k.t, k.id, acct)
	b.Queue(`SELECT number, start_time, status_code, latency_us, error_type, error, response, headers, trace_id, span_id, url
		FROM attempts WHERE t = $1 AND delivery_id = $2 ORDER BY number`, k.t, k.id)
	br := q.SendBatch(ctx, b)
	defer br.Close()
	d, err := scanDelivery(br.QueryRow())
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, apierr.NotFound("delivery", id)
	}
	if err != nil {
		return nil, nil, wrapErr("get delivery", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, nil, wrapErr("get delivery attempts", err)
	}
	atts, err := collect(rows, scanAttempt, "get delivery attempts")
	if err != nil {
		return nil, nil, err
	}
	return d, atts, nil
}

func scanAttempt(r pgx.Row) (*Attempt, error) {
	var (
		a                  Attempt
		code               int16
		latUS              int32
		et, msg, resp, url *string
		headers            []string
		trace              pgtype.UUID
		span               *int64
	)
	if err := r.Scan(&a.Number, &a.Start, &code, &latUS, &et, &msg, &resp, &headers, &trace, &span, &url); err != nil {
		return nil, err
	}
	a.Start = a.Start.UTC()
	a.StatusCode = int(code)
	a.Latency = time.Duration(latUS) * time.Microsecond
	a.ErrorType, a.Error, a.Response, a.URL = deref(et), deref(msg), deref(resp), deref(url)
	a.RequestHeaders = headersMap(headers)
	if trace.Valid {
		a.TraceID = traceString(&trace.Bytes)
	}
	a.SpanID = spanString(span)
	return &a, nil
}

// DeliveryQuery selects an account's deliveries. Zero fields do not filter.
type DeliveryQuery struct {
	EndpointID string
	Statuses   []Status
	EventType  string
	UploadID   string
	// Since and Until bound the event's time (the time part of the
	// delivery's id): Since <= time < Until.
	Since, Until time.Time
	PageSize     int
	After        Cursor
}

// ListDeliveries pages through an account's deliveries, newest first:
// ordered by (time part of the id, id) descending. next is empty on the
// last page. Every filter is served by an index.
func (s *Store) ListDeliveries(ctx context.Context, accountID string, q DeliveryQuery) (ds []Delivery, next Cursor, err error) {
	acct, ok := idBytes(prefixAccount, accountID)
	if !ok {
		return nil, "", nil
	}
	w := where{}
	w.add("account_id = %s", acct)
	if q.EndpointID != "" {
		ep, ok := idBytes(prefixEndpoint, q.EndpointID)
		if !ok {
			return nil, "", nil
		}
		w.add("endpoint_id = %s", ep)
	}
	switch len(q.Statuses) {
	case 0:
	case 1:
		w.add("status = %s", string(q.Statuses[0]))
	default:
		w.add("status = ANY(%s)", statusStrings(q.Statuses))
	}
	if q.EventType != "" {
		w.add("event_type = %s", q.EventType)
	}
	if q.UploadID != "" {
		w.add("upload_id = %s", q.UploadID)
	}
	if err := w.window(prefixDelivery, q.Since, q.Until, q.After, true); err != nil {
		return nil, "", err
	}
	n := pageSize(q.PageSize)
	rows, err := s.pool.Query(ctx, deliverySelect+w.sql()+fmt.Sprintf(" ORDER BY t DESC, id DESC LIMIT %d", n+1), w.args...)
	if err != nil {
		return nil, "", wrapErr("list deliveries", err)
	}
	ds, err = collect(rows, scanDelivery, "list deliveries")
	if err != nil {
		return nil, "", err
	}
	if len(ds) > n {
		ds = ds[:n]
		next = CursorAt(ds[n-1].ID)
	}
	return ds, next, nil
}

// FindForReplay returns up to limit of an account's deliveries to an
// endpoint whose event time is at or after since and whose status is one
// of statuses, oldest first, never a test delivery. A replay restores each
// to Redis (continuing from its Version) with its event (GetEvents).
func (s *Store) FindForReplay(ctx context.Context, accountID, endpointID string, statuses []Status, since time.Time, limit int) ([]Delivery, error) {
	acct, ok := idBytes(prefixAccount, accountID)
	ep, ok2 := idBytes(prefixEndpoint, endpointID)
	if !ok || !ok2 || len(statuses) == 0 || limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, deliverySelect+` WHERE endpoint_id = $1 AND account_id = $2 AND status = ANY($3) AND t >= $4 AND NOT test
		ORDER BY t, id LIMIT $5`, ep, acct, statusStrings(statuses), since.UTC(), limit)
	if err != nil {
		return nil, wrapErr("find for replay", err)
	}
	return collect(rows, scanDelivery, "find for replay")
}

func statusStrings(ss []Status) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}

func pageSize(n int) int {
	switch {
	case n <= 0:
		return DefaultPageSize
	case n > MaxPageSize:
		return MaxPageSize
	}
	return n
}

// where builds a WHERE clause with numbered parameters.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, arg any) {
	w.args = append(w.args, arg)
	w.conds = append(w.conds, fmt.Sprintf(cond, fmt.Sprintf("$%d", len(w.args))))
}

// window adds the time bounds and the keyset cursor. The cursor repeats its
// time as a plain bound so partitions past it are pruned.
func (w *where) window(prefix string, since, until time.Time, after Cursor, desc bool) error {
	if !since.IsZero() {
		w.add("t >= %s", since.UTC())
	}
	if !until.IsZero() {
		w.add("t < %s", until.UTC())
	}
	if after != "" {
		k, ok := parseKey(prefix, after.ID())
		if !ok {
			return apierr.Invalid("page_token", "not a page token of this listing")
		}
		op, bound := ">", ">="
		if desc {
			op, bound = "<", "<="
		}
		w.add("t "+bound+" %s", k.t)
		w.args = append(w.args, k.id)
		w.conds = append(w.conds, fmt.Sprintf("(t, id) %s ($%d, $%d)", op, len(w.args)-1, len(w.args)))
	}
	return nil
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}
