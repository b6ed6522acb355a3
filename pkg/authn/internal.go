package authn

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Callers maps an internal method's full name to the services (by name:
// "ingestion", "delivery", …) that may call it over mutual TLS. Each
// service's grpcapi declares its own beside its Policy. A method with no
// entry admits no certificate.
type Callers map[string][]string

// Identities maps a service name to the certificate SAN that identifies it:
// a URI SAN such as spiffe://voxscriber/delivery or a DNS SAN such as
// delivery.webhooks.svc, compared exactly. Services not listed are known by
// DefaultIdentity.
type Identities map[string]string

// DefaultIdentity is the URI SAN of a service's certificate unless
// GRPC_TLS_IDENTITIES says otherwise.
func DefaultIdentity(service string) string { return "spiffe://voxscriber/" + service }

// Of returns the identity of a service.
func (ids Identities) Of(service string) string {
	if id, ok := ids[service]; ok && id != "" {
		return id
	}
	return DefaultIdentity(service)
}

// internal authorises a call of an Internal method. It never fails open:
// a service with no internal credential configured refuses every internal
// call, so a customer API key, or no key at all, never reaches the
// signing secrets, the scheduler or the account settings. Every configured
// credential must hold: the INTERNAL_TOKEN when one is set, and with
// mutual TLS a peer certificate of a service allowed for this method.
func (c Config) internal(ctx context.Context, method, token string) (context.Context, error) {
	if c.InternalToken == "" && !c.MutualTLS {
		return nil, status.Errorf(codes.Unauthenticated,
			"internal method %s: this service has no internal credential configured, so internal calls are refused; set INTERNAL_TOKEN to the same value on every service, or mutual TLS (GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE, GRPC_TLS_CA_FILE)", method)
	}
	if c.InternalToken != "" && !equal(token, c.InternalToken) {
		return nil, status.Errorf(codes.Unauthenticated, "internal method %s: needs the suite's INTERNAL_TOKEN", method)
	}
	if c.MutualTLS {
		if err := c.peerAllowed(ctx, method); err != nil {
			return nil, err
		}
	}
	return ctx, nil
}

func (c Config) peerAllowed(ctx context.Context, method string) error {
	sans := PeerSANs(ctx)
	if sans == nil {
		return status.Errorf(codes.Unauthenticated, "internal method %s: needs a verified client certificate (mutual TLS)", method)
	}
	allowed := c.Callers[method]
	for _, svc := range allowed {
		if slices.Contains(sans, c.Identities.Of(svc)) {
			return nil
		}
	}
	want := make([]string, len(allowed))
	for i, svc := range allowed {
		want[i] = fmt.Sprintf("%s (%s)", svc, c.Identities.Of(svc))
	}
	if len(want) == 0 {
		want = []string{"none"}
	}
	return status.Errorf(codes.PermissionDenied, "internal method %s: the peer certificate %v is not one of its callers: %s",
		method, sans, strings.Join(want, ", "))
}

// PeerSANs returns the SANs (DNS names and URIs) of the caller's verified
// TLS certificate, or nil when the call did not come with one.
func PeerSANs(ctx context.Context) []string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil
	}
	leaf := ti.State.VerifiedChains[0][0]
	out := append([]string{}, leaf.DNSNames...)
	for _, u := range leaf.URIs {
		out = append(out, u.String())
	}
	return out
}
