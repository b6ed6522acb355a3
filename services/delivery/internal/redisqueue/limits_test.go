package redisqueue

import (
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

func want(ep string, n, limit int) []delivery.PlaceWant {
	return []delivery.PlaceWant{{EndpointID: ep, Want: n, Limit: limit}}
}

// Places are shared by every holder up to the limit; what one gives back
// another gets; a holder that stops renewing (crashed) loses its places
// when its lease ends.
func TestConcurrencyPlacesAreSharedAndACrashedHoldersComeBackAfterTheLease(t *testing.T) {
	srv := redistest.Start(t)
	l := NewLimits(srv.Client)
	ctx := t.Context()
	hold := func(holder string, lease time.Duration, n int) int {
		t.Helper()
		got, err := l.Hold(ctx, holder, lease, want("ep_1", n, 4))
		if err != nil {
			t.Fatal(err)
		}
		return got[0]
	}
	if got := hold("a", time.Minute, 3); got != 3 {
		t.Fatalf("a holds %d, want 3", got)
	}
	if got := hold("b", time.Minute, 4); got != 1 {
		t.Fatalf("b holds %d next to a's 3, want 1", got)
	}
	if got := hold("a", time.Minute, 1); got != 1 { // a gives 2 back
		t.Fatalf("a holds %d, want 1", got)
	}
	if got := hold("b", time.Minute, 4); got != 3 {
		t.Fatalf("b holds %d after a gave back 2, want 3", got)
	}
	if got := hold("a", time.Minute, 0); got != 0 {
		t.Fatalf("a holds %d after giving all back", got)
	}

	// c takes the last place with a short lease and crashes (never renews).
	if got := hold("c", 500*time.Millisecond, 4); got != 1 {
		t.Fatalf("c holds %d, want 1", got)
	}
	if got := hold("b", time.Minute, 4); got != 3 {
		t.Fatalf("b holds %d while c's lease runs, want 3", got)
	}
	time.Sleep(600 * time.Millisecond)
	if got := hold("b", time.Minute, 4); got != 4 {
		t.Fatalf("b holds %d after c's lease ended, want 4", got)
	}
	// Other endpoints are counted apart.
	if got, _ := l.Hold(ctx, "a", time.Minute, want("ep_2", 4, 4)); got[0] != 4 {
		t.Fatalf("ep_2: a holds %d, want 4", got[0])
	}
}

// The rate limit is one bucket for every caller: a burst of one second's
// worth, then one token per interval; several tokens are taken at once.
func TestRateTokensAreOneBucketForEveryCaller(t *testing.T) {
	srv := redistest.Start(t)
	l := NewLimits(srv.Client)
	ctx := t.Context()
	total := 0
	for range 3 {
		got, _, err := l.Take(ctx, "ep_1", 10, 4)
		if err != nil {
			t.Fatal(err)
		}
		total += got
	}
	if total != 10 {
		t.Fatalf("took %d tokens at once from a 10/s limit, want its burst of 10", total)
	}
	got, wait, err := l.Take(ctx, "ep_1", 10, 1)
	if err != nil || got != 0 || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("after the burst: got %d, wait %v, %v; want none and a wait up to 100ms", got, wait, err)
	}
	time.Sleep(wait + 5*time.Millisecond)
	if got, _, _ := l.Take(ctx, "ep_1", 10, 5); got < 1 || got >= 5 {
		t.Fatalf("one interval later: got %d, want 1 (or 2 after a stall)", got)
	}
}
