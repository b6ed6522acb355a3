package credits

import (
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/services/ingestion/internal/ingest"
)

func crossings(c ingest.Claimed) []int64 {
	var out []int64
	for _, x := range c.Crossings {
		out = append(out, x.N)
	}
	return out
}

func want(t *testing.T, what string, c ingest.Claimed, err error, busy bool, ns ...int64) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	got := crossings(c)
	if len(got) != len(ns) {
		t.Fatalf("%s: claimed crossings %v, want %v", what, got, ns)
	}
	for i := range ns {
		if got[i] != ns[i] {
			t.Fatalf("%s: claimed crossings %v, want %v", what, got, ns)
		}
	}
	if busy != !c.BusyUntil.IsZero() {
		t.Fatalf("%s: busy until %v, want busy %v", what, c.BusyUntil, busy)
	}
}

// A crossing is handed to one publisher at a time: others see it busy until
// the claim is released or runs out, then take it over with the same event
// id and data; once published it is gone.
func TestCrossingIsClaimedByOnePublisherUntilPublished(t *testing.T) {
	srv := redistest.Start(t)
	now := time.UnixMilli(1_700_000_000_000)
	r := New(srv.Client, 10*time.Second)
	r.now = func() time.Time { return now }
	ctx, acct := t.Context(), "acct_x"

	first, err := r.Record(ctx, acct, 5, 10)
	want(t, "first drop", first, err, false, 1)
	c := first.Crossings[0]
	if c.EventID == "" || c.Balance != 5 || c.Threshold != 10 {
		t.Fatalf("crossing %+v, want an event id, balance 5, threshold 10", c)
	}
	got, err := r.Record(ctx, acct, 4, 10)
	want(t, "while claimed", got, err, true)

	if err := r.Release(ctx, acct, c); err != nil {
		t.Fatal(err)
	}
	got, err = r.Record(ctx, acct, 4, 10)
	want(t, "after a release", got, err, false, 1)
	if again := got.Crossings[0]; again.EventID != c.EventID || again.Balance != 5 {
		t.Fatalf("taken over as %+v, want event %s with balance 5", again, c.EventID)
	}

	now = now.Add(11 * time.Second) // the claim ran out (its holder crashed)
	got, err = r.Claim(ctx, acct)
	want(t, "after the lease", got, err, false, 1)
	if err := r.Release(ctx, acct, c); err != nil { // a stale claim's release
		t.Fatal(err)
	}
	other, err := r.Claim(ctx, acct)
	want(t, "a stale release frees nothing", other, err, true)

	if err := r.Published(ctx, acct, got.Crossings[0]); err != nil {
		t.Fatal(err)
	}
	got, err = r.Record(ctx, acct, 3, 10)
	want(t, "after publication", got, err, false)
	got, err = r.Record(ctx, acct, 11, 10)
	want(t, "re-arm", got, err, false)
	got, err = r.Record(ctx, acct, 2, 10)
	want(t, "second crossing", got, err, false, 2)
	if got.Crossings[0].EventID == c.EventID {
		t.Fatal("the second crossing reused the first one's event id")
	}
}

// Re-arming above the threshold keeps an unpublished crossing, and a new
// crossing after it is a second one: both stay until published.
func TestReArmingKeepsAnUnpublishedCrossing(t *testing.T) {
	srv := redistest.Start(t)
	r := New(srv.Client, time.Minute)
	ctx, acct := t.Context(), "acct_y"

	got, err := r.Record(ctx, acct, 5, 10)
	want(t, "first drop", got, err, false, 1)
	if err := r.Release(ctx, acct, got.Crossings[0]); err != nil {
		t.Fatal(err)
	}
	got, err = r.Record(ctx, acct, 50, 10)
	want(t, "re-arm with crossing 1 unpublished", got, err, false, 1)
	got2, err := r.Record(ctx, acct, 1, 10)
	want(t, "second drop while 1 is claimed", got2, err, true, 2)
	if err := r.Release(ctx, acct, got.Crossings[0]); err != nil {
		t.Fatal(err)
	}
	if err := r.Release(ctx, acct, got2.Crossings[0]); err != nil {
		t.Fatal(err)
	}
	got, err = r.Record(ctx, acct, 0, 0) // threshold removed: still owed
	want(t, "no threshold", got, err, false, 1, 2)
}

// A pending crossing written by the previous layout (one "pending" field)
// is still published.
func TestCrossingOfThePreviousLayoutIsStillPublished(t *testing.T) {
	srv := redistest.Start(t)
	r := New(srv.Client, time.Minute)
	ctx, acct := t.Context(), "acct_z"
	if err := srv.Client.HSet(ctx, Key(acct), "balance", "5", "armed", "0", "crossings", "3", "pending", "3", "pending_until", "0").Err(); err != nil {
		t.Fatal(err)
	}
	got, err := r.Record(ctx, acct, 4, 10)
	want(t, "old pending crossing", got, err, false, 3)
	if got.Crossings[0].EventID != "" {
		t.Fatalf("old crossing got event id %q, want none (its idempotency key names it)", got.Crossings[0].EventID)
	}
}
