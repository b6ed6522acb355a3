package index_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/pkg/redisx"
	"github.com/voxscriber/webhooks/services/ingestion/internal/index"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

const window = time.Hour

func claim(t *testing.T, x *index.Redis, acct, key string, at time.Time) ingest.KeyOwner {
	t.Helper()
	got, err := x.Claim(t.Context(), []ingest.Claim{{AccountID: acct, Key: key, EventID: ids.New(ids.Event, at), At: at}})
	if err != nil {
		t.Fatal(err)
	}
	return got[0]
}

// TestMarkerHoldsForTheWindowAcrossBuckets: a key claimed at the very end
// of a bucket is still held in the next bucket, up to the window's end and
// not after it (exactly: the claim time is in the marker, whatever the
// bucket's expiry); another account's key of the same name is its own.
func TestMarkerHoldsForTheWindowAcrossBuckets(t *testing.T) {
	r := redistest.Start(t)
	x := index.New(r.Client, 7*24*time.Hour, window)
	acct, other := ids.New(ids.Account, time.Now()), ids.New(ids.Account, time.Now())
	// The last millisecond of a bucket (buckets are window-long from the epoch).
	now := time.Now().Truncate(window)
	at := now.Add(-time.Millisecond)
	first := claim(t, x, acct, "job-1", at)
	if !first.New {
		t.Fatalf("first claim %+v, want new", first)
	}
	for _, d := range []time.Duration{0, time.Millisecond, 2 * time.Millisecond, window / 2, window - time.Millisecond} {
		got := claim(t, x, acct, "job-1", at.Add(d))
		if got.New || got.EventID != first.EventID {
			t.Errorf("repeat %v later: %+v, want the original %s", d, got, first.EventID)
		}
	}
	if got := claim(t, x, other, "job-1", at); !got.New {
		t.Errorf("another account's key: %+v, want new", got)
	}
	later := claim(t, x, acct, "job-1", at.Add(window))
	if !later.New || later.EventID == first.EventID {
		t.Fatalf("repeat a window later: %+v, want a new claim", later)
	}
	if got := claim(t, x, acct, "job-1", at.Add(window+time.Minute)); got.New || got.EventID != later.EventID {
		t.Errorf("repeat of the new claim: %+v, want %s", got, later.EventID)
	}
	// A producer-chosen id (its time is not the claim's) holds for the
	// window from the claim too.
	chosen := ids.New(ids.Event, at.Add(-5*window))
	got, err := x.Claim(t.Context(), []ingest.Claim{{AccountID: acct, Key: chosen, EventID: chosen, At: at}})
	if err != nil || !got[0].New {
		t.Fatalf("chosen id: %+v, %v", got, err)
	}
	for d, held := range map[time.Duration]bool{time.Millisecond: true, window - time.Millisecond: true, window: false} {
		if id, ok, err := x.Owner(t.Context(), acct, chosen, at.Add(d)); err != nil || ok != held || (held && id != chosen) {
			t.Errorf("chosen id %v later: %q %v %v, want held %v", d, id, ok, err, held)
		}
	}
	// Every marker hash expires at its bucket's end + the window.
	keys, err := r.Client.Keys(t.Context(), "wh:{a:"+acct+"}:idemb:*").Result()
	if err != nil || len(keys) != 2 {
		t.Fatalf("marker hashes %v, %v: want one per bucket", keys, err)
	}
	for _, k := range keys {
		ttl := r.Client.PTTL(t.Context(), k).Val()
		if ttl <= 0 || ttl > 3*window {
			t.Errorf("%s: TTL %v", k, ttl)
		}
	}
}

// TestConcurrentClaimsOfOneKeyAreOneOwner: many claims of one key at once,
// each for its own event, from many connections: exactly one takes it and
// every one answers that event.
func TestConcurrentClaimsOfOneKeyAreOneOwner(t *testing.T) {
	r := redistest.Start(t)
	x := index.New(r.Client, 7*24*time.Hour, window)
	acct := ids.New(ids.Account, time.Now())
	for round := 0; round < 20; round++ {
		key := fmt.Sprintf("upl_%d/progress", round)
		const n = 32
		owners := make([]ingest.KeyOwner, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				now := time.Now()
				got, err := x.Claim(context.Background(), []ingest.Claim{{AccountID: acct, Key: key, EventID: ids.New(ids.Event, now), At: now}})
				if err != nil {
					t.Error(err)
					return
				}
				owners[i] = got[0]
			}()
		}
		close(start)
		wg.Wait()
		fresh := 0
		for _, o := range owners {
			if o.New {
				fresh++
			}
			if o.EventID != owners[0].EventID {
				t.Fatalf("round %d: owners %+v and %+v differ", round, o, owners[0])
			}
		}
		if fresh != 1 {
			t.Fatalf("round %d: %d claims took the key, want 1", round, fresh)
		}
	}
}

// TestOldLayoutMarkerIsHonoured: a marker of the previous build (one
// string per key) holds its key until it expires, whatever the window;
// the claim writes no new marker for it.
func TestOldLayoutMarkerIsHonoured(t *testing.T) {
	r := redistest.Start(t)
	x := index.New(r.Client, 7*24*time.Hour, window)
	acct := ids.New(ids.Account, time.Now())
	old := ids.New(ids.Event, time.Now().Add(-3*window))
	if err := r.Client.Set(t.Context(), index.IdemKey(acct, "k1"), old, 7*24*time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, x, acct, "k1", time.Now()); got.New || got.EventID != old {
		t.Fatalf("claim over an old-layout marker: %+v, want %s", got, old)
	}
	if keys := r.Client.Keys(t.Context(), "wh:{a:"+acct+"}:idemb:*").Val(); len(keys) != 0 {
		t.Errorf("new markers written over an old one: %v", keys)
	}
	r.Client.Del(t.Context(), index.IdemKey(acct, "k1")) // expired
	if got := claim(t, x, acct, "k1", time.Now()); !got.New {
		t.Errorf("claim after the old marker expired: %+v, want new", got)
	}
}

// TestMarkersStayListpackEncodedAndSmall: thousands of keys of one account
// in one window fill hashes of at most 128 entries, every one
// listpack-encoded, all found again, at ≤ 50 B of MEMORY USAGE per marker
// (issue #12's budget per archived event); a claim for what is no event
// id is refused.
func TestMarkersStayListpackEncodedAndSmall(t *testing.T) {
	r := redistest.Start(t)
	x := index.New(r.Client, 7*24*time.Hour, window)
	acct := ids.New(ids.Account, time.Now())
	at := time.Now()
	const n = 20000
	claims := make([]ingest.Claim, n)
	for i := range claims {
		claims[i] = ingest.Claim{AccountID: acct, Key: fmt.Sprintf("%08d-1111-4000-8000-000000000000", i), EventID: ids.New(ids.Event, at), At: at}
	}
	for i := 0; i < n; i += 500 {
		got, err := x.Claim(t.Context(), claims[i:i+500])
		if err != nil {
			t.Fatal(err)
		}
		for j, o := range got {
			if !o.New {
				t.Fatalf("claim %d: %+v", i+j, o)
			}
		}
	}
	keys := r.Client.Keys(t.Context(), "wh:{a:"+acct+"}:idemb:*").Val()
	var bytes int64
	entries := 0
	for _, k := range keys {
		enc := r.Client.ObjectEncoding(t.Context(), k).Val()
		hlen := r.Client.HLen(t.Context(), k).Val()
		if enc != "listpack" || hlen > 128 {
			t.Errorf("%s: %s encoding, %d entries", k, enc, hlen)
		}
		entries += int(hlen)
		bytes += r.Client.MemoryUsage(t.Context(), k, 0).Val()
	}
	if entries != n {
		t.Fatalf("%d markers in %d hashes, want %d", entries, len(keys), n)
	}
	perMarker := float64(bytes) / n
	t.Logf("%d markers in %d hashes: %d B of MEMORY USAGE, %.1f B per marker", n, len(keys), bytes, perMarker)
	if perMarker > 50 {
		t.Errorf("%.1f B per marker, want ≤ 50", perMarker)
	}
	again, err := x.Claim(t.Context(), claims[:500])
	if err != nil {
		t.Fatal(err)
	}
	for j, o := range again {
		if o.New || o.EventID != claims[j].EventID {
			t.Fatalf("repeat %d: %+v, want %s", j, o, claims[j].EventID)
		}
	}
	if _, err := x.Claim(t.Context(), []ingest.Claim{{AccountID: acct, Key: "odd", EventID: "evt_not-an-id", At: at}}); err == nil {
		t.Errorf("a claim for no event id was accepted")
	}
}

// TestMarkersWorkOnRedisCluster: every key of a claim shares the
// account's hash tag, so claims of many accounts run on a cluster.
func TestMarkersWorkOnRedisCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	rdb, err := redisx.NewClient(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		t.Fatalf("%T, want a cluster client", rdb)
	}
	x := index.New(rdb, 7*24*time.Hour, window)
	now := time.Now()
	var claims []ingest.Claim
	for i := range 50 {
		claims = append(claims, ingest.Claim{AccountID: ids.New(ids.Account, now), Key: fmt.Sprint("k", i), EventID: ids.New(ids.Event, now), At: now})
	}
	for round := range 2 {
		got, err := x.Claim(t.Context(), claims)
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range got {
			if o.New != (round == 0) || o.EventID != claims[i].EventID {
				t.Fatalf("round %d claim %d: %+v", round, i, o)
			}
		}
	}
}
