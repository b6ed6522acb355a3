package peers

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/changefeed"
	"github.com/voxscriber/webhooks/pkg/redistest"
)

type fakeSubs struct {
	mu    sync.Mutex
	subs  map[string][]string
	calls int
}

func (f *fakeSubs) ListSubscribers(_ context.Context, acct, typ string) ([]string, []string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	var ordered []string // endpoints named ord… are ordered by key
	for _, ep := range f.subs[acct+" "+typ] {
		if strings.HasPrefix(ep, "ord") {
			ordered = append(ordered, ep)
		}
	}
	return append([]string(nil), f.subs[acct+" "+typ]...), ordered, nil
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
		if eps, _, _ := c.ListSubscribers(ctx, "acct_a", "transcription.completed"); len(eps) != 1 {
			t.Fatalf("eps %v", eps)
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
		eps, _, _ := c.ListSubscribers(ctx, "acct_a", "transcription.completed")
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
	_, _, _ = c.ListSubscribers(ctx, "acct_a", "t")
	f.set("acct_a", "t", "ep_2")
	if eps, _, _ := c.ListSubscribers(ctx, "acct_a", "t"); eps[0] != "ep_1" {
		t.Fatalf("within the TTL: %v", eps)
	}
	now = now.Add(time.Second)
	if eps, _, _ := c.ListSubscribers(ctx, "acct_a", "t"); eps[0] != "ep_2" {
		t.Fatalf("after the TTL: %v", eps)
	}

	// An invalidation during a load keeps that load's answer out of the cache.
	slow := &blockingSubs{release: make(chan struct{}), started: make(chan struct{})}
	c2 := NewCachedSubscribers(slow, time.Hour)
	done := make(chan struct{})
	go func() { _, _, _ = c2.ListSubscribers(ctx, "acct_b", "t"); close(done) }()
	<-slow.started
	c2.Invalidate("acct_b")
	close(slow.release)
	<-done
	if _, ok := c2.accounts["acct_b"].types["t"]; ok {
		t.Fatal("a load begun before an invalidation was cached")
	}
}

type blockingSubs struct{ started, release chan struct{} }

func (b *blockingSubs) ListSubscribers(context.Context, string, string) ([]string, []string, error) {
	close(b.started)
	<-b.release
	return []string{"stale"}, nil, nil
}

// BenchmarkSubscribersCached is the cost a publish pays for the lookup once
// cached (the registry round trip it replaces is a gRPC call).
func BenchmarkSubscribersCached(b *testing.B) {
	f := &fakeSubs{subs: map[string][]string{"acct_a transcription.completed": {"ep_1", "ep_2", "ep_3"}}}
	c := NewCachedSubscribers(f, time.Hour)
	ctx := context.Background()
	_, _, _ = c.ListSubscribers(ctx, "acct_a", "transcription.completed")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if eps, _, _ := c.ListSubscribers(ctx, "acct_a", "transcription.completed"); len(eps) != 3 {
				b.Fatal(eps)
			}
		}
	})
}

// The endpoints ordered by key come back from the cache as from the
// registry: a cached answer must not turn an ordered endpoint unordered.
func TestCachedSubscribersKeepWhichEndpointsAreOrdered(t *testing.T) {
	f := &fakeSubs{subs: map[string][]string{}}
	c := NewCachedSubscribers(f, time.Hour)
	f.set("acct_a", "transcription.progress", "ep_1", "ord_2")
	for i := range 3 {
		eps, ordered, err := c.ListSubscribers(t.Context(), "acct_a", "transcription.progress")
		if err != nil || !slices.Equal(eps, []string{"ep_1", "ord_2"}) || !slices.Equal(ordered, []string{"ord_2"}) {
			t.Fatalf("lookup %d: eps %v ordered %v err %v", i, eps, ordered, err)
		}
	}
	if f.calls != 1 {
		t.Fatalf("%d registry calls for 3 lookups, want 1", f.calls)
	}
}
