package peers

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/changefeed"
	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/pkg/registryclient"
)

type fakeSubs struct {
	mu      sync.Mutex
	subs    map[string][]string
	ordered map[string][]string
	calls   int
}

func (f *fakeSubs) ListSubscribers(_ context.Context, acct, typ string) (registryclient.SubscriberList, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return registryclient.SubscriberList{EndpointIDs: slices.Clone(f.subs[acct+" "+typ]), OrderedIDs: slices.Clone(f.ordered[acct+" "+typ])}, nil
}

// setOrdered names the ordered ones among the subscribers set.
func (f *fakeSubs) setOrdered(acct, typ string, eps ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ordered == nil {
		f.ordered = map[string][]string{}
	}
	f.ordered[acct+" "+typ] = eps
}

func (f *fakeSubs) set(acct, typ string, eps ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs[acct+" "+typ] = eps
}

// A registry change announced on the change feed is seen by the next
// lookup well within a second, although the TTL is long.
func TestCachedSubscribersInvalidatedByChangeFeed(t *testing.T) {
	srv := redistest.Start(t)
	f := &fakeSubs{subs: map[string][]string{}}
	c := NewCachedSubscribers(f, time.Hour)
	changefeed.Watch(t.Context(), srv.Client, nil, c.Invalidate)
	ctx := t.Context()

	f.set("acct_a", "transcription.completed", "ep_1")
	for range 3 {
		if subs, _ := c.ListSubscribers(ctx, "acct_a", "transcription.completed"); len(subs.EndpointIDs) != 1 {
			t.Fatalf("subscribers %v", subs)
		}
	}
	if f.calls != 1 {
		t.Fatalf("%d registry calls for 3 lookups, want 1", f.calls)
	}

	// The PATCH: ep_1 no longer subscribes, ep_2 does.
	f.set("acct_a", "transcription.completed", "ep_2")
	start := time.Now()
	if err := srv.Client.Publish(ctx, changefeed.Channel, "acct_a").Err(); err != nil {
		t.Fatal(err)
	}
	for {
		eps := subscribers(c, "acct_a", "transcription.completed")
		if len(eps) == 1 && eps[0] == "ep_2" {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("change not seen within 1s: %v", eps)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("change seen after %v", time.Since(start))
}

func TestCachedSubscribersTTLAndInflightInvalidation(t *testing.T) {
	f := &fakeSubs{subs: map[string][]string{"acct_a t": {"ep_1"}}}
	c := NewCachedSubscribers(f, time.Second)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	ctx := context.Background()
	_, _ = c.ListSubscribers(ctx, "acct_a", "t")
	f.set("acct_a", "t", "ep_2")
	if eps := subscribers(c, "acct_a", "t"); eps[0] != "ep_1" {
		t.Fatalf("within the TTL: %v", eps)
	}
	now = now.Add(time.Second)
	if eps := subscribers(c, "acct_a", "t"); eps[0] != "ep_2" {
		t.Fatalf("after the TTL: %v", eps)
	}

	// An invalidation during a load keeps that load's answer out of the cache.
	slow := &blockingSubs{release: make(chan struct{}), started: make(chan struct{})}
	c2 := NewCachedSubscribers(slow, time.Hour)
	done := make(chan struct{})
	go func() { _, _ = c2.ListSubscribers(ctx, "acct_b", "t"); close(done) }()
	<-slow.started
	c2.Invalidate("acct_b")
	close(slow.release)
	<-done
	if _, ok := c2.accounts["acct_b"].types["t"]; ok {
		t.Fatal("a load begun before an invalidation was cached")
	}
}

type blockingSubs struct{ started, release chan struct{} }

func (b *blockingSubs) ListSubscribers(context.Context, string, string) (registryclient.SubscriberList, error) {
	close(b.started)
	<-b.release
	return registryclient.SubscriberList{EndpointIDs: []string{"stale"}}, nil
}

// subscribers is what c answers, the endpoint ids alone.
func subscribers(c *CachedSubscribers, acct, typ string) []string {
	subs, _ := c.ListSubscribers(context.Background(), acct, typ)
	return subs.EndpointIDs
}

// The cache keeps which subscribers are ordered by key with the list, hands
// each caller its own copy, and sees an ordering change announced on the
// change feed.
func TestCachedSubscribersKeepTheOrderedEndpoints(t *testing.T) {
	srv := redistest.Start(t)
	f := &fakeSubs{subs: map[string][]string{"acct_a t": {"ep_1", "ep_2", "ep_3"}}}
	f.setOrdered("acct_a", "t", "ep_2")
	c := NewCachedSubscribers(f, time.Hour)
	changefeed.Watch(t.Context(), srv.Client, nil, c.Invalidate)
	ctx := t.Context()

	for range 2 {
		subs, err := c.ListSubscribers(ctx, "acct_a", "t")
		if err != nil || !slices.Equal(subs.EndpointIDs, []string{"ep_1", "ep_2", "ep_3"}) || !slices.Equal(subs.OrderedIDs, []string{"ep_2"}) {
			t.Fatalf("subscribers %+v, %v", subs, err)
		}
		if subs.Ordered("ep_1") || !subs.Ordered("ep_2") || subs.Ordered("ep_3") {
			t.Fatalf("Ordered of %+v", subs)
		}
		subs.OrderedIDs[0] = "ep_1" // the caller's copy
	}
	if f.calls != 1 {
		t.Fatalf("%d registry calls for 2 lookups, want 1", f.calls)
	}

	// The PATCH: ep_3 becomes ordered, ep_2 unordered.
	f.setOrdered("acct_a", "t", "ep_3")
	if err := srv.Client.Publish(ctx, changefeed.Channel, "acct_a").Err(); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		subs, _ := c.ListSubscribers(ctx, "acct_a", "t")
		if subs.Ordered("ep_3") && !subs.Ordered("ep_2") {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("ordering change not seen within 1s: %+v", subs)
		}
	}
}

// BenchmarkSubscribersCached is the cost a publish pays for the lookup once
// cached (the registry round trip it replaces is a gRPC call).
func BenchmarkSubscribersCached(b *testing.B) {
	f := &fakeSubs{subs: map[string][]string{"acct_a transcription.completed": {"ep_1", "ep_2", "ep_3"}}}
	c := NewCachedSubscribers(f, time.Hour)
	ctx := context.Background()
	_, _ = c.ListSubscribers(ctx, "acct_a", "transcription.completed")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if subs, _ := c.ListSubscribers(ctx, "acct_a", "transcription.completed"); len(subs.EndpointIDs) != 3 {
				b.Fatal(subs)
			}
		}
	})
}
