package grpcapi_test

import (
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
)

// TestInternalRPCsAreRefusedWhenNoInternalTokenIsConfigured: a registry
// started without INTERNAL_TOKEN (a bare DEV_MODE process) does not fail
// open: nobody reads signing secrets or settings or disables an endpoint,
// with no credential, with a customer's own API key, or with any token.
func TestInternalRPCsAreRefusedWhenNoInternalTokenIsConfigured(t *testing.T) {
	h := newHarness(t, options{adminToken: adminToken, noInternalToken: true})
	acct, key := h.account("Acme")
	ep := h.endpoint(key, &registryv1.CreateEndpointRequest{}).GetEndpoint().GetId()
	for name, opts := range map[string][]grpc.CallOption{
		"no credential":    nil,
		"customer API key": {as(key)},
		"a guessed token":  {as("dev-internal-token")},
		"the tests' token": {as(internalToken)},
	} {
		_, err := h.bare.GetDeliveryTarget(ctx(t), &registryv1.GetDeliveryTargetRequest{AccountId: acct, EndpointId: ep}, opts...)
		wantCodeNamed(t, name+": GetDeliveryTarget", err, codes.Unauthenticated)
		_, err = h.bare.GetAccountSettings(ctx(t), &registryv1.GetAccountSettingsRequest{AccountId: acct}, opts...)
		wantCodeNamed(t, name+": GetAccountSettings", err, codes.Unauthenticated)
		_, err = h.bare.DisableEndpointBySystem(ctx(t), &registryv1.DisableEndpointBySystemRequest{AccountId: acct, EndpointId: ep, Reason: "forged"}, opts...)
		wantCodeNamed(t, name+": DisableEndpointBySystem", err, codes.Unauthenticated)
		_, err = h.bare.ListSubscribers(ctx(t), &registryv1.ListSubscribersRequest{AccountId: acct, EventType: "transcription.completed"}, opts...)
		wantCodeNamed(t, name+": ListSubscribers", err, codes.Unauthenticated)
		_, err = h.bare.Authenticate(ctx(t), &registryv1.AuthenticateRequest{ApiKey: key}, opts...)
		wantCodeNamed(t, name+": Authenticate", err, codes.Unauthenticated)
	}
	got, err := h.api.GetEndpoint(ctx(t), &registryv1.GetEndpointRequest{Id: ep}, as(key))
	if err != nil {
		t.Fatal(err)
	}
	if st := got.GetEndpoint().GetStatus(); st != registryv1.EndpointStatus_ENDPOINT_STATUS_ACTIVE {
		t.Fatalf("endpoint is %v after refused calls, want ACTIVE", st)
	}
}

// TestACustomerAPIKeyNeverPassesAnInternalRPC: with INTERNAL_TOKEN set, a
// customer's key (valid for the public API) is refused by every internal
// method, even for the customer's own account.
func TestACustomerAPIKeyNeverPassesAnInternalRPC(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")
	ep := h.endpoint(key, &registryv1.CreateEndpointRequest{}).GetEndpoint().GetId()
	_, err := h.bare.GetDeliveryTarget(ctx(t), &registryv1.GetDeliveryTargetRequest{AccountId: acct, EndpointId: ep}, as(key))
	wantCode(t, err, codes.Unauthenticated)
	resp, err := h.internal.GetDeliveryTarget(ctx(t), &registryv1.GetDeliveryTargetRequest{AccountId: acct, EndpointId: ep})
	if err != nil || len(resp.GetSecrets()) == 0 {
		t.Fatalf("with INTERNAL_TOKEN: %v, %v", resp, err)
	}
}

func wantCodeNamed(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Errorf("%s: got %v (%v), want %v", what, got, err, code)
	}
}
