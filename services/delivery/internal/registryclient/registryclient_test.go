package registryclient

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/changefeed"
	"github.com/voxscriber/webhooks/pkg/redistest"
)

type fakeRegistry struct {
	registryv1.RegistryInternalServiceClient
	mu    sync.Mutex
	url   string
	calls int
}

func (f *fakeRegistry) GetDeliveryTarget(_ context.Context, req *registryv1.GetDeliveryTargetRequest, _ ...grpc.CallOption) (*registryv1.GetDeliveryTargetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return &registryv1.GetDeliveryTargetResponse{Endpoint: &registryv1.Endpoint{
		Id: req.GetEndpointId(), Url: f.url, Status: registryv1.EndpointStatus_ENDPOINT_STATUS_ACTIVE,
	}}, nil
}

func (f *fakeRegistry) setURL(u string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.url = u
}

// A PATCH of an endpoint's URL, announced on the change feed, is used for
// the next delivery within a second, although the cache TTL is long.
func TestTargetsInvalidatedByChangeFeed(t *testing.T) {
	srv := redistest.Start(t)
	f := &fakeRegistry{url: "https://old.example/hook"}
	tg := NewTargets(f, time.Hour)
	changefeed.Watch(t.Context(), srv.Client, nil, tg.Invalidate)
	ctx := t.Context()
	for range 3 {
		got, err := tg.Target(ctx, "acct_a", "ep_1")
		if err != nil || got.URL != "https://old.example/hook" {
			t.Fatalf("%v, %v", got, err)
		}
	}
	other, _ := tg.Target(ctx, "acct_b", "ep_9")
	if f.calls != 2 {
		t.Fatalf("%d registry calls, want 2", f.calls)
	}

	f.setURL("https://new.example/hook")
	start := time.Now()
	if err := srv.Client.Publish(ctx, changefeed.Channel, "acct_a").Err(); err != nil {
		t.Fatal(err)
	}
	for {
		got, err := tg.Target(ctx, "acct_a", "ep_1")
		if err != nil {
			t.Fatal(err)
		}
		if got.URL == "https://new.example/hook" {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatal("URL change not seen within 1s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Another account's entry stays cached.
	if again, _ := tg.Target(ctx, "acct_b", "ep_9"); again != other {
		t.Error("invalidating acct_a dropped acct_b's entry")
	}
}
