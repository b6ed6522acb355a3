package authn

import (
	"context"

	"github.com/voxscriber/webhooks/pkg/apierr"
)

// AccountFrom returns the account of the customer who made the call, or an
// error wrapping apierr.ErrUnauthenticated (Unauthenticated at the edge)
// when the call carries none. The interceptor has already refused Customer
// calls without a valid API key, so for those methods the error only
// guards against a handler reached by another route (a method left out of
// the Policy, an in-process caller without WithAccount): it never acts on
// the empty account.
func AccountFrom(ctx context.Context) (string, error) {
	acct, ok := AccountID(ctx)
	if !ok {
		return "", apierr.Wrap(apierr.ErrUnauthenticated, "this call needs a customer API key (Authorization: Bearer <api key>)")
	}
	return acct, nil
}
