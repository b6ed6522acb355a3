package authn

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/voxscriber/webhooks/pkg/grpctest"
)

// keyTable is a resolver whose keys can be revoked.
type keyTable struct {
	mu    sync.Mutex
	keys  map[string]string
	calls int
}

func (k *keyTable) AccountForKey(_ context.Context, key string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls++
	return k.keys[key], nil
}

func (k *keyTable) revoke(key string) { k.mu.Lock(); delete(k.keys, key); k.mu.Unlock() }

func TestACachedKeyIsForgottenWhenItsAccountIsAnnouncedOrTheFeedResubscribesOrItsTTLEnds(t *testing.T) {
	ctx := context.Background()
	for name, forget := range map[string]func(*CachingResolver){
		"announced":    func(c *CachingResolver) { c.Invalidate("acct_1") },
		"resubscribed": func(c *CachingResolver) { c.InvalidateAll() },
		"ttl":          func(*CachingResolver) { time.Sleep(60 * time.Millisecond) },
	} {
		t.Run(name, func(t *testing.T) {
			table := &keyTable{keys: map[string]string{"vsk_a": "acct_1", "vsk_b": "acct_2"}}
			c := &CachingResolver{Next: table, TTL: 50 * time.Millisecond}
			for _, k := range []string{"vsk_a", "vsk_b", "vsk_a"} {
				if _, err := c.AccountForKey(ctx, k); err != nil {
					t.Fatal(err)
				}
			}
			if table.calls != 2 {
				t.Fatalf("%d lookups, want 2 (one cached)", table.calls)
			}
			table.revoke("vsk_a")
			forget(c)
			if acct, _ := c.AccountForKey(ctx, "vsk_a"); acct != "" {
				t.Fatalf("revoked key still resolves to %q", acct)
			}
			if acct, _ := c.AccountForKey(ctx, "vsk_b"); acct != "acct_2" {
				t.Fatalf("other key: %q", acct)
			}
		})
	}
	if DefaultResolverTTL > time.Second {
		t.Fatalf("DefaultResolverTTL %v: a revoked key must be refused everywhere within 2 s even when the announcement is lost", DefaultResolverTTL)
	}
}

// slowTable answers after an invalidation happened meanwhile.
type slowTable struct{ during func() }

func (s slowTable) AccountForKey(context.Context, string) (string, error) {
	s.during()
	return "acct_1", nil
}

func TestALookupOverlappingAnInvalidationIsNotCached(t *testing.T) {
	c := &CachingResolver{TTL: time.Minute}
	c.Next = slowTable{during: func() { c.Invalidate("acct_1") }}
	if _, err := c.AccountForKey(context.Background(), "vsk_a"); err != nil {
		t.Fatal(err)
	}
	if len(c.m) != 0 {
		t.Fatalf("cached %v though the account changed during the lookup", c.m)
	}
}

// countingLimiter allows n calls per key.
type countingLimiter struct {
	mu   sync.Mutex
	n    int
	seen map[string]int
}

func (l *countingLimiter) Allow(_ context.Context, id string) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[id]++
	if l.seen[id] > l.n {
		return 1500 * time.Millisecond, nil
	}
	return 0, nil
}

func TestCustomerCallsPastTheLimitAreResourceExhaustedWithRetryInfoAndOthersAreNotCounted(t *testing.T) {
	lim := &countingLimiter{n: 1, seen: map[string]int{}}
	cfg := Config{
		Policy:        Policy{"/s/Customer": Customer, "/s/Publish": Producer},
		Resolver:      &keyTable{keys: map[string]string{"vsk_a": "acct_1", "vsk_b": "acct_1"}},
		ProducerToken: "producer",
		Limiter:       lim,
	}
	call := func(method, token string) error {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
		_, err := cfg.Unary()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, func(ctx context.Context, _ any) (any, error) {
			if method == "/s/Customer" {
				id, prefix, ok := KeyOf(ctx)
				if !ok || id != KeyID(HashKey(token)) || prefix != KeyPrefix(token) {
					t.Errorf("handler sees key %q %q %v", id, prefix, ok)
				}
			}
			return nil, nil
		})
		return err
	}
	if err := call("/s/Customer", "vsk_a"); err != nil {
		t.Fatal(err)
	}
	err := call("/s/Customer", "vsk_a")
	grpctest.CheckCode(t, err, codes.ResourceExhausted, "rate limit")
	if secs, ok := RetryAfter(err); !ok || secs != 2 {
		t.Fatalf("Retry-After %d %v, want 2 s (1.5 s rounded up)", secs, ok)
	}
	if err := call("/s/Customer", "vsk_b"); err != nil {
		t.Fatalf("another key of the account: %v", err)
	}
	for range 3 {
		if err := call("/s/Publish", "producer"); err != nil {
			t.Fatalf("producer call limited: %v", err)
		}
	}
	grpctest.RequireCode(t, call("/s/Customer", "vsk_unknown"), codes.Unauthenticated)
	if len(lim.seen) != 2 {
		t.Fatalf("the limiter saw %v; only the two known keys count", lim.seen)
	}
	if _, ok := RetryAfter(status.Error(codes.Unavailable, "x")); ok {
		t.Fatal("RetryAfter without a RetryInfo detail")
	}
	if !strings.HasPrefix(KeyID(HashKey("vsk_a")), "key_") {
		t.Fatal("key ids start with key_")
	}
}
