package grpcapi_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/grpctest"
)

// What a producer or customer gets when the registry fails: never the
// registry's own code, and never an acknowledged event.
func TestRegistryFailuresAreNotTheCallersFault(t *testing.T) {
	e := newEnv(t, options{})
	acct, custCtx := e.customer(t)
	e.reg.Subscribe(acct, "transcription.started", "ep_1")
	publish := func() error {
		_, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
			AccountId: acct, Type: "transcription.started", Data: sample(t, "transcription.started"),
		})
		return err
	}
	failWith := func(c codes.Code) {
		e.reg.Fail(func(context.Context, string) error { return status.Error(c, "the registry says no") })
	}

	// A registry outage: try again.
	failWith(codes.Unavailable)
	grpctest.RequireCode(t, publish(), codes.Unavailable, "registry ListSubscribers", "retry with the same idempotency key")
	// The registry refusing our request is our bug, not the producer's
	// InvalidArgument; the event is not acknowledged either.
	failWith(codes.InvalidArgument)
	grpctest.RequireCode(t, publish(), codes.Unavailable, "looking up subscribers")
	// A customer's key that cannot be checked is not an unknown key.
	failWith(codes.Unauthenticated)
	_, err := e.client.ListEvents(custCtx, &ingestionv1.ListEventsRequest{})
	grpctest.RequireCode(t, err, codes.Unavailable)
	if n := len(e.dlv.calls()); n != 0 {
		t.Fatalf("%d Schedule calls while the registry failed", n)
	}

	e.reg.Fail(nil)
	if err := publish(); err != nil {
		t.Fatalf("once the registry answers: %v", err)
	}
}
