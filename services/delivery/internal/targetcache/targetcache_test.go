package targetcache

import (
	"errors"
	"testing"
	"time"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/changefeed"
	"github.com/voxscriber/webhooks/pkg/redistest"
	"github.com/voxscriber/webhooks/pkg/registryclient"
	"github.com/voxscriber/webhooks/pkg/registrytest"
)

const active = registryv1.EndpointStatus_ENDPOINT_STATUS_ACTIVE

// A PATCH of an endpoint's URL, announced on the change feed, is used for
// the next delivery within a second, although the cache TTL is long.
func TestTargetsInvalidatedByChangeFeed(t *testing.T) {
	srv := redistest.Start(t)
	reg := registrytest.Start(t)
	reg.SetEndpoint("acct_a", "ep_1", "https://old.example/hook", active, nil)
	reg.SetEndpoint("acct_b", "ep_9", "https://old.example/hook", active, nil)
	tg := New(registryclient.New(reg.Client, 0), time.Hour)
	changefeed.Watch(t.Context(), srv.Client, nil, tg.Invalidate)
	ctx := t.Context()
	for range 3 {
		got, err := tg.Target(ctx, "acct_a", "ep_1")
		if err != nil || got.URL != "https://old.example/hook" {
			t.Fatalf("%v, %v", got, err)
		}
	}
	other, _ := tg.Target(ctx, "acct_b", "ep_9")
	if n := reg.Calls("GetDeliveryTarget"); n != 2 {
		t.Fatalf("%d registry calls, want 2", n)
	}

	reg.SetEndpoint("acct_a", "ep_1", "https://new.example/hook", active, nil)
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

// A deleted endpoint is NotFound, and remembered: its batch asks once.
func TestDeletedEndpointIsNotFoundOnce(t *testing.T) {
	reg := registrytest.Start(t)
	tg := New(registryclient.New(reg.Client, 0), time.Hour)
	for range 3 {
		if _, err := tg.Target(t.Context(), "acct_a", "ep_gone"); !errors.Is(err, apierr.ErrNotFound) {
			t.Fatalf("%v, want ErrNotFound", err)
		}
	}
	if n := reg.Calls("GetDeliveryTarget"); n != 1 {
		t.Fatalf("%d registry calls, want 1", n)
	}
}
