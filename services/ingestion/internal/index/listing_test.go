package index_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/eventstore"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/services/ingestion/internal/index"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

// The listing store creates events and lists them under their accounts in
// one round trip (one pipeline: a single fsync'd write on one Redis), and
// a failure of the listing fails the call, as the two-step path's would:
// the publish is not acknowledged and its retry lists the stored event.
func TestTheListingStoreCreatesAndListsInOneRoundTrip(t *testing.T) {
	r := redistest.Start(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	trips := &redistest.Counter{}
	rdb.AddHook(trips)
	x := index.New(rdb, 24*time.Hour, window)
	var s ingest.ListingStore = index.ListingStore{Store: eventstore.New(rdb, 24*time.Hour), Index: x}
	acct := ids.New(ids.Account, time.Now())
	now := time.Now()
	event := func(acct string) *eventstore.Event {
		return &eventstore.Event{ID: ids.New(ids.Event, now), AccountID: acct, Type: "upload.completed", Payload: []byte(`{}`), CreateTime: now}
	}
	if _, err := s.CreateManyListed(ctx, now, []*eventstore.Event{event(acct)}); err != nil { // loads the script
		t.Fatal(err)
	}
	evs := []*eventstore.Event{event(acct), event(acct), event(acct)}
	trips.Commands.Store(0)
	trips.Pipelines.Store(0)
	found, err := s.CreateManyListed(ctx, now, evs)
	if err != nil || found[0] != nil || found[2] != nil {
		t.Fatalf("CreateManyListed = %v, %v", found, err)
	}
	if n := trips.RoundTrips(); n != 1 {
		t.Fatalf("%d round trips, want 1", n)
	}
	got, _, err := x.Page(ctx, acct, ingest.IndexRange{}, 10)
	if err != nil || len(got) != 4 {
		t.Fatalf("listed %v, %v; want the 4 events", got, err)
	}
	for _, e := range evs {
		if n := r.Client.Exists(ctx, eventstore.Key(e.ID)).Val(); n != 1 {
			t.Fatalf("event %s not stored", e.ID)
		}
	}

	// The account's list is not a sorted set: the listing fails, and so
	// does the call.
	other := ids.New(ids.Account, time.Now())
	if err := r.Client.Set(ctx, index.EventsKey(other), "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateManyListed(ctx, now, []*eventstore.Event{event(other)}); err == nil {
		t.Fatal("a failed listing was not reported")
	}
}
