package eventstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/redistest"
)

func TestPayloadMany(t *testing.T) {
	srv := redistest.Start(t)
	s := New(srv.Client, time.Hour)
	ctx := context.Background()
	evs := []*Event{
		{ID: "evt_a", AccountID: "acct_1", Type: "upload.completed", Payload: []byte(`{"a":1}`), CreateTime: time.Now()},
		{ID: "evt_b", AccountID: "acct_1", Type: "upload.completed", Payload: []byte(`{"b":2}`), CreateTime: time.Now()},
	}
	if found, err := s.CreateMany(ctx, evs); err != nil || found[0] != nil || found[1] != nil {
		t.Fatal(found, err)
	}
	got, errs := s.PayloadMany(ctx, []string{"evt_b", "evt_missing", "evt_a"})
	if string(got[0]) != `{"b":2}` || errs[0] != nil || string(got[2]) != `{"a":1}` || errs[2] != nil {
		t.Errorf("found: %q %v, %q %v", got[0], errs[0], got[2], errs[2])
	}
	if got[1] != nil || !errors.Is(errs[1], apierr.ErrNotFound) {
		t.Errorf("missing: %q, %v; want NotFound", got[1], errs[1])
	}
	srv.Stop()
	if _, errs := s.PayloadMany(ctx, []string{"evt_a"}); errs[0] == nil {
		t.Error("no error with Redis stopped")
	}
}

// TestAccountsReadsPayloadsInTheSameTripWhenAsked: the account of each
// event, "" for one not stored; with payloads each stored one's payload
// byte for byte (nil for one not stored); an unreachable Redis is an error.
func TestAccountsReadsPayloadsInTheSameTripWhenAsked(t *testing.T) {
	srv := redistest.Start(t)
	s := New(srv.Client, time.Hour)
	ctx := context.Background()
	evs := []*Event{
		{ID: "evt_a", AccountID: "acct_1", Type: "upload.completed", Payload: []byte(`{"a":"\u00e9"}`), CreateTime: time.Now()},
		{ID: "evt_b", AccountID: "acct_2", Type: "upload.completed", Payload: []byte(`{"b":2}`), CreateTime: time.Now()},
	}
	if _, err := s.CreateMany(ctx, evs); err != nil {
		t.Fatal(err)
	}
	ids := []string{"evt_b", "evt_missing", "evt_a"}
	accts, bodies, err := s.Accounts(ctx, ids, false)
	if err != nil || fmt.Sprint(accts) != "[acct_2  acct_1]" || bodies != nil {
		t.Errorf("without payloads: %q, %q, %v", accts, bodies, err)
	}
	accts, bodies, err = s.Accounts(ctx, ids, true)
	if err != nil || fmt.Sprint(accts) != "[acct_2  acct_1]" || len(bodies) != 3 ||
		string(bodies[0]) != `{"b":2}` || bodies[1] != nil || string(bodies[2]) != `{"a":"\u00e9"}` {
		t.Errorf("with payloads: %q, %q, %v", accts, bodies, err)
	}
	srv.Stop()
	if _, _, err := s.Accounts(ctx, ids, true); err == nil {
		t.Error("no error with Redis stopped")
	}
}

// TestStoringAnEventIsCreateOnly: of many concurrent stores of one id, each
// with its own body and account, exactly one stores its event; every other
// gets that stored event back and changes nothing, not even a fan-out
// already recorded. The hash always carries its expiry.
func TestStoringAnEventIsCreateOnly(t *testing.T) {
	srv := redistest.Start(t)
	s := New(srv.Client, time.Hour)
	ctx := context.Background()
	const n = 32
	found := make([]*Event, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			e := &Event{ID: "evt_1", AccountID: fmt.Sprintf("acct_%d", i%2), Type: "upload.completed",
				Payload: fmt.Appendf(nil, `{"n":%d}`, i), CreateTime: time.Now()}
			var got []*Event
			got, errs[i] = s.CreateMany(ctx, []*Event{e})
			if errs[i] == nil {
				found[i] = got[0]
			}
		})
	}
	close(start)
	wg.Wait()
	stored, err := s.Get(ctx, "evt_1")
	if err != nil {
		t.Fatal(err)
	}
	created := 0
	for i := range n {
		switch {
		case errs[i] != nil:
			t.Fatalf("store %d: %v", i, errs[i])
		case found[i] == nil:
			created++
			if want := fmt.Sprintf(`{"n":%d}`, i); string(stored.Payload) != want || stored.AccountID != fmt.Sprintf("acct_%d", i%2) {
				t.Errorf("stored %s of %s, want the creator's %s", stored.Payload, stored.AccountID, want)
			}
		case string(found[i].Payload) != string(stored.Payload) || found[i].AccountID != stored.AccountID:
			t.Errorf("store %d was answered %s of %s, want the stored %s of %s", i, found[i].Payload, found[i].AccountID, stored.Payload, stored.AccountID)
		}
	}
	if created != 1 {
		t.Fatalf("%d stores created the event, want 1", created)
	}
	if ttl := srv.Client.PTTL(ctx, Key("evt_1")).Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("expiry %v", ttl)
	}

	// A later store leaves the recorded fan-out alone; Put says why it did nothing.
	if err := s.MarkFannedOut(ctx, "evt_1", 3); err != nil {
		t.Fatal(err)
	}
	again := &Event{ID: "evt_1", AccountID: stored.AccountID, Type: "upload.completed", Payload: []byte(`{"late":1}`)}
	got, err := s.CreateMany(ctx, []*Event{again})
	if err != nil || got[0] == nil || !got[0].FanoutDone || got[0].DeliveryCount != 3 || string(got[0].Payload) != string(stored.Payload) {
		t.Fatalf("late store answered %+v, %v", got, err)
	}
	if err := s.Put(ctx, again); !errors.Is(err, apierr.ErrAlreadyExists) {
		t.Errorf("Put of a stored id: %v, want AlreadyExists", err)
	}
	if e, _ := s.Get(ctx, "evt_1"); e == nil || !e.FanoutDone || string(e.Payload) != string(stored.Payload) {
		t.Errorf("after the late stores: %+v", e)
	}

	// A fragment that is no event (no account) is replaced, with an expiry;
	// an empty script cache (a restarted Redis) is no failure.
	if err := srv.Client.HSet(ctx, Key("evt_2"), "fanout", 1).Err(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	frag := &Event{ID: "evt_2", AccountID: "acct_1", Type: "upload.completed", Payload: []byte(`{}`), CreateTime: time.Now()}
	if got, err := s.CreateMany(ctx, []*Event{frag}); err != nil || got[0] != nil {
		t.Fatalf("store over a fragment: %+v, %v", got, err)
	}
	if e, err := s.Get(ctx, "evt_2"); err != nil || e.FanoutDone || e.AccountID != "acct_1" || srv.Client.PTTL(ctx, Key("evt_2")).Val() <= 0 {
		t.Errorf("after storing over a fragment: %+v, %v", e, err)
	}
}

// TestDeleteDoneRemovesTheEventsListEntries: DeleteDone deletes the done
// events and their entries in their accounts' event lists, and leaves an
// event that is not done (and its entry) alone.
func TestDeleteDoneRemovesTheEventsListEntries(t *testing.T) {
	srv := redistest.Start(t)
	s := New(srv.Client, time.Hour)
	ctx := context.Background()
	evs := []*Event{
		{ID: "evt_done1", AccountID: "acct_1", Type: "upload.completed", Payload: []byte(`{}`), CreateTime: time.Now()},
		{ID: "evt_done2", AccountID: "acct_2", Type: "upload.completed", Payload: []byte(`{}`), CreateTime: time.Now()},
		{ID: "evt_live", AccountID: "acct_1", Type: "upload.completed", Payload: []byte(`{}`), CreateTime: time.Now()},
	}
	if _, err := s.CreateMany(ctx, evs); err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if err := s.MarkFannedOut(ctx, e.ID, 1); err != nil {
			t.Fatal(err)
		}
		if err := srv.Client.ZAdd(ctx, ListKey(e.AccountID), redis.Z{Score: float64(i), Member: e.ID}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.MarkEnded(ctx, map[string][]string{"evt_done1": {"dlv_1"}, "evt_done2": {"dlv_2"}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.DeleteDone(ctx, []string{"evt_done1", "evt_live", "evt_done2", "evt_gone"})
	if err != nil || !got[0] || got[1] || !got[2] || got[3] {
		t.Fatalf("DeleteDone = %v, %v; want the two done events deleted", got, err)
	}
	if l1 := srv.Client.ZRange(ctx, ListKey("acct_1"), 0, -1).Val(); len(l1) != 1 || l1[0] != "evt_live" {
		t.Errorf("acct_1's list = %v, want only the live event", l1)
	}
	if n := srv.Client.Exists(ctx, ListKey("acct_2")).Val(); n != 0 {
		t.Errorf("acct_2's list still exists (%d)", n)
	}
	if n := srv.Client.Exists(ctx, Key("evt_live")).Val(); n != 1 {
		t.Error("the live event was deleted")
	}
}

// TestAFannedOutEventNeverExpires: an event keeps a TTL only while its
// fan-out is not marked done (an unacknowledged publish: the unfinished
// TTL); once fanned out it lives until DeleteDone (one with no delivery is
// filed on the archiver's waiting list to get there), however long its deliveries stay
// live or wait for the archiver. An event an earlier build wrote with a
// TTL is adopted when the archiver marks one of its deliveries.
func TestAFannedOutEventNeverExpires(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	s := New(srv.Client, time.Hour)
	s.SetUnfinishedTTL(48 * time.Hour)
	for _, id := range []string{"evt_a", "evt_none", "evt_old"} {
		if err := s.Put(ctx, &Event{ID: id, AccountID: "acct_1", Type: "upload.completed", Payload: []byte(`{}`), CreateTime: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if ttl := srv.Client.PTTL(ctx, Key("evt_a")).Val(); ttl <= 47*time.Hour || ttl > 48*time.Hour {
		t.Errorf("before its fan-out is marked the event expires in %v, want the unfinished TTL (48h)", ttl)
	}
	if err := s.MarkFannedOutMany(ctx, []Fanout{{ID: "evt_a", Count: 2}, {ID: "evt_none", Count: 0}, {ID: "evt_gone", Count: 1}}); err != nil {
		t.Fatal(err)
	}
	if ttl := srv.Client.PTTL(ctx, Key("evt_a")).Val(); ttl != -1 {
		t.Errorf("a fanned-out event expires in %v, want no TTL", ttl)
	}
	if ttl := srv.Client.PTTL(ctx, Key("evt_none")).Val(); ttl != -1 {
		t.Errorf("an event with no delivery expires in %v, want no TTL (it moves to history)", ttl)
	}
	if _, err := srv.Client.ZScore(ctx, WaitKey(WaitShard("evt_none")), "evt_none").Result(); err != nil {
		t.Errorf("an event with no delivery is not on the archiver's waiting list: %v", err)
	}
	if _, err := srv.Client.ZScore(ctx, WaitKey(WaitShard("evt_a")), "evt_a").Result(); err == nil {
		t.Errorf("an event with deliveries is on the waiting list")
	}
	if n := srv.Client.Exists(ctx, Key("evt_gone")).Val(); n != 0 {
		t.Errorf("marking the fan-out of an event that is not stored created a fragment")
	}
	if e, err := s.Get(ctx, "evt_a"); err != nil || !e.FanoutDone || e.DeliveryCount != 2 {
		t.Fatalf("Get = %+v, %v", e, err)
	}

	// The previous build's event: fanned out, with DELIVERY_RETENTION.
	if err := s.MarkFannedOut(ctx, "evt_old", 1); err != nil {
		t.Fatal(err)
	}
	srv.Client.PExpire(ctx, Key("evt_old"), time.Hour)
	if err := srv.Client.ScriptFlush(ctx).Err(); err != nil { // NOSCRIPT is no failure either
		t.Fatal(err)
	}
	st, err := s.MarkEnded(ctx, map[string][]string{"evt_old": {"dlv_1"}})
	if err != nil || !st["evt_old"].Done {
		t.Fatalf("MarkEnded = %+v, %v", st, err)
	}
	if ttl := srv.Client.PTTL(ctx, Key("evt_old")).Val(); ttl != -1 {
		t.Errorf("an event the archiver met still expires in %v, want no TTL", ttl)
	}
	if del, err := s.DeleteDone(ctx, []string{"evt_old"}); err != nil || !del[0] || srv.Client.Exists(ctx, Key("evt_old")).Val() != 0 {
		t.Errorf("DeleteDone = %v, %v", del, err)
	}
}

// TestOneCallStoresAndMarksManyEvents: CreateMany and MarkEnded run one
// script over all their events (redisx.RunForKeys) and still answer each
// event on its own: a stored event's fields for an id already taken, the
// ordering key only where one was given; deliveries marked once each, an
// event unknown to Redis reported as not stored.
func TestOneCallStoresAndMarksManyEvents(t *testing.T) {
	srv := redistest.Start(t)
	s := New(srv.Client, time.Hour)
	ctx := context.Background()
	now := time.Now()
	taken := &Event{ID: "evt_a", AccountID: "acct_1", Type: "upload.completed", Payload: []byte(`{"first":1}`), CreateTime: now}
	if _, err := s.CreateMany(ctx, []*Event{taken}); err != nil {
		t.Fatal(err)
	}
	evs := []*Event{
		{ID: "evt_a", AccountID: "acct_2", Type: "upload.completed", Payload: []byte(`{"again":1}`), CreateTime: now},
		{ID: "evt_b", AccountID: "acct_1", Type: "transcription.completed", Payload: []byte(`{"b":1}`), CreateTime: now, OrderingKey: "job-7", UploadID: "upl_1", IdempotencyKey: "k1", TraceID: "t1"},
		{ID: "evt_c", AccountID: "acct_1", Type: "upload.completed", Payload: []byte(`{"c":1}`), CreateTime: now},
	}
	found, err := s.CreateMany(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	if found[0] == nil || found[0].AccountID != "acct_1" || string(found[0].Payload) != `{"first":1}` || found[1] != nil || found[2] != nil {
		t.Fatalf("answers %+v; want evt_a's stored event, then nil, nil", found)
	}
	b, err := s.Get(ctx, "evt_b")
	if err != nil || b.OrderingKey != "job-7" || b.UploadID != "upl_1" || b.IdempotencyKey != "k1" || b.TraceID != "t1" ||
		b.Type != "transcription.completed" || string(b.Payload) != `{"b":1}` || b.CreateTime.UnixMilli() != now.UnixMilli() {
		t.Fatalf("evt_b stored as %+v, %v", b, err)
	}
	if n := srv.Client.HExists(ctx, Key("evt_c"), "okey").Val(); n {
		t.Error("evt_c has an okey field without an ordering key")
	}
	for _, id := range []string{"evt_b", "evt_c"} {
		if ttl := srv.Client.PTTL(ctx, Key(id)).Val(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("%s expiry %v", id, ttl)
		}
	}

	if err := s.MarkFannedOutMany(ctx, []Fanout{{ID: "evt_b", Count: 2}, {ID: "evt_c", Count: 1}}); err != nil {
		t.Fatal(err)
	}
	for round := range 2 { // marking again counts nothing twice
		st, err := s.MarkEnded(ctx, map[string][]string{"evt_b": {"dlv_1", "dlv_2"}, "evt_c": {"dlv_3"}, "evt_gone": {"dlv_4"}})
		if err != nil {
			t.Fatal(err)
		}
		if b := st["evt_b"]; !b.Done || b.Event == nil || b.Event.ID != "evt_b" || b.Event.Type != "transcription.completed" ||
			!st["evt_c"].Done || st["evt_gone"].Event != nil || st["evt_gone"].Done {
			t.Fatalf("round %d: states %+v", round, st)
		}
		if got := srv.Client.HGet(ctx, Key("evt_b"), "ended").Val(); got != "2" {
			t.Errorf("round %d: evt_b ended %s, want 2", round, got)
		}
	}
}
