package registryclient_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/grpctest"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/registryclient"
	"github.com/voxscriber/webhooks/pkg/registrytest"
)

// calls are the client's methods that end in one RPC each, by RPC name.
var calls = map[string]func(ctx context.Context, c *registryclient.Client) error{
	"ListSubscribers": func(ctx context.Context, c *registryclient.Client) error {
		_, err := c.ListSubscribers(ctx, "acct_x", "transcription.completed")
		return err
	},
	"GetDeliveryTarget": func(ctx context.Context, c *registryclient.Client) error {
		_, err := c.DeliveryTarget(ctx, "acct_x", "ep_x")
		return err
	},
	"GetAccountSettings": func(ctx context.Context, c *registryclient.Client) error {
		_, err := c.CreditsLowThreshold(ctx, "acct_x")
		return err
	},
	"DisableEndpointBySystem": func(ctx context.Context, c *registryclient.Client) error {
		return c.DisableEndpoint(ctx, "acct_x", "ep_x", "410 Gone")
	},
}

// Every registry status code becomes one domain error, whatever the call,
// and none is passed on as a status error: at our edge the code is ours.
func TestRegistryErrorsMapToDomainErrors(t *testing.T) {
	tests := []struct {
		registry codes.Code
		kind     error      // what errors.Is finds; nil: none of the sentinels
		edge     codes.Code // what apierr.Status makes of it at our edge
	}{
		{codes.NotFound, apierr.ErrNotFound, codes.NotFound},
		{codes.Unavailable, apierr.ErrUnavailable, codes.Unavailable},
		{codes.DeadlineExceeded, apierr.ErrUnavailable, codes.Unavailable},
		{codes.ResourceExhausted, apierr.ErrUnavailable, codes.Unavailable},
		{codes.Aborted, apierr.ErrUnavailable, codes.Unavailable},
		{codes.Canceled, context.Canceled, codes.Canceled},
		// Our request was wrong, or our deployment is: never the caller's fault.
		{codes.InvalidArgument, nil, codes.Internal},
		{codes.FailedPrecondition, nil, codes.Internal},
		{codes.OutOfRange, nil, codes.Internal},
		{codes.AlreadyExists, nil, codes.Internal},
		{codes.Unimplemented, nil, codes.Internal},
		{codes.Unauthenticated, nil, codes.Internal},
		{codes.PermissionDenied, nil, codes.Internal},
		{codes.Internal, nil, codes.Internal},
		{codes.Unknown, nil, codes.Internal},
		{codes.DataLoss, nil, codes.Internal},
	}
	sentinels := []error{apierr.ErrNotFound, apierr.ErrUnavailable, apierr.ErrUnauthenticated,
		apierr.ErrPermissionDenied, apierr.ErrFailedPrecondition, apierr.ErrAlreadyExists,
		apierr.ErrUnimplemented, context.Canceled, context.DeadlineExceeded}
	reg := registrytest.Start(t)
	client := registryclient.New(reg.Client, 0)
	for _, tt := range tests {
		t.Run(tt.registry.String(), func(t *testing.T) {
			reg.Fail(func(context.Context, string) error { return status.Error(tt.registry, "the registry says no") })
			t.Cleanup(func() { reg.Fail(nil) })
			for method, call := range calls {
				err := call(t.Context(), client)
				var re *registryclient.Error
				if !errors.As(err, &re) || re.Method != method || re.Code != tt.registry || re.Message != "the registry says no" {
					t.Fatalf("%s: %#v, want a registryclient.Error of %s %v", method, err, method, tt.registry)
				}
				if _, isStatus := status.FromError(err); isStatus {
					t.Errorf("%s: %v is a status error", method, err)
				}
				for _, s := range sentinels {
					if got, want := errors.Is(err, s), s == tt.kind; got != want {
						t.Errorf("%s: errors.Is(%v, %v) = %v", method, err, s, got)
					}
				}
				grpctest.CheckCode(t, apierr.Status(t.Context(), nil, err), tt.edge)
			}
			if k := registryclient.Kind(tt.registry); k != tt.kind {
				t.Errorf("Kind(%v) = %v, want %v", tt.registry, k, tt.kind)
			}
		})
	}
}

// Only a NotFound from Authenticate is an unknown key; a refused internal
// credential or a malformed request is a failure to check the key.
func TestAccountForKey(t *testing.T) {
	reg := registrytest.Start(t)
	client := registryclient.New(reg.Client, 0)
	acct := ids.New(ids.Account, time.Now())
	reg.AddKey("vsk_known", acct)
	if got, err := client.AccountForKey(t.Context(), "vsk_known"); got != acct || err != nil {
		t.Fatalf("known key: %q, %v", got, err)
	}
	if got, err := client.AccountForKey(t.Context(), "vsk_unknown"); got != "" || err != nil {
		t.Fatalf("unknown key: %q, %v; want \"\", nil", got, err)
	}
	for _, c := range []codes.Code{codes.Unauthenticated, codes.InvalidArgument, codes.Unavailable} {
		reg.Fail(func(context.Context, string) error { return status.Error(c, "no") })
		if got, err := client.AccountForKey(t.Context(), "vsk_known"); got != "" || err == nil {
			t.Errorf("registry %v: %q, %v; want an error", c, got, err)
		}
	}
}

// A registry that does not answer costs a call the client's timeout, and
// the caller a retryable error.
func TestCallsTimeOut(t *testing.T) {
	reg := registrytest.Start(t)
	reg.Fail(func(ctx context.Context, _ string) error { <-ctx.Done(); return ctx.Err() })
	client := registryclient.New(reg.Client, 50*time.Millisecond)
	start := time.Now()
	_, err := client.ListSubscribers(t.Context(), "acct_x", "transcription.completed")
	if !errors.Is(err, apierr.ErrUnavailable) {
		t.Fatalf("%v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("returned after %v", d)
	}
}

func TestAnswers(t *testing.T) {
	reg := registrytest.Start(t)
	client := registryclient.New(reg.Client, 0)
	ctx := t.Context()
	acct := ids.New(ids.Account, time.Now())
	reg.Subscribe(acct, "upload.completed", "ep_1", "ep_2")
	reg.SetOrdering(acct, "ep_2", registryv1.EndpointOrdering_ENDPOINT_ORDERING_ORDERED_BY_KEY)
	reg.SetSettings(acct, &registryv1.Settings{CreditsLowThreshold: 7, NotificationEmail: "ops@example.test"})

	if subs, err := client.ListSubscribers(ctx, acct, "upload.completed"); err != nil || !slices.Equal(subs.EndpointIDs, []string{"ep_1", "ep_2"}) ||
		!slices.Equal(subs.OrderedIDs, []string{"ep_2"}) || subs.Ordered("ep_1") || !subs.Ordered("ep_2") {
		t.Errorf("ListSubscribers = %+v, %v", subs, err)
	}
	if tg, err := client.DeliveryTarget(ctx, acct, "ep_2"); err != nil || tg.GetEndpoint().GetId() != "ep_2" {
		t.Errorf("DeliveryTarget = %v, %v", tg, err)
	}
	if th, err := client.CreditsLowThreshold(ctx, acct); err != nil || th != 7 {
		t.Errorf("CreditsLowThreshold = %v, %v", th, err)
	}
	if to, err := client.NotificationEmail(ctx, acct); err != nil || to != "ops@example.test" {
		t.Errorf("NotificationEmail = %q, %v", to, err)
	}
	if err := client.DisableEndpoint(ctx, acct, "ep_1", "410 Gone"); err != nil {
		t.Fatal(err)
	}
	if st := reg.Endpoint(acct, "ep_1").GetStatus(); st != registryv1.EndpointStatus_ENDPOINT_STATUS_DISABLED {
		t.Errorf("after DisableEndpoint: %v", st)
	}
	if err := client.DisableEndpoint(ctx, acct, "ep_gone", "410 Gone"); !errors.Is(err, apierr.ErrNotFound) {
		t.Errorf("DisableEndpoint of a deleted endpoint: %v, want ErrNotFound", err)
	}
}
