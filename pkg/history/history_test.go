package history

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/pgtest"
)

var srv *pgtest.Server

func TestMain(m *testing.M) {
	var err error
	srv, err = pgtest.Launch()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	srv.Close()
	os.Exit(code)
}

// now is the tests' clock: partitions exist from now-30d to now+2d.
var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func testConfig() Config {
	return Config{
		Retention: 30 * day, ParkedRetention: 20 * day, ScheduleTotal: 3 * time.Hour,
		Now:    func() time.Time { return now },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func open(t testing.TB, mod ...func(*Config)) *Store {
	t.Helper()
	cfg := testConfig()
	for _, f := range mod {
		f(&cfg)
	}
	s, err := Open(context.Background(), srv.NewDatabase(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

var (
	acctA = ids.New(ids.Account, now)
	acctB = ids.New(ids.Account, now)
)

func event(acct string, at time.Time, typ, upload string) Event {
	return Event{
		ID: ids.New(ids.Event, at), AccountID: acct, Type: typ, UploadID: upload, CreateTime: at,
		Payload:       []byte(`{"type":"` + typ + `","data":{"uploadId":"` + upload + `","status":"done"}}`),
		TraceID:       "4bf92f3577b34da6a3ce929d0e0e4736",
		DeliveryCount: 1,
	}
}

func delivery(e Event, endpoint string, st Status, version int64) DeliveryRecord {
	start := e.CreateTime.Add(50 * time.Millisecond)
	code, et := 200, ""
	if st != StatusSucceeded {
		code, et = 503, "http_status"
	}
	return DeliveryRecord{
		Delivery: Delivery{
			ID: ids.Derive(ids.Delivery, e.ID, endpoint), EventID: e.ID, EndpointID: endpoint, AccountID: e.AccountID,
			EventType: e.Type, UploadID: e.UploadID, Status: st, Version: version, Attempts: 1,
			FirstAttempt: start, CreateTime: e.CreateTime, UpdateTime: start.Add(120 * time.Millisecond),
			TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", LastCode: code,
		},
		Attempts: []Attempt{{
			Number: 1, Start: start, StatusCode: code, Latency: 120 * time.Millisecond, ErrorType: et,
			Response: `{"ok":true}`, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
			URL: "https://receiver.example.com/hooks",
			RequestHeaders: map[string]string{
				"Content-Type": "application/json", "User-Agent": "VoxScriber-Webhooks/1", "X-Webhook-Attempt": "1",
				"X-Webhook-Id": e.ID, "X-Webhook-Event": e.Type, "X-Webhook-Timestamp": "1764590400",
				"X-Webhook-Signature": "v1,K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=",
			},
		}},
	}
}

func archive(t testing.TB, s *Store, b Batch) Result {
	t.Helper()
	r, err := s.Archive(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func count(t testing.TB, s *Store, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := s.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestArchivedRecordsReadBackAsWritten(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	ep := ids.New(ids.Endpoint, now)
	e := event(acctA, now.Add(-time.Hour), "transcript.completed", "up_1")
	d := delivery(e, ep, StatusSucceeded, 3)
	archive(t, s, Batch{Events: []Event{e}, Deliveries: []DeliveryRecord{d}})

	got, err := s.GetEvent(ctx, acctA, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.AccountID != acctA || string(got.Payload) != string(e.Payload) || got.TraceID != e.TraceID ||
		!got.CreateTime.Equal(e.CreateTime) || got.UploadID != "up_1" || got.Type != e.Type {
		t.Fatalf("event read back as %+v", got)
	}
	gd, atts, err := s.GetDelivery(ctx, acctA, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if gd.ID != d.ID || gd.EventID != e.ID || gd.EndpointID != ep || gd.Version != 3 || gd.Status != StatusSucceeded || gd.TraceParent != d.TraceParent {
		t.Fatalf("delivery read back as %+v", gd)
	}
	if len(atts) != 1 {
		t.Fatalf("attempts: %+v", atts)
	}
	a := atts[0]
	if a.SpanID != "00f067aa0ba902b7" || a.TraceID != e.TraceID || a.Latency != 120*time.Millisecond || a.StatusCode != 200 || a.URL == "" {
		t.Fatalf("attempt read back as %+v", a)
	}
	if _, ok := a.RequestHeaders["X-Webhook-Signature"]; !ok || len(a.RequestHeaders) != 2 {
		t.Fatalf("headers kept: %v (want signature and timestamp)", a.RequestHeaders)
	}
	if _, err := s.GetEvent(ctx, acctB, e.ID); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("another account's event: %v", err)
	}
	if _, _, err := s.GetDelivery(ctx, acctB, d.ID); err == nil {
		t.Fatal("another account's delivery was found")
	}
}

func TestAnOlderVersionNeverOverwritesANewerOne(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	ep := ids.New(ids.Endpoint, now)
	e := event(acctA, now.Add(-time.Hour), "transcript.completed", "")
	newer := delivery(e, ep, StatusSucceeded, 7)
	older := delivery(e, ep, StatusFailed, 5)
	older.LastError = "stale"

	r := archive(t, s, Batch{Deliveries: []DeliveryRecord{newer}})
	if !r.Deliveries[0].Applied {
		t.Fatal("first write not applied")
	}
	r = archive(t, s, Batch{Deliveries: []DeliveryRecord{older}})
	if len(r.Deliveries) != 1 || r.Deliveries[0].Applied {
		t.Fatalf("older version: %+v (want listed, not applied)", r.Deliveries)
	}
	got, _, err := s.GetDelivery(ctx, acctA, newer.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 7 || got.Status != StatusSucceeded {
		t.Fatalf("stored %d/%s, want 7/succeeded", got.Version, got.Status)
	}
	// Both versions in one batch: the newer wins whatever the order.
	e2 := event(acctA, now.Add(-time.Hour), "transcript.completed", "")
	a, b := delivery(e2, ep, StatusFailed, 2), delivery(e2, ep, StatusSucceeded, 9)
	archive(t, s, Batch{Deliveries: []DeliveryRecord{b, a}})
	got, _, _ = s.GetDelivery(ctx, acctA, a.ID)
	if got.Version != 9 {
		t.Fatalf("in one batch stored version %d, want 9", got.Version)
	}
	// A newer version replaces.
	newer.Version, newer.Status = 8, StatusFailed
	archive(t, s, Batch{Deliveries: []DeliveryRecord{newer}})
	got, _, _ = s.GetDelivery(ctx, acctA, newer.ID)
	if got.Version != 8 || got.Status != StatusFailed {
		t.Fatalf("newer version not applied: %d/%s", got.Version, got.Status)
	}
}

func TestArchivingAgainChangesNothingAndListsNothingTwice(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	ep := ids.New(ids.Endpoint, now)
	var b Batch
	for i := 0; i < 50; i++ {
		e := event(acctA, now.Add(-time.Duration(i)*time.Minute), "transcript.completed", "")
		b.Events = append(b.Events, e)
		b.Deliveries = append(b.Deliveries, delivery(e, ep, StatusSucceeded, 4))
	}
	first := archive(t, s, b)
	if first.Attempts != 50 || len(first.Events) != 50 || len(first.Deliveries) != 50 {
		t.Fatalf("first archive: %d attempts, %d events, %d deliveries", first.Attempts, len(first.Events), len(first.Deliveries))
	}
	for i := 0; i < 3; i++ {
		again := archive(t, s, b)
		if again.Attempts != 0 {
			t.Fatalf("re-archive wrote %d attempts", again.Attempts)
		}
	}
	ds, next, err := s.ListDeliveries(ctx, acctA, DeliveryQuery{PageSize: 1000})
	if err != nil || next != "" || len(ds) != 50 {
		t.Fatalf("list: %d deliveries, next %q, err %v", len(ds), next, err)
	}
	seen := map[string]bool{}
	for _, d := range ds {
		if seen[d.ID] {
			t.Fatalf("%s listed twice", d.ID)
		}
		seen[d.ID] = true
	}
	if n := count(t, s, `SELECT count(*) FROM events`); n != 50 {
		t.Fatalf("%d events stored", n)
	}
	if n := count(t, s, `SELECT count(*) FROM attempts`); n != 50 {
		t.Fatalf("%d attempts stored", n)
	}
	if n := count(t, s, `SELECT sum(ok)::int FROM delivery_rollups`); n != 50 {
		t.Fatalf("rollups count %d successes, want 50 (re-archiving must not count again)", n)
	}
}

func TestRowsOutsidePartitionsGoToQuarantineWithoutFailingTheBatch(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	s := open(t, func(c *Config) { c.Meter = mp.Meter("test") })
	ctx := context.Background()
	ep := ids.New(ids.Endpoint, now)
	good := event(acctA, now, "transcript.completed", "")
	ancient := event(acctA, now.Add(-400*day), "transcript.completed", "")
	future := event(acctA, now.Add(90*day), "transcript.completed", "")
	bad := event(acctA, now, "transcript.completed", "")
	bad.ID = "evt_not-an-id"
	dl := delivery(ancient, ep, StatusSucceeded, 1)
	r := archive(t, s, Batch{
		Events:     []Event{good, ancient, future, bad},
		Deliveries: []DeliveryRecord{delivery(good, ep, StatusSucceeded, 1), dl},
	})
	if len(r.Events) != 1 || len(r.Deliveries) != 1 || len(r.Quarantined) != 4 {
		t.Fatalf("result: %+v", r)
	}
	if n := count(t, s, `SELECT count(*) FROM quarantine`); n != 4 {
		t.Fatalf("%d quarantined rows, want 4", n)
	}
	var rec string
	if err := s.Pool().QueryRow(ctx, `SELECT record->>'Type' FROM quarantine WHERE record_id = $1`, ancient.ID).Scan(&rec); err != nil || rec != ancient.Type {
		t.Fatalf("quarantined record lost its content: %q %v", rec, err)
	}
	if _, err := s.GetEvent(ctx, acctA, good.ID); err != nil {
		t.Fatalf("the batch's good event: %v", err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	var counted int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "history.quarantined_rows" {
				for _, dp := range sum.DataPoints {
					counted += dp.Value
				}
			}
		}
	}
	if counted != 4 {
		t.Fatalf("history.quarantined_rows = %d, want 4", counted)
	}
	// Again: the batch commits and lists its quarantined record.
	if r := archive(t, s, Batch{Events: []Event{ancient}}); len(r.Quarantined) != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestRetentionDropsExpiredDaysAndNothingElse(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	ep := ids.New(ids.Endpoint, now)
	var b Batch
	for d := 0; d <= 30; d++ {
		e := event(acctA, now.Add(-time.Duration(d)*day), "transcript.completed", "")
		b.Events = append(b.Events, e)
		b.Deliveries = append(b.Deliveries, delivery(e, ep, StatusSucceeded, 1))
	}
	archive(t, s, b)
	// Nothing is expired yet: the oldest day still overlaps the window.
	if dropped, err := s.DropExpired(ctx, now); err != nil || len(dropped) != 0 {
		t.Fatalf("dropped %v, %v", dropped, err)
	}
	later := now.Add(2 * day)
	dropped, err := s.DropExpired(ctx, later)
	if err != nil {
		t.Fatal(err)
	}
	cutoff := later.Add(-30 * day)
	for _, d := range dropped {
		if d.Add(day).After(cutoff) {
			t.Fatalf("dropped %s, which ends after the cutoff %s", d, cutoff)
		}
	}
	if len(dropped) != 2 {
		t.Fatalf("dropped %v, want the 2 days now past retention", dropped)
	}
	for i, e := range b.Events {
		_, err := s.GetEvent(ctx, acctA, e.ID)
		tm, _ := ids.Time(e.ID)
		expired := !dayOf(tm).Add(day).After(cutoff)
		if expired != (err != nil) {
			t.Fatalf("event %d (%s): expired=%v, read err=%v", i, tm, expired, err)
		}
	}
	if n := count(t, s, `SELECT count(*) FROM deliveries`); n != 29 {
		t.Fatalf("%d deliveries left, want 29", n)
	}
	// Archiving into a dropped day quarantines instead of failing.
	if r := archive(t, s, Batch{Events: []Event{b.Events[30]}}); len(r.Quarantined) != 1 {
		t.Fatalf("%+v", r)
	}
}

func TestPaginationIsStableWhileRowsArrive(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	ep := ids.New(ids.Endpoint, now)
	var all []DeliveryRecord
	batch := func(n int, around time.Time) {
		var b Batch
		for i := 0; i < n; i++ {
			e := event(acctA, around.Add(-time.Duration(rand.Intn(int(3*day)))), "transcript.completed", "")
			d := delivery(e, ep, StatusSucceeded, 1)
			b.Deliveries = append(b.Deliveries, d)
			all = append(all, d)
		}
		archive(t, s, b)
	}
	batch(500, now)
	seen := map[string]bool{}
	var last string
	var cursor Cursor
	for page := 0; ; page++ {
		ds, next, err := s.ListDeliveries(ctx, acctA, DeliveryQuery{EndpointID: ep, PageSize: 37, After: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if seen[d.ID] {
				t.Fatalf("page %d repeats %s", page, d.ID)
			}
			if last != "" && d.ID >= last {
				t.Fatalf("page %d out of order: %s after %s", page, d.ID, last)
			}
			seen[d.ID] = true
			last = d.ID
		}
		if next == "" {
			break
		}
		cursor = next
		// Rows arrive between pages: newer ones and, as the archiver
		// catches up, older ones; existing rows get new versions.
		batch(20, now.Add(-time.Duration(page)*time.Hour))
		up := all[rand.Intn(500)]
		up.Version++
		archive(t, s, Batch{Deliveries: []DeliveryRecord{up}})
	}
	// No skip: every row that existed when the listing began was seen.
	for _, d := range all[:500] {
		if !seen[d.ID] {
			t.Fatalf("%s skipped", d.ID)
		}
	}
}

// recorder remembers the queries sent since its last reset.
type recorder struct {
	mu      sync.Mutex
	queries []recorded
}

type recorded struct {
	sql  string
	args []any
}

func (r *recorder) add(sql string, args []any) {
	r.mu.Lock()
	r.queries = append(r.queries, recorded{sql, args})
	r.mu.Unlock()
}

func (r *recorder) take() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queries
	r.queries = nil
	return q
}

func (r *recorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.add(d.SQL, d.Args)
	return ctx
}

func (r *recorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *recorder) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (r *recorder) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.add(d.SQL, d.Args)
}

func (r *recorder) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}
