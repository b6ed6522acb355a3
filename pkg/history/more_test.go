package history

import (
	"context"
	"errors"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/pgtest"
)

func TestParkedWorkComesBackInPublishOrderAcrossThousands(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	ep, other := ids.New(ids.Endpoint, now), ids.New(ids.Endpoint, now)
	// 3,000 deliveries parked over 10 days, archived in shuffled batches.
	var recs []DeliveryRecord
	var evs []Event
	for i := 0; i < 3000; i++ {
		e := event(acctA, now.Add(-10*day).Add(time.Duration(i)*5*time.Minute), "transcript.completed", "")
		d := delivery(e, ep, StatusParked, 2)
		d.UpdateTime = e.CreateTime.Add(time.Hour)
		recs = append(recs, d)
		evs = append(evs, e)
	}
	want := make([]string, len(recs))
	for i := range recs {
		want[i] = recs[i].ID
	}
	rand.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i]; evs[i], evs[j] = evs[j], evs[i] })
	for i := 0; i < len(recs); i += 700 {
		j := min(i+700, len(recs))
		archive(t, s, Batch{Events: evs[i:j], Deliveries: recs[i:j]})
	}
	e := event(acctA, now, "transcript.completed", "")
	archive(t, s, Batch{Deliveries: []DeliveryRecord{delivery(e, other, StatusParked, 1), delivery(e, ep, StatusFailed, 1)}})

	var got []string
	var cursor Cursor
	for {
		ps, next, err := s.TakeParked(ctx, ep, cursor, 500)
		if err != nil {
			t.Fatal(err)
		}
		var refs []Ref
		for _, p := range ps {
			if p.Event == nil || p.Event.ID != p.EventID || len(p.Event.Payload) == 0 {
				t.Fatalf("%s came without its event", p.ID)
			}
			got = append(got, p.ID)
			refs = append(refs, Ref{ID: p.ID, Version: p.Version})
		}
		// Restored to Redis, then removed here; a crash before Unpark
		// would only take the same page again.
		if n, err := s.Unpark(ctx, refs); err != nil || n != len(refs) {
			t.Fatalf("unpark: %d, %v", n, err)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(got) != len(want) {
		t.Fatalf("took %d, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("position %d: %s, want %s (publish order)", i, got[i], want[i])
		}
	}
	if ps, _, _ := s.TakeParked(ctx, ep, "", 10); len(ps) != 0 {
		t.Fatalf("%d parked left after unpark", len(ps))
	}
	if ps, _, _ := s.TakeParked(ctx, other, "", 10); len(ps) != 1 || ps[0].Event != nil {
		t.Fatalf("the other endpoint's parked delivery: %+v", ps)
	}
}

func TestParkedPastRetentionEndsFailedWithThatReason(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	ep := ids.New(ids.Endpoint, now)
	old := delivery(event(acctA, now.Add(-25*day), "transcript.completed", ""), ep, StatusParked, 3)
	old.UpdateTime = now.Add(-21 * day)
	young := delivery(event(acctA, now.Add(-2*day), "transcript.completed", ""), ep, StatusParked, 3)
	young.UpdateTime = now.Add(-2 * day)
	archive(t, s, Batch{Deliveries: []DeliveryRecord{old, young}})
	n, err := s.ExpireParked(ctx, now.Add(-20*day))
	if err != nil || n != 1 {
		t.Fatalf("expired %d, %v", n, err)
	}
	d, _, _ := s.GetDelivery(ctx, acctA, old.ID)
	if d.Status != StatusFailed || d.LastError != ExpiredReason || d.Version != 3 {
		t.Fatalf("expired delivery: %s %q v%d", d.Status, d.LastError, d.Version)
	}
	d, _, _ = s.GetDelivery(ctx, acctA, young.ID)
	if d.Status != StatusParked {
		t.Fatalf("young parked delivery is %s", d.Status)
	}
	failed, _, _ := s.ListDeliveries(ctx, acctA, DeliveryQuery{Statuses: []Status{StatusFailed}})
	if len(failed) != 1 || failed[0].ID != old.ID {
		t.Fatalf("failed listing: %+v", failed)
	}
}

func TestReadsAnswerUnavailableWhilePostgresIsDownAndRecover(t *testing.T) {
	pg := pgtest.StartServer(t)
	cfg := testConfig()
	cfg.ConnectTimeout = time.Second
	s, err := Open(context.Background(), pg.URL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ep := ids.New(ids.Endpoint, now)
	e := event(acctA, now, "transcript.completed", "")
	archive(t, s, Batch{Events: []Event{e}, Deliveries: []DeliveryRecord{delivery(e, ep, StatusSucceeded, 1)}})

	pgtest.Kill(t, pg)
	downAt := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	checks := map[string]error{}
	_, checks["GetEvent"] = s.GetEvent(ctx, acctA, e.ID)
	_, _, checks["ListDeliveries"] = s.ListDeliveries(ctx, acctA, DeliveryQuery{})
	_, _, checks["GetDelivery"] = s.GetDelivery(ctx, acctA, ids.Derive(ids.Delivery, e.ID, ep))
	_, checks["Archive"] = s.Archive(ctx, Batch{Events: []Event{event(acctA, now, "x", "")}})
	checks["Ping"] = s.Ping(ctx)
	t.Logf("five calls with PostgreSQL down answered in %s", time.Since(downAt).Round(time.Millisecond))
	for op, err := range checks {
		if !errors.Is(err, apierr.ErrUnavailable) || !strings.Contains(err.Error(), "history store unreachable") {
			t.Errorf("%s with PostgreSQL down: %v (want ErrUnavailable, \"history store unreachable\")", op, err)
		}
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := s.GetEvent(context.Background(), acctA, e.ID)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after PostgreSQL came back: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestStartUpRefusesAHistoryRetentionShorterThanParkedWork(t *testing.T) {
	if err := CheckRetention(720*time.Hour, 720*time.Hour, 3*time.Hour); err == nil {
		t.Fatal("720h history with 720h parked accepted")
	}
	if err := CheckRetention(720*time.Hour+27*time.Hour, 720*time.Hour, 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Retention = cfg.ParkedRetention
	if _, err := Open(context.Background(), "postgres://127.0.0.1:1/none", cfg); err == nil || !strings.Contains(err.Error(), "HISTORY_RETENTION") {
		t.Fatalf("Open: %v", err)
	}
}

func TestAnOlderReleaseRunsOnANewerSchema(t *testing.T) {
	url := srv.NewDatabase(t)
	s, err := Open(context.Background(), url, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	// A newer release added a migration (expand only).
	if _, err := s.Pool().Exec(context.Background(), `ALTER TABLE deliveries ADD COLUMN future_field text;
		INSERT INTO history_schema_migrations (version_id, is_applied) VALUES (99999, true)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(context.Background(), url, testConfig())
	if err != nil {
		t.Fatalf("this release on the newer schema: %v", err)
	}
	defer s.Close()
	e := event(acctA, now, "transcript.completed", "")
	archive(t, s, Batch{Deliveries: []DeliveryRecord{delivery(e, ids.New(ids.Endpoint, now), StatusSucceeded, 1)}})
}

func TestSeriesComesFromRollups(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	ep1, ep2 := ids.New(ids.Endpoint, now), ids.New(ids.Endpoint, now)
	minute := now.Add(-time.Hour).Truncate(time.Minute)
	var b Batch
	for i := 0; i < 100; i++ {
		e := event(acctA, minute.Add(time.Duration(i)*100*time.Millisecond), "transcript.completed", "")
		d := delivery(e, ep1, StatusSucceeded, 1)
		d.Attempts[0].Latency = time.Duration(i+1) * time.Millisecond // 1..100 ms
		b.Deliveries = append(b.Deliveries, d)
		d2 := delivery(e, ep2, StatusFailed, 1)
		d2.Attempts[0].StatusCode, d2.Attempts[0].ErrorType, d2.Attempts[0].Latency = 0, "timeout", 10*time.Second
		b.Deliveries = append(b.Deliveries, d2)
	}
	archive(t, s, b)
	archive(t, s, b) // again: not counted twice
	all, err := s.Series(ctx, acctA, "", now.Add(-24*time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 24*60 {
		t.Fatalf("%d points, want one per minute", len(all))
	}
	var p Point
	for _, x := range all {
		if x.Minute.Equal(minute) {
			p = x
		}
	}
	if p.OK != 100 || p.NetworkError != 100 || p.HTTPError != 0 {
		t.Fatalf("overall minute: %+v", p)
	}
	one, _ := s.Series(ctx, acctA, ep1, minute, minute.Add(time.Minute))
	if len(one) != 1 || one[0].OK != 100 || one[0].NetworkError != 0 {
		t.Fatalf("endpoint series: %+v", one)
	}
	if one[0].P50 < 25*time.Millisecond || one[0].P50 > 100*time.Millisecond || one[0].P99 < 50*time.Millisecond || one[0].P99 > 100*time.Millisecond {
		t.Fatalf("p50 %s p99 %s for latencies 1..100 ms", one[0].P50, one[0].P99)
	}
	t.Logf("endpoint minute: p50 %s p99 %s; overall p99 %s", one[0].P50, one[0].P99, p.P99)
}

func TestEraseRemovesOneAccountInEveryTable(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	ep := ids.New(ids.Endpoint, now)
	var b Batch
	for _, acct := range []string{acctA, acctB} {
		for i := 0; i < 20; i++ {
			e := event(acct, now.Add(-time.Duration(i)*day), "transcript.completed", "up")
			b.Events = append(b.Events, e)
			b.Deliveries = append(b.Deliveries, delivery(e, ep, StatusSucceeded, 1))
		}
	}
	old := event(acctA, now.Add(-300*day), "x", "")
	b.Events = append(b.Events, old)
	archive(t, s, b)
	if err := s.Erase(ctx, acctA); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"events", "deliveries", "attempts", "delivery_rollups", "quarantine"} {
		n := count(t, s, "SELECT count(*) FROM "+q)
		want := map[string]int{"events": 20, "deliveries": 20, "attempts": 20, "quarantine": 0}[q]
		if q == "delivery_rollups" {
			continue
		}
		if n != want {
			t.Errorf("%s: %d rows left, want %d (account B's)", q, n, want)
		}
	}
	if n := count(t, s, "SELECT count(*) FROM delivery_rollups WHERE account_id = $1", mustID(prefixAccount, acctA)); n != 0 {
		t.Errorf("%d rollups of the erased account", n)
	}
}

// A move from Redis that was in flight while the account was erased (its
// records read from Redis before the erase, archived after it) must not
// bring them back; they count as held, so the archiver deletes them from
// Redis. The same for audit entries.
func TestArchiveAfterEraseKeepsNothingOfTheAccount(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	ep := ids.New(ids.Endpoint, now)
	var b Batch
	for _, acct := range []string{acctA, acctB} {
		e := event(acct, now, "transcript.completed", "up")
		b.Events = append(b.Events, e)
		b.Deliveries = append(b.Deliveries, delivery(e, ep, StatusSucceeded, 1))
	}
	if err := s.Erase(ctx, acctA); err != nil {
		t.Fatal(err)
	}
	res, err := s.Archive(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 2 || len(res.Deliveries) != 2 {
		t.Fatalf("held %d events, %d deliveries; want 2 and 2 (the erased account's count as held)", len(res.Events), len(res.Deliveries))
	}
	a := mustID(prefixAccount, acctA)
	for _, q := range []string{"events", "deliveries", "delivery_rollups"} {
		if n := count(t, s, "SELECT count(*) FROM "+q+" WHERE account_id = $1", a); n != 0 {
			t.Errorf("%s: %d rows of the erased account", q, n)
		}
		if n := count(t, s, "SELECT count(*) FROM "+q+" WHERE account_id = $1", mustID(prefixAccount, acctB)); n != 1 {
			t.Errorf("%s: %d rows of the other account, want 1", q, n)
		}
	}
	if n := count(t, s, "SELECT count(*) FROM attempts"); n != 1 {
		t.Errorf("attempts: %d rows, want the other account's 1", n)
	}
	entry := AuditEntry{ID: ids.New("aud_", now), AccountID: acctA, Time: now, ActorType: "admin", Action: "endpoint.update", Resource: ep}
	if n, err := s.ArchiveAudit(ctx, []AuditEntry{entry}); err != nil || n != 0 {
		t.Fatalf("ArchiveAudit of an erased account = %d, %v; want 0, nil", n, err)
	}
	if n := count(t, s, "SELECT count(*) FROM audit_log"); n != 0 {
		t.Errorf("audit_log: %d rows of the erased account", n)
	}
	// The record of the erasure is the account id alone, pruned with the
	// expired days.
	if n := count(t, s, "SELECT count(*) FROM erased_accounts WHERE account_id = $1", a); n != 1 {
		t.Fatalf("erased_accounts: %d rows, want 1", n)
	}
	if _, err := s.DropExpired(ctx, time.Now().Add(s.cfg.Retention+2*day)); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "SELECT count(*) FROM erased_accounts"); n != 0 {
		t.Fatalf("erased_accounts: %d rows after the retention, want 0", n)
	}
}

func mustID(prefix, id string) [16]byte {
	b, ok := idBytes(prefix, id)
	if !ok {
		panic(id)
	}
	return b
}

func TestIDsRoundTrip(t *testing.T) {
	for i := 0; i < 1000; i++ {
		id := ids.New(ids.Event, time.UnixMilli(rand.Int63n(1<<47)))
		b, ok := idBytes(prefixEvent, id)
		if !ok || idString(prefixEvent, b) != id {
			t.Fatalf("%s: %v %s", id, ok, idString(prefixEvent, b))
		}
		want, _ := ids.Time(id)
		if !idTime(b).Equal(want) {
			t.Fatalf("%s: time %s, want %s", id, idTime(b), want)
		}
	}
	for _, bad := range []string{"evt_", "evt_8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "dlv_01J0000000000000000000000U", "evt_01J000000000000000000000"} {
		if _, ok := idBytes(prefixEvent, bad); ok {
			t.Fatalf("%q accepted", bad)
		}
	}
}

// TestResumeParkedHoldsOffANewerCopyUntilThePageIsBack: while ResumeParked
// brings a page back (its restore callback runs), the archiver's upsert of
// a newer copy of one of its deliveries waits; it lands once the page is
// unparked, as a new row. Were it to land during the restore, the resume
// would revive the old copy of a delivery whose newer copy had already
// ended: sent again, its versions forked from history's.
func TestResumeParkedHoldsOffANewerCopyUntilThePageIsBack(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	ep := ids.New(ids.Endpoint, now)
	e := event(acctA, now.Add(-time.Hour), "transcript.completed", "")
	parked := delivery(e, ep, StatusParked, 2)
	archive(t, s, Batch{Events: []Event{e}, Deliveries: []DeliveryRecord{parked}})
	newer := delivery(e, ep, StatusSucceeded, 5)

	var arch *concurrentArchive
	_, taken, err := s.ResumeParked(ctx, ep, "", 10, func(ps []Parked) ([]Ref, error) {
		if len(ps) != 1 || ps[0].ID != parked.ID || ps[0].Version != 2 {
			t.Errorf("page = %+v; want %s at version 2", ps, parked.ID)
		}
		arch = startArchive(s, Batch{Deliveries: []DeliveryRecord{newer}})
		return []Ref{{ID: parked.ID, Version: 2}}, nil
	})
	if err != nil || taken != 1 {
		t.Fatalf("ResumeParked = %d, %v", taken, err)
	}
	if arch.landedEarly {
		t.Fatal("the newer copy's archive landed while the page was being restored")
	}
	if err := arch.wait(); err != nil {
		t.Fatal(err)
	}
	d, _, err := s.GetDelivery(ctx, acctA, parked.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != 5 || d.Status != StatusSucceeded {
		t.Errorf("history holds version %d, %s; want the newer copy (5, succeeded)", d.Version, d.Status)
	}
	if ps, _, _ := s.TakeParked(ctx, ep, "", 10); len(ps) != 0 {
		t.Errorf("%d parked left after the resume", len(ps))
	}
}

// TestHoldDeliveriesHoldsOffANewerCopy: a retry or a replay reads and
// restores inside HoldDeliveries; the archiver's upsert of a newer copy of
// a held delivery waits until it returns, then lands.
func TestHoldDeliveriesHoldsOffANewerCopy(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	ep := ids.New(ids.Endpoint, now)
	e := event(acctA, now.Add(-time.Hour), "transcript.completed", "")
	failed := delivery(e, ep, StatusFailed, 3)
	archive(t, s, Batch{Events: []Event{e}, Deliveries: []DeliveryRecord{failed}})
	var arch *concurrentArchive
	err := s.HoldDeliveries(ctx, []string{failed.ID, "dlv_not-an-id"}, func(h Held) error {
		arch = startArchive(s, Batch{Deliveries: []DeliveryRecord{delivery(e, ep, StatusSucceeded, 6)}})
		d, _, err := h.GetDelivery(ctx, acctA, failed.ID)
		if err != nil || d.Version != 3 {
			t.Errorf("read while held: %+v, %v; want version 3", d, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if arch.landedEarly {
		t.Fatal("the newer copy's archive landed while the delivery was held")
	}
	if err := arch.wait(); err != nil {
		t.Fatal(err)
	}
	if d, _, err := s.GetDelivery(ctx, acctA, failed.ID); err != nil || d.Version != 6 {
		t.Errorf("after: %+v, %v; want version 6", d, err)
	}
	sentinel := errors.New("fn failed")
	if err := s.HoldDeliveries(ctx, []string{failed.ID}, func(Held) error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("HoldDeliveries returned %v, want fn's error", err)
	}
}

// TestArchiveTellsAForkedCopyFromAStaleOne: a copy archived at a lower
// version than history's is stale (Newer 0: its Redis copy may go) when
// history's copy was updated after it, and another copy (Newer set) when
// it was updated after history's.
func TestArchiveTellsAForkedCopyFromAStaleOne(t *testing.T) {
	s := open(t)
	ep := ids.New(ids.Endpoint, now)
	e := event(acctA, now.Add(-time.Hour), "transcript.completed", "")
	held := delivery(e, ep, StatusFailed, 5)
	held.UpdateTime = now.Add(-30 * time.Minute)
	archive(t, s, Batch{Events: []Event{e}, Deliveries: []DeliveryRecord{held}})
	for _, tc := range []struct {
		name    string
		updated time.Time
		newer   int64
	}{
		{"stale (updated before history's copy)", now.Add(-40 * time.Minute), 0},
		{"forked (updated after history's copy)", now.Add(-10 * time.Minute), 5},
	} {
		c := delivery(e, ep, StatusSucceeded, 3)
		c.UpdateTime = tc.updated
		res := archive(t, s, Batch{Deliveries: []DeliveryRecord{c}})
		if len(res.Deliveries) != 1 || res.Deliveries[0].Applied || res.Deliveries[0].Newer != tc.newer {
			t.Errorf("%s: %+v; want not applied, Newer %d", tc.name, res.Deliveries, tc.newer)
		}
	}
}

// concurrentArchive is an Archive started in the background by a test
// that holds rows locked: landedEarly says whether it finished within
// 500 ms of its start (it should wait for the lock).
type concurrentArchive struct {
	landedEarly bool
	done        chan error
}

func startArchive(s *Store, b Batch) *concurrentArchive {
	a := &concurrentArchive{done: make(chan error, 1)}
	go func() {
		_, err := s.Archive(context.Background(), b)
		a.done <- err
	}()
	select {
	case err := <-a.done:
		a.landedEarly = true
		a.done <- err
	case <-time.After(500 * time.Millisecond):
	}
	return a
}

func (a *concurrentArchive) wait() error { return <-a.done }

// TestAHoldTakesOneConnection: what is read inside a hold (a resume's page
// with its events, a retry's delivery and events) is read on the hold's
// own transaction. With a pool of one connection both still finish: a
// hold that waited for a second connection while holding the first would
// hang whenever as many holds as the pool has connections ran at once.
func TestAHoldTakesOneConnection(t *testing.T) {
	url := srv.NewDatabase(t)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	s, err := Open(context.Background(), url+sep+"pool_max_conns=1", testConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ep := ids.New(ids.Endpoint, now)
	e := event(acctA, now.Add(-time.Hour), "transcript.completed", "")
	parked := delivery(e, ep, StatusParked, 2)
	archive(t, s, Batch{Events: []Event{e}, Deliveries: []DeliveryRecord{parked}})
	err = s.HoldDeliveries(ctx, []string{parked.ID}, func(h Held) error {
		if _, _, err := h.GetDelivery(ctx, acctA, parked.ID); err != nil {
			return err
		}
		_, err := h.GetEvents(ctx, acctA, []string{e.ID})
		return err
	})
	if err != nil {
		t.Fatalf("HoldDeliveries: %v", err)
	}
	_, taken, err := s.ResumeParked(ctx, ep, "", 10, func(ps []Parked) ([]Ref, error) {
		if len(ps) != 1 || ps[0].Event == nil {
			t.Errorf("page %+v; want the parked delivery with its event", ps)
		}
		return nil, nil
	})
	if err != nil || taken != 1 {
		t.Fatalf("ResumeParked = %d, %v", taken, err)
	}
}
