package grpcapi_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/grpctest"
)

func TestCreateAccountNeedsAdminToken(t *testing.T) {
	h := newHarness(t)
	req := &registryv1.CreateAccountRequest{Name: "Acme", NotificationEmail: "ops@acme.test"}

	_, err := h.api.CreateAccount(ctx(t), req)
	grpctest.RequireCode(t, err, codes.Unauthenticated)
	_, err = h.api.CreateAccount(ctx(t), req, as("wrong"))
	grpctest.RequireCode(t, err, codes.Unauthenticated)
	if ks := h.keys(); len(ks) != 1 { // only wh:secrets:keycheck
		t.Fatalf("refused calls stored %v", ks)
	}

	resp, err := h.api.CreateAccount(ctx(t), req, as(adminToken))
	if err != nil {
		t.Fatal(err)
	}
	acct, key := resp.GetAccount().GetId(), resp.GetApiKey()
	if !strings.HasPrefix(acct, "acct_") || !strings.HasPrefix(key, "vsk_") || len(key) != 4+43 {
		t.Fatalf("account %q key %q", acct, key)
	}
	if resp.GetAccount().GetName() != "Acme" || resp.GetAccount().GetCreateTime() == nil {
		t.Fatalf("account %v", resp.GetAccount())
	}

	// The key works, is stored only as its hash, and the email is kept.
	st, err := h.api.GetSettings(ctx(t), &registryv1.GetSettingsRequest{}, as(key))
	if err != nil {
		t.Fatal(err)
	}
	if st.GetSettings().GetNotificationEmail() != "ops@acme.test" {
		t.Fatalf("settings %v", st.GetSettings())
	}
	got, err := h.redis.Client.Get(context.Background(), "wh:apikey:"+authn.HashKey(key)).Result()
	if err != nil || got != acct {
		t.Fatalf("wh:apikey:<hash> = %q, %v", got, err)
	}
	for _, k := range h.keys() {
		if strings.Contains(k, key) || strings.Contains(dump(t, h, k), key) {
			t.Fatalf("plaintext API key in %s", k)
		}
	}
}

func TestCreateAccountAdminAPIOff(t *testing.T) {
	h := newHarness(t, options{})
	_, err := h.api.CreateAccount(ctx(t), &registryv1.CreateAccountRequest{Name: "x"}, as("anything"))
	grpctest.RequireCode(t, err, codes.PermissionDenied)
}

func TestCreateAccountValidation(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		name, email, field string
	}{
		{"", "", "name"},
		{"   ", "", "name"},
		{strings.Repeat("n", 101), "", "name"},
		{"ok", "not-an-email", "notification_email"},
		{"ok", "Bob <bob@example.com>", "notification_email"},
	} {
		_, err := h.api.CreateAccount(ctx(t), &registryv1.CreateAccountRequest{Name: tc.name, NotificationEmail: tc.email}, as(adminToken))
		wantInvalid(t, err, tc.field)
	}
	if ks := h.keys(); len(ks) != 1 {
		t.Fatalf("refused accounts stored %v", ks)
	}
}

func TestCustomerAuth(t *testing.T) {
	h := newHarness(t)
	_, err := h.api.ListEndpoints(ctx(t), &registryv1.ListEndpointsRequest{})
	grpctest.RequireCode(t, err, codes.Unauthenticated)
	_, err = h.api.ListEndpoints(ctx(t), &registryv1.ListEndpointsRequest{}, as("vsk_unknown"))
	grpctest.RequireCode(t, err, codes.Unauthenticated)
	// The admin token is not a customer key.
	_, err = h.api.ListEndpoints(ctx(t), &registryv1.ListEndpointsRequest{}, as(adminToken))
	grpctest.RequireCode(t, err, codes.Unauthenticated)

	// ListEventTypes is public.
	resp, err := h.api.ListEventTypes(ctx(t), &registryv1.ListEventTypesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetEventTypes()) != 10 || resp.GetEventTypes()[0].GetName() != "transcription.started" {
		t.Fatalf("event types %v", resp.GetEventTypes())
	}
	for _, et := range resp.GetEventTypes() {
		if et.GetSchema().GetFields()["type"].GetStringValue() != "object" || et.GetDescription() == "" {
			t.Fatalf("%s: schema %v", et.GetName(), et.GetSchema())
		}
	}
}

func TestSettings(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")
	upd := func(s *registryv1.Settings, paths ...string) (*registryv1.UpdateSettingsResponse, error) {
		req := &registryv1.UpdateSettingsRequest{Settings: s}
		if paths != nil {
			req.UpdateMask = &fieldmaskpb.FieldMask{Paths: paths}
		}
		return h.api.UpdateSettings(ctx(t), req, as(key))
	}
	resp, err := upd(&registryv1.Settings{NotificationEmail: "a@b.test", CreditsLowThreshold: 10}, "notification_email", "credits_low_threshold")
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetSettings().GetCreditsLowThreshold() != 10 || resp.GetSettings().GetNotificationEmail() != "a@b.test" {
		t.Fatalf("settings %v", resp.GetSettings())
	}
	// Only the masked field changes.
	resp, err = upd(&registryv1.Settings{CreditsLowThreshold: 2.5}, "credits_low_threshold")
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetSettings().GetCreditsLowThreshold() != 2.5 || resp.GetSettings().GetNotificationEmail() != "a@b.test" {
		t.Fatalf("settings %v", resp.GetSettings())
	}
	hash, _ := h.redis.Client.HGetAll(context.Background(), "wh:{a:"+acct+"}:account").Result()
	if hash["credits_low_threshold"] != "2.5" || hash["notification_email"] != "a@b.test" || hash["name"] != "Acme" || hash["created"] == "" {
		t.Fatalf("account hash %v", hash)
	}

	_, err = upd(&registryv1.Settings{CreditsLowThreshold: -1}, "credits_low_threshold")
	wantInvalid(t, err, "credits_low_threshold")
	_, err = upd(&registryv1.Settings{NotificationEmail: "nope"}, "notification_email")
	wantInvalid(t, err, "notification_email")
	_, err = upd(&registryv1.Settings{CreditsLowThreshold: 1})
	wantInvalid(t, err, "update_mask")
	_, err = upd(&registryv1.Settings{CreditsLowThreshold: 1}, "name")
	wantInvalid(t, err, "update_mask")

	st, err := h.api.GetSettings(ctx(t), &registryv1.GetSettingsRequest{}, as(key))
	if err != nil {
		t.Fatal(err)
	}
	if st.GetSettings().GetCreditsLowThreshold() != 2.5 {
		t.Fatalf("refused updates changed settings: %v", st.GetSettings())
	}
}

func TestAuthenticate(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")
	resp, err := h.internal.Authenticate(ctx(t), &registryv1.AuthenticateRequest{ApiKey: key})
	if err != nil || resp.GetAccountId() != acct {
		t.Fatalf("Authenticate = %v, %v", resp, err)
	}
	for _, k := range []string{"", "vsk_nope", key + "x"} {
		_, err = h.internal.Authenticate(ctx(t), &registryv1.AuthenticateRequest{ApiKey: k})
		grpctest.RequireCode(t, err, codes.NotFound)
	}
}

func TestInternalToken(t *testing.T) {
	h := newHarness(t, options{adminToken: adminToken, internalToken: "inside"})
	_, key := h.account("Acme")
	_, err := h.bare.Authenticate(ctx(t), &registryv1.AuthenticateRequest{ApiKey: key})
	grpctest.RequireCode(t, err, codes.Unauthenticated)
	// A customer key is not the internal credential.
	_, err = h.bare.Authenticate(ctx(t), &registryv1.AuthenticateRequest{ApiKey: key}, as(key))
	grpctest.RequireCode(t, err, codes.Unauthenticated)
	if _, err := h.bare.Authenticate(ctx(t), &registryv1.AuthenticateRequest{ApiKey: key}, as("inside")); err != nil {
		t.Fatal(err)
	}
}
