package history

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Batch is what one Archive call writes in one transaction.
type Batch struct {
	// Events whose deliveries have all ended or are parked (none live).
	Events []Event
	// Deliveries that ended or are parked, each with its attempts.
	Deliveries []DeliveryRecord
}

// Archived is a delivery that history holds once Archive returns: at
// Version (Applied) or already at a higher version (not Applied: this copy
// was stale). Either way the caller may delete its Redis copy if that copy
// is still at Version (compare-and-delete), unless Newer is set.
type Archived struct {
	ID      string
	Version int64
	Applied bool
	// Newer is the version history holds when it is higher than Version
	// although its copy was updated before this one (0 otherwise): not a
	// later state of this copy but another copy of the delivery with a
	// history of its own (its versions forked, e.g. revived from an old
	// row). This copy is then not in history, and deleting it would lose
	// what happened to it; the caller renumbers it above Newer and
	// archives it again.
	Newer int64
}

// Quarantined is a record Archive could not place (its day has no partition,
// or an id is not one of ours). It is kept whole in the quarantine table, so
// the caller may delete it from Redis as it would an archived one.
type Quarantined struct {
	Kind   string // "event" or "delivery"
	ID     string
	Reason string
}

// Result is what Archive wrote. Everything named here is durable: the
// transaction that holds it has committed.
type Result struct {
	Events      []string // event ids held (written now or before)
	Deliveries  []Archived
	Quarantined []Quarantined
	// Attempts is how many attempts were written now (attempts archived
	// before are skipped and not counted again in the rollups).
	Attempts int
}

// LatencyBuckets are the upper bounds of the rollups' latency histogram
// buckets h0..h11; h12 counts the rest.
var LatencyBuckets = []time.Duration{
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
	2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, 30 * time.Second,
}

const stageDDL = `
CREATE TEMP TABLE IF NOT EXISTS history_stage_events_v1 (
    t timestamptz, create_time timestamptz, id uuid, account_id uuid, trace_id uuid,
    delivery_count integer, type text, upload_id text, idempotency_key text, payload bytea
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS history_stage_deliveries_v3 (
    t timestamptz, create_time timestamptz, update_time timestamptz, first_attempt timestamptz,
    version bigint, id uuid, account_id uuid, endpoint_id uuid, event_id uuid, attempts integer,
    base integer, last_code smallint, test boolean, status text, event_type text, upload_id text,
    last_error text, trace_parent text, trace_state text, body bytea, ordering_key text, line_seq bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS history_stage_attempts_v1 (
    t timestamptz, start_time timestamptz, span_id bigint, delivery_id uuid, trace_id uuid,
    number integer, latency_us integer, status_code smallint, error_type text, error text,
    response text, headers text[], url text, account_id uuid, endpoint_id uuid
) ON COMMIT DELETE ROWS;`

var (
	eventCols    = []string{"t", "create_time", "id", "account_id", "trace_id", "delivery_count", "type", "upload_id", "idempotency_key", "payload"}
	deliveryCols = []string{"t", "create_time", "update_time", "first_attempt", "version", "id", "account_id", "endpoint_id", "event_id", "attempts", "base", "last_code", "test", "status", "event_type", "upload_id", "last_error", "trace_parent", "trace_state", "body", "ordering_key", "line_seq"}
	attemptCols  = []string{"t", "start_time", "span_id", "delivery_id", "trace_id", "number", "latency_us", "status_code", "error_type", "error", "response", "headers", "url"}
)

var (
	upsertEvents = `INSERT INTO events (` + strings.Join(eventCols, ", ") + `)
		SELECT ` + strings.Join(eventCols, ", ") + ` FROM history_stage_events_v1
		ON CONFLICT (t, id) DO UPDATE SET delivery_count = excluded.delivery_count
		WHERE events.delivery_count < excluded.delivery_count`

	upsertDeliveries = `INSERT INTO deliveries (` + strings.Join(deliveryCols, ", ") + `)
		SELECT ` + strings.Join(deliveryCols, ", ") + ` FROM history_stage_deliveries_v3
		ON CONFLICT (t, id) DO UPDATE SET ` + setExcluded(deliveryCols, "t", "id", "account_id", "endpoint_id", "event_id") + `
		WHERE deliveries.version < excluded.version
		RETURNING id`

	insertAttempts = func() string {
		var b strings.Builder
		b.WriteString(`WITH ins AS (
			INSERT INTO attempts (` + strings.Join(attemptCols, ", ") + `)
			SELECT ` + strings.Join(attemptCols, ", ") + ` FROM history_stage_attempts_v1
			ON CONFLICT (t, delivery_id, number) DO NOTHING
			RETURNING t, delivery_id, number, start_time, latency_us, status_code, error_type),
		b AS (
			SELECT s.account_id, s.endpoint_id, date_trunc('minute', i.start_time) AS minute,
			       i.status_code, i.error_type,
			       width_bucket(i.latency_us, $1::integer[]) AS bucket
			FROM ins i JOIN history_stage_attempts_v1 s USING (t, delivery_id, number)
			WHERE date_trunc('day', i.start_time) = ANY($2::timestamptz[])),
		up AS (
			INSERT INTO delivery_rollups AS r (account_id, endpoint_id, minute, ok, http_error, net_error`)
		for i := 0; i <= len(LatencyBuckets); i++ {
			fmt.Fprintf(&b, ", h%d", i)
		}
		b.WriteString(`)
			SELECT account_id, endpoint_id, minute,
			       count(*) FILTER (WHERE error_type IS NULL AND status_code BETWEEN 200 AND 299),
			       count(*) FILTER (WHERE status_code <> 0 AND NOT (error_type IS NULL AND status_code BETWEEN 200 AND 299)),
			       count(*) FILTER (WHERE status_code = 0)`)
		for i := 0; i <= len(LatencyBuckets); i++ {
			fmt.Fprintf(&b, ",\n\t\t\t       count(*) FILTER (WHERE bucket = %d)", i)
		}
		b.WriteString(`
			FROM b GROUP BY account_id, endpoint_id, minute
			ON CONFLICT (account_id, minute, endpoint_id) DO UPDATE SET
			       ok = r.ok + excluded.ok, http_error = r.http_error + excluded.http_error,
			       net_error = r.net_error + excluded.net_error`)
		for i := 0; i <= len(LatencyBuckets); i++ {
			fmt.Fprintf(&b, ", h%d = r.h%d + excluded.h%d", i, i, i)
		}
		b.WriteString(`
			RETURNING 1)
		SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM up)`)
		return b.String()
	}()
)

func setExcluded(cols []string, skip ...string) string {
	var parts []string
outer:
	for _, c := range cols {
		for _, s := range skip {
			if c == s {
				continue outer
			}
		}
		parts = append(parts, c+" = excluded."+c)
	}
	return strings.Join(parts, ", ")
}

// prepared batch rows.
type eventRow struct {
	k    key
	acct [16]byte
	e    *Event
}

type deliveryRow struct {
	k                    key
	acct, endpoint, evID [16]byte
	d                    *DeliveryRecord
}

// Archive writes a batch in one transaction: each kind is COPied into a
// temporary staging table, then upserted: events once (a repeat only raises
// DeliveryCount), deliveries only where the incoming Version is higher than
// the stored one, attempts once per (delivery, number), and the per-minute
// rollups from exactly the attempts written now. Records that fit no
// partition go to the quarantine table in the same transaction. Re-archiving
// the same batch changes nothing and lists nothing twice.
func (s *Store) Archive(ctx context.Context, b Batch) (Result, error) {
	var res Result
	var evs []eventRow
	var dls []deliveryRow
	quarantine := map[string]quarantineRow{}
	seenEv := map[[16]byte]int{}
	for i := range b.Events {
		e := &b.Events[i]
		k, ok := parseKey(prefixEvent, e.ID)
		acct, ok2 := idBytes(prefixAccount, e.AccountID)
		if !ok || !ok2 {
			quarantine["e"+e.ID] = quarantineRow{kind: "event", id: e.ID, account: e.AccountID, reason: "invalid event or account id", record: e}
			continue
		}
		if j, dup := seenEv[k.id]; dup {
			if e.DeliveryCount > evs[j].e.DeliveryCount {
				evs[j].e = e
			}
			continue
		}
		seenEv[k.id] = len(evs)
		evs = append(evs, eventRow{k: k, acct: acct, e: e})
	}
	seenDl := map[[16]byte]int{}
	for i := range b.Deliveries {
		d := &b.Deliveries[i]
		k, ok := parseKey(prefixDelivery, d.ID)
		acct, ok2 := idBytes(prefixAccount, d.AccountID)
		ep, ok3 := idBytes(prefixEndpoint, d.EndpointID)
		ev, ok4 := idBytes(prefixEvent, d.EventID)
		if !ok || !ok2 || !ok3 || !ok4 {
			quarantine["d"+d.ID] = quarantineRow{kind: "delivery", id: d.ID, account: d.AccountID, reason: "invalid delivery, account, endpoint or event id", record: d}
			continue
		}
		if j, dup := seenDl[k.id]; dup {
			dls[j].d = mergeRecords(dls[j].d, d)
			continue
		}
		seenDl[k.id] = len(dls)
		dls = append(dls, deliveryRow{k: k, acct: acct, endpoint: ep, evID: ev, d: d})
	}

	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		res = Result{}
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock_shared($1)", int64(partitionLockID)); err != nil {
			return err
		}
		erased, err := erasedAmong(ctx, tx, evs, dls)
		if err != nil {
			return err
		}
		days, err := partitionDaysOf(ctx, tx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, stageDDL); err != nil {
			return err
		}
		q := make(map[string]quarantineRow, len(quarantine))
		for k, v := range quarantine {
			q[k] = v
		}

		var evRows [][]any
		for _, r := range evs {
			if erased[r.acct] { // held: the account is gone, and so is this
				res.Events = append(res.Events, r.e.ID)
				continue
			}
			if !days[dayOf(r.k.t)] {
				q["e"+r.e.ID] = quarantineRow{kind: "event", id: r.e.ID, account: r.e.AccountID, reason: noPartition(r.k.t), record: r.e}
				continue
			}
			e := r.e
			evRows = append(evRows, []any{r.k.t, e.CreateTime.UTC(), r.k.id, r.acct, traceBytes(e.TraceID), e.DeliveryCount, e.Type, nullText(e.UploadID), nullText(e.IdempotencyKey), nonNil(e.Payload)})
			res.Events = append(res.Events, e.ID)
		}
		var dlRows, atRows [][]any
		for _, r := range dls {
			if erased[r.acct] {
				res.Deliveries = append(res.Deliveries, Archived{ID: r.d.ID, Version: r.d.Version})
				continue
			}
			if !days[dayOf(r.k.t)] {
				q["d"+r.d.ID] = quarantineRow{kind: "delivery", id: r.d.ID, account: r.d.AccountID, reason: noPartition(r.k.t), record: r.d}
				continue
			}
			d := &r.d.Delivery
			dlRows = append(dlRows, []any{r.k.t, d.CreateTime.UTC(), d.UpdateTime.UTC(), nullTime(d.FirstAttempt), d.Version, r.k.id, r.acct, r.endpoint, r.evID,
				d.Attempts, d.Base, int16(d.LastCode), d.Test, string(d.Status), d.EventType, nullText(d.UploadID), nullText(d.LastError),
				nullText(d.TraceParent), nullText(d.TraceState), nullBytes(d.Body), nullText(d.OrderingKey), nullInt(d.LineSeq)})
			seenNum := map[int]bool{}
			for i := range r.d.Attempts {
				a := &r.d.Attempts[i]
				if seenNum[a.Number] {
					continue
				}
				seenNum[a.Number] = true
				lat := a.Latency.Microseconds()
				if lat > 1<<31-1 {
					lat = 1<<31 - 1
				}
				atRows = append(atRows, []any{r.k.t, a.Start.UTC(), spanInt(a.SpanID), r.k.id, traceBytes(a.TraceID), a.Number, int32(lat), int16(a.StatusCode),
					nullText(a.ErrorType), nullText(a.Error), nullText(truncateUTF8(a.Response, MaxResponseBytes)), keptHeaders(a.RequestHeaders, d), nullText(a.URL),
					r.acct, r.endpoint})
			}
			res.Deliveries = append(res.Deliveries, Archived{ID: d.ID, Version: d.Version})
		}

		if len(evRows) > 0 {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"history_stage_events_v1"}, eventCols, pgx.CopyFromRows(evRows)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, upsertEvents); err != nil {
				return err
			}
		}
		if len(dlRows) > 0 {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"history_stage_deliveries_v3"}, deliveryCols, pgx.CopyFromRows(dlRows)); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, upsertDeliveries)
			if err != nil {
				return err
			}
			applied := map[[16]byte]bool{}
			for rows.Next() {
				var id [16]byte
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				applied[id] = true
			}
			if err := rows.Err(); err != nil {
				return err
			}
			newer := map[[16]byte]int64{}
			if len(applied) < len(dlRows) { // some held already: at this version (archived again), or a higher one
				rows, err := tx.Query(ctx, `SELECT d.id, d.version FROM deliveries d JOIN history_stage_deliveries_v3 s USING (t, id) WHERE d.version > s.version AND d.update_time < s.update_time`)
				if err != nil {
					return err
				}
				for rows.Next() {
					var id [16]byte
					var v int64
					if err := rows.Scan(&id, &v); err != nil {
						rows.Close()
						return err
					}
					newer[id] = v
				}
				if err := rows.Err(); err != nil {
					return err
				}
			}
			for i := range res.Deliveries {
				k, _ := idBytes(prefixDelivery, res.Deliveries[i].ID)
				res.Deliveries[i].Applied = applied[k]
				res.Deliveries[i].Newer = newer[k]
			}
		}
		if len(atRows) > 0 {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"history_stage_attempts_v1"}, append(attemptCols, "account_id", "endpoint_id"), pgx.CopyFromRows(atRows)); err != nil {
				return err
			}
			bounds := make([]int32, len(LatencyBuckets))
			for i, b := range LatencyBuckets {
				bounds[i] = int32(b.Microseconds())
			}
			dayList := make([]time.Time, 0, len(days))
			for d := range days {
				dayList = append(dayList, d)
			}
			var ins, ups int64
			if err := tx.QueryRow(ctx, insertAttempts, bounds, dayList).Scan(&ins, &ups); err != nil {
				return err
			}
			res.Attempts = int(ins)
		}
		if len(q) > 0 {
			batch := &pgx.Batch{}
			for _, r := range q {
				batch.Queue(`INSERT INTO quarantine (kind, record_id, account_id, reason, record) VALUES ($1, $2, $3, $4, $5)`,
					r.kind, r.id, r.account, r.reason, jsonOf(r.record))
				res.Quarantined = append(res.Quarantined, Quarantined{Kind: r.kind, ID: r.id, Reason: r.reason})
			}
			if err := tx.SendBatch(ctx, batch).Close(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Result{}, wrapErr("archive", err)
	}
	for _, qr := range res.Quarantined {
		s.quarantined.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", qr.Kind)))
	}
	s.archived.Add(ctx, int64(len(res.Events)), metric.WithAttributes(attribute.String("kind", "event")))
	s.archived.Add(ctx, int64(len(res.Deliveries)), metric.WithAttributes(attribute.String("kind", "delivery")))
	s.archived.Add(ctx, int64(res.Attempts), metric.WithAttributes(attribute.String("kind", "attempt")))
	forked := 0
	for _, d := range res.Deliveries {
		if d.Newer > 0 {
			forked++
		}
	}
	if forked > 0 {
		s.forked.Add(ctx, int64(forked))
	}
	if len(res.Quarantined) > 0 {
		s.log.Warn("history: records quarantined", "count", len(res.Quarantined), "first_reason", res.Quarantined[0].Reason)
	}
	return res, nil
}

// erasedAmong returns which of the batch's accounts are in erased_accounts.
func erasedAmong(ctx context.Context, tx pgx.Tx, evs []eventRow, dls []deliveryRow) (map[[16]byte]bool, error) {
	seen := map[[16]byte]bool{}
	var accts [][16]byte
	add := func(a [16]byte) {
		if !seen[a] {
			seen[a] = true
			accts = append(accts, a)
		}
	}
	for _, r := range evs {
		add(r.acct)
	}
	for _, r := range dls {
		add(r.acct)
	}
	return erasedAccounts(ctx, tx, accts)
}

// erasedAccounts returns which of accts are in erased_accounts.
func erasedAccounts(ctx context.Context, tx pgx.Tx, accts [][16]byte) (map[[16]byte]bool, error) {
	out := map[[16]byte]bool{}
	if len(accts) == 0 {
		return out, nil
	}
	rows, err := tx.Query(ctx, `SELECT account_id FROM erased_accounts WHERE account_id = ANY($1)`, accts)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var a [16]byte
		if err := rows.Scan(&a); err != nil {
			return nil, err
		}
		out[a] = true
	}
	return out, rows.Err()
}

type quarantineRow struct {
	kind, id, account, reason string
	record                    any
}

func noPartition(t time.Time) string {
	return "no partition for day " + t.Format(time.DateOnly) + " (time part of the id: " + strconv.FormatInt(t.UnixMilli(), 10) + " ms)"
}

// mergeRecords keeps the higher version's state and the union of attempts.
func mergeRecords(a, b *DeliveryRecord) *DeliveryRecord {
	hi, lo := a, b
	if b.Version > a.Version {
		hi, lo = b, a
	}
	out := *hi
	have := map[int]bool{}
	for _, at := range hi.Attempts {
		have[at.Number] = true
	}
	out.Attempts = append([]Attempt(nil), hi.Attempts...)
	for _, at := range lo.Attempts {
		if !have[at.Number] {
			out.Attempts = append(out.Attempts, at)
		}
	}
	return &out
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}
