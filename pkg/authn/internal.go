package authn

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// internal authorises a call of an Internal method. It never fails open:
// a service with no internal credential configured refuses every internal
// call, so a customer API key, or no key at all, never reaches the
// signing secrets, the scheduler or the account settings.
func (c Config) internal(ctx context.Context, method, token string) (context.Context, error) {
	if c.InternalToken == "" {
		return nil, status.Errorf(codes.Unauthenticated,
			"internal method %s: this service has no internal credential configured, so internal calls are refused; set INTERNAL_TOKEN to the same value on every service", method)
	}
	if !equal(token, c.InternalToken) {
		return nil, status.Errorf(codes.Unauthenticated, "internal method %s: needs the suite's INTERNAL_TOKEN", method)
	}
	return ctx, nil
}
