package credits

import (
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/redistest"
)

// A crossing detected but never confirmed (the emitter crashed) is handed
// out again after the lease, with the same number; once confirmed it is not.
func TestUnconfirmedCrossingIsReturnedAfterLease(t *testing.T) {
	srv := redistest.Start(t)
	now := time.UnixMilli(1_000_000)
	r := New(srv.Client, 10*time.Second)
	r.now = func() time.Time { return now }
	ctx, acct := t.Context(), "acct_x"

	if n, err := r.Record(ctx, acct, 5, 10); err != nil || n != 1 {
		t.Fatalf("first drop: %d, %v", n, err)
	}
	if n, _ := r.Record(ctx, acct, 4, 10); n != 0 {
		t.Fatalf("within the lease: %d", n)
	}
	now = now.Add(11 * time.Second)
	if n, _ := r.Record(ctx, acct, 4, 10); n != 1 {
		t.Fatalf("after the lease: %d, want crossing 1 again", n)
	}
	if err := r.Published(ctx, acct, 1); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if n, _ := r.Record(ctx, acct, 3, 10); n != 0 {
		t.Fatalf("after confirmation: %d", n)
	}
	if n, _ := r.Record(ctx, acct, 11, 10); n != 0 {
		t.Fatalf("re-arm: %d", n)
	}
	if n, _ := r.Record(ctx, acct, 2, 10); n != 2 {
		t.Fatalf("second crossing: %d, want 2", n)
	}
}
