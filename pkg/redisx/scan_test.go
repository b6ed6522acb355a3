package redisx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/voxscriber/webhooks/pkg/redistest"
)

func TestZMembersPagesThroughTheSetInRankOrder(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	var want []string
	for i := range 2501 {
		m := fmt.Sprintf("m%05d", i)
		want = append(want, m)
		srv.Client.ZAdd(ctx, "z", redis.Z{Score: float64(i), Member: m})
	}
	var got []string
	pages := 0
	if err := ZMembers(ctx, srv.Client, "z", 1000, func(_ context.Context, ms []string) error {
		pages++
		got = append(got, ms...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if pages != 3 || !slices.Equal(got, want) {
		t.Fatalf("%d pages, %d members (first %v); want 3 pages of all %d in rank order", pages, len(got), got[:min(3, len(got))], len(want))
	}
	stop := errors.New("stop")
	if err := ZMembers(ctx, srv.Client, "z", 1000, func(context.Context, []string) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("fn's error: got %v", err)
	}
	if err := ZMembers(ctx, srv.Client, "empty", 1000, func(context.Context, []string) error { t.Fatal("called for an empty set"); return nil }); err != nil {
		t.Fatal(err)
	}
}
