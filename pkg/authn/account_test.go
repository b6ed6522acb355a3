package authn

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/voxscriber/webhooks/pkg/apierr"
	"github.com/voxscriber/webhooks/pkg/grpctest"
)

func TestAccountFrom(t *testing.T) {
	acct, err := AccountFrom(WithAccount(context.Background(), "acct_1"))
	if acct != "acct_1" || err != nil {
		t.Fatalf("with an account: %q, %v", acct, err)
	}
	for name, ctx := range map[string]context.Context{
		"no account":    context.Background(),
		"empty account": WithAccount(context.Background(), ""),
	} {
		acct, err := AccountFrom(ctx)
		if acct != "" || !errors.Is(err, apierr.ErrUnauthenticated) {
			t.Errorf("%s: %q, %v; want an ErrUnauthenticated error", name, acct, err)
		}
		grpctest.CheckCode(t, apierr.Status(ctx, nil, err), codes.Unauthenticated, "customer API key")
	}
}
