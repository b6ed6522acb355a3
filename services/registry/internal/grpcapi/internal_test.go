package grpcapi_test

import (
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/grpctest"
	"github.com/voxscriber/webhooks/pkg/serve"
	"github.com/voxscriber/webhooks/pkg/tlstest"
	"github.com/voxscriber/webhooks/services/registry/internal/grpcapi"
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
	grpctest.RequireCode(t, err, codes.Unauthenticated)
	resp, err := h.internal.GetDeliveryTarget(ctx(t), &registryv1.GetDeliveryTargetRequest{AccountId: acct, EndpointId: ep})
	if err != nil || len(resp.GetSecrets()) == 0 {
		t.Fatalf("with INTERNAL_TOKEN: %v, %v", resp, err)
	}
}

// wantCodeNamed is grpctest.CheckCode saying which call it checked.
func wantCodeNamed(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if !grpctest.CheckCode(t, err, code) {
		t.Logf("(that was %s)", what)
	}
}

// mtlsHarness serves the registry over mutual TLS (and, with tokenToo, INTERNAL_TOKEN)
// and returns clients presenting the certificate of each named service.
func mtlsHarness(t *testing.T, tokenToo bool) (*harness, map[string]registryv1.RegistryInternalServiceClient) {
	t.Helper()
	ca := tlstest.NewCA(t, "suite")
	tlsOf := func(sans ...string) *serve.TLS {
		m := tlstest.NewMount(t, ca.Issue(t, sans...), ca)
		tl, err := serve.LoadTLS(serve.TLSFiles{Cert: m.Cert(), Key: m.Key(), CA: m.CA()})
		if err != nil {
			t.Fatal(err)
		}
		return tl
	}
	o := options{adminToken: adminToken, tls: tlsOf("registry", "spiffe://voxscriber/registry"), noInternalToken: !tokenToo}
	h := newHarness(t, o)
	clients := map[string]registryv1.RegistryInternalServiceClient{}
	for _, svc := range []string{"gateway", "ingestion", "delivery"} {
		clients[svc] = h.dialTLS(tlsOf("spiffe://voxscriber/" + svc))
	}
	return h, clients
}

// TestTheGatewayCertificateCannotReadSigningSecrets: over mutual TLS each
// internal method admits only the services its Callers list names, by
// their certificates: the internet-facing gateway gets PermissionDenied
// from GetDeliveryTarget (and every other internal method), ingestion may
// list subscribers but not read secrets, delivery reads them.
func TestTheGatewayCertificateCannotReadSigningSecrets(t *testing.T) {
	for _, tokenToo := range []bool{false, true} {
		h, as := mtlsHarness(t, tokenToo)
		acct, key := h.account("Acme")
		ep := h.endpoint(key, &registryv1.CreateEndpointRequest{}).GetEndpoint().GetId()
		target := &registryv1.GetDeliveryTargetRequest{AccountId: acct, EndpointId: ep}

		_, err := as["gateway"].GetDeliveryTarget(ctx(t), target)
		grpctest.RequireCode(t, err, codes.PermissionDenied)
		_, err = as["gateway"].GetAccountSettings(ctx(t), &registryv1.GetAccountSettingsRequest{AccountId: acct})
		grpctest.RequireCode(t, err, codes.PermissionDenied)
		_, err = as["gateway"].Authenticate(ctx(t), &registryv1.AuthenticateRequest{ApiKey: key})
		grpctest.RequireCode(t, err, codes.PermissionDenied)
		_, err = as["ingestion"].GetDeliveryTarget(ctx(t), target)
		grpctest.RequireCode(t, err, codes.PermissionDenied)
		_, err = as["delivery"].ListSubscribers(ctx(t), &registryv1.ListSubscribersRequest{AccountId: acct, EventType: "transcription.completed"})
		grpctest.RequireCode(t, err, codes.PermissionDenied)

		if _, err := as["ingestion"].ListSubscribers(ctx(t), &registryv1.ListSubscribersRequest{AccountId: acct, EventType: "transcription.completed"}); err != nil {
			t.Fatalf("ingestion ListSubscribers: %v", err)
		}
		resp, err := as["delivery"].GetDeliveryTarget(ctx(t), target)
		if err != nil || len(resp.GetSecrets()) == 0 {
			t.Fatalf("delivery GetDeliveryTarget (token too: %v) = %v, %v", tokenToo, resp, err)
		}
	}
}

// TestEveryInternalMethodNamesItsCallers: the mutual TLS allow-list covers
// each internal method of the Policy, and never names the gateway.
func TestEveryInternalMethodNamesItsCallers(t *testing.T) {
	callers := grpcapi.Callers()
	for m, role := range grpcapi.Policy() {
		if role != authn.Internal {
			continue
		}
		if len(callers[m]) == 0 {
			t.Errorf("%s is internal but names no callers", m)
		}
		if slices.Contains(callers[m], "gateway") {
			t.Errorf("%s admits the gateway", m)
		}
	}
}
