package registrytest_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/grpctest"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/pkg/registrytest"
)

// The fake answers over real gRPC as the registry does.
func TestRegistryAnswersAsTheRegistry(t *testing.T) {
	r := registrytest.Start(t)
	ctx := t.Context()
	acct := ids.New(ids.Account, time.Now())
	active := registryv1.EndpointStatus_ENDPOINT_STATUS_ACTIVE

	r.AddKey("vsk_1", acct)
	resp, err := r.Client.Authenticate(ctx, &registryv1.AuthenticateRequest{ApiKey: "vsk_1"})
	if err != nil || resp.GetAccountId() != acct {
		t.Fatalf("Authenticate = %v, %v", resp, err)
	}
	_, err = r.Client.Authenticate(ctx, &registryv1.AuthenticateRequest{ApiKey: "vsk_unknown"})
	grpctest.RequireCode(t, err, codes.NotFound)

	// Subscribers: ACTIVE endpoints of the type, in creation order.
	r.Subscribe(acct, "transcription.completed", "ep_b", "ep_a")
	r.Subscribe(acct, "upload.completed", "ep_a")
	r.SetEndpoint(acct, "ep_c", "https://c.test/", registryv1.EndpointStatus_ENDPOINT_STATUS_INACTIVE, nil)
	r.Subscribe(acct, "transcription.completed", "ep_c")
	subs, err := r.Client.ListSubscribers(ctx, &registryv1.ListSubscribersRequest{AccountId: acct, EventType: "transcription.completed"})
	if err != nil || !slices.Equal(subs.GetEndpointIds(), []string{"ep_b", "ep_a"}) {
		t.Fatalf("ListSubscribers = %v, %v", subs, err)
	}
	_, err = r.Client.ListSubscribers(ctx, &registryv1.ListSubscribersRequest{AccountId: acct, EventType: "nope"})
	grpctest.RequireCode(t, err, codes.InvalidArgument, "event_type")
	_, err = r.Client.ListSubscribers(ctx, &registryv1.ListSubscribersRequest{EventType: "upload.completed"})
	grpctest.RequireCode(t, err, codes.InvalidArgument, "account_id")
	if got := r.ListSubscribersCalls(); len(got) != 3 || got[0] != acct+" transcription.completed" {
		t.Fatalf("ListSubscribersCalls = %v", got)
	}

	// Targets: the newest secret has no expiry, older ones are in their overlap.
	r.SetEndpoint(acct, "ep_a", "https://a.test/hook", active, map[string]string{"X-A": "1"}, "whsec_new", "whsec_old")
	tgt, err := r.Client.GetDeliveryTarget(ctx, &registryv1.GetDeliveryTargetRequest{AccountId: acct, EndpointId: "ep_a"})
	if err != nil || tgt.GetEndpoint().GetUrl() != "https://a.test/hook" || len(tgt.GetSecrets()) != 2 ||
		tgt.GetSecrets()[0].GetExpireTime() != nil || tgt.GetSecrets()[1].GetExpireTime() == nil {
		t.Fatalf("GetDeliveryTarget = %v, %v", tgt, err)
	}
	if got := tgt.GetEndpoint().GetEventTypes(); !slices.Equal(got, []string{"transcription.completed", "upload.completed"}) {
		t.Errorf("SetEndpoint dropped the subscriptions: %v", got)
	}
	_, err = r.Client.GetDeliveryTarget(ctx, &registryv1.GetDeliveryTargetRequest{AccountId: acct, EndpointId: "ep_nope"})
	grpctest.RequireCode(t, err, codes.NotFound)
	if n := r.Calls("GetDeliveryTarget"); n != 2 {
		t.Errorf("Calls(GetDeliveryTarget) = %d, want 2", n)
	}

	// Settings, and a system disable.
	r.SetSettings(acct, &registryv1.Settings{CreditsLowThreshold: 5, NotificationEmail: "ops@example.test"})
	st, err := r.Client.GetAccountSettings(ctx, &registryv1.GetAccountSettingsRequest{AccountId: acct})
	if err != nil || st.GetSettings().GetCreditsLowThreshold() != 5 {
		t.Fatalf("GetAccountSettings = %v, %v", st, err)
	}
	_, err = r.Client.GetAccountSettings(ctx, &registryv1.GetAccountSettingsRequest{AccountId: "acct_1"})
	grpctest.RequireCode(t, err, codes.NotFound)
	if _, err := r.Client.DisableEndpointBySystem(ctx, &registryv1.DisableEndpointBySystemRequest{AccountId: acct, EndpointId: "ep_a", Reason: "410 Gone"}); err != nil {
		t.Fatal(err)
	}
	if ep := r.Endpoint(acct, "ep_a"); ep.GetStatus() != registryv1.EndpointStatus_ENDPOINT_STATUS_DISABLED || ep.GetDisabledReason() != "410 Gone" {
		t.Fatalf("after DisableEndpointBySystem: %v", ep)
	}
}

func TestFail(t *testing.T) {
	r := registrytest.Start(t)
	r.Fail(func(ctx context.Context, method string) error {
		if method == "Authenticate" {
			return status.Error(codes.Unavailable, "restarting")
		}
		<-ctx.Done() // hangs until the caller gives up
		return ctx.Err()
	})
	_, err := r.Client.Authenticate(t.Context(), &registryv1.AuthenticateRequest{ApiKey: "k"})
	grpctest.RequireCode(t, err, codes.Unavailable, "restarting")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = r.Client.ListSubscribers(ctx, &registryv1.ListSubscribersRequest{})
	grpctest.RequireCode(t, err, codes.DeadlineExceeded)

	r.Fail(nil)
	_, err = r.Client.Authenticate(t.Context(), &registryv1.AuthenticateRequest{ApiKey: "k"})
	grpctest.RequireCode(t, err, codes.NotFound)
}
