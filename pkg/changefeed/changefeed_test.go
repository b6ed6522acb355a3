package changefeed_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/changefeed"
	"github.com/voxscriber/webhooks/pkg/redistest"
)

type recorder struct {
	mu       sync.Mutex
	accounts []string
	flushes  int
}

func (r *recorder) Invalidate(a string) {
	r.mu.Lock()
	r.accounts = append(r.accounts, a)
	r.mu.Unlock()
}
func (r *recorder) InvalidateAll() { r.mu.Lock(); r.flushes++; r.mu.Unlock() }
func (r *recorder) state() (int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flushes, append([]string(nil), r.accounts...)
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !f(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Messages lost while the subscription is down cannot be replayed, so the
// caches are flushed each time it is made again.
func TestFollowFlushesCachesWhenTheSubscriptionIsMadeAgain(t *testing.T) {
	rs := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var r recorder
	changefeed.Follow(ctx, rs.Client, nil, &r)
	if f, _ := r.state(); f != 1 {
		t.Fatalf("%d flushes once subscribed, want 1", f)
	}
	rs.Client.Publish(ctx, changefeed.Channel, "acct_1")
	waitFor(t, "the announcement", func() bool { _, a := r.state(); return len(a) == 1 && a[0] == "acct_1" })

	// Redis drops the subscriber (as it does with a slow one); what is
	// published meanwhile is lost.
	if err := rs.Client.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	rs.Client.Publish(ctx, changefeed.Channel, "acct_lost")
	waitFor(t, "a flush after resubscribing", func() bool { f, _ := r.state(); return f >= 2 })
	waitFor(t, "announcements after resubscribing", func() bool {
		rs.Client.Publish(ctx, changefeed.Channel, "acct_2")
		_, a := r.state()
		return a[len(a)-1] == "acct_2"
	})
}
