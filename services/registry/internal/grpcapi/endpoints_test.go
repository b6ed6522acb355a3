package grpcapi_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/grpctest"
	"github.com/voxscriber/webhooks/pkg/signing"
)

const (
	active   = registryv1.EndpointStatus_ENDPOINT_STATUS_ACTIVE
	inactive = registryv1.EndpointStatus_ENDPOINT_STATUS_INACTIVE
	disabled = registryv1.EndpointStatus_ENDPOINT_STATUS_DISABLED
)

func TestEndpointCRUD(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")

	created := h.endpoint(key, &registryv1.CreateEndpointRequest{
		Url:         "https://hooks.example.com/vox",
		EventTypes:  []string{"transcription.completed", "transcription.failed"},
		Description: "production receiver",
		Headers:     map[string]string{"Authorization": "Bearer abc", "X-Team": "audio"},
	})
	ep, secret := created.GetEndpoint(), created.GetSecret()
	if _, err := signing.ParseSecret(secret); err != nil {
		t.Fatalf("generated secret %q: %v", secret, err)
	}
	if !strings.HasPrefix(ep.GetId(), "ep_") || ep.GetStatus() != active || ep.GetCreateTime() == nil || ep.GetUpdateTime() == nil {
		t.Fatalf("created %v", ep)
	}
	if ep.GetDisableTime() != nil || ep.GetDisabledReason() != "" {
		t.Fatalf("fresh endpoint looks disabled: %v", ep)
	}

	got, err := h.api.GetEndpoint(ctx(t), &registryv1.GetEndpointRequest{Id: ep.GetId()}, as(key))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.GetEndpoint(), ep) {
		t.Fatalf("get\n%v\nwant\n%v", got.GetEndpoint(), ep)
	}

	list, err := h.api.ListEndpoints(ctx(t), &registryv1.ListEndpointsRequest{}, as(key))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetEndpoints()) != 1 || !proto.Equal(list.GetEndpoints()[0], ep) || list.GetNextPageToken() != "" {
		t.Fatalf("list %v", list)
	}

	h.clock.Advance(time.Second)
	upd, err := h.api.UpdateEndpoint(ctx(t), &registryv1.UpdateEndpointRequest{
		Id:         ep.GetId(),
		Endpoint:   &registryv1.Endpoint{Description: "renamed", Url: "https://ignored.example/"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}},
	}, as(key))
	if err != nil {
		t.Fatal(err)
	}
	if upd.GetEndpoint().GetDescription() != "renamed" || upd.GetEndpoint().GetUrl() != ep.GetUrl() ||
		!upd.GetEndpoint().GetUpdateTime().AsTime().After(ep.GetUpdateTime().AsTime()) {
		t.Fatalf("updated %v", upd.GetEndpoint())
	}

	if _, err := h.api.DeleteEndpoint(ctx(t), &registryv1.DeleteEndpointRequest{Id: ep.GetId()}, as(key)); err != nil {
		t.Fatal(err)
	}
	_, err = h.api.GetEndpoint(ctx(t), &registryv1.GetEndpointRequest{Id: ep.GetId()}, as(key))
	grpctest.RequireCode(t, err, codes.NotFound)
	_, err = h.api.DeleteEndpoint(ctx(t), &registryv1.DeleteEndpointRequest{Id: ep.GetId()}, as(key))
	grpctest.RequireCode(t, err, codes.NotFound)
	if n := h.epsCount(acct); n != 0 {
		t.Fatalf("eps has %d members after delete", n)
	}
	for _, k := range h.keys() {
		if strings.Contains(k, ":ep:") {
			t.Fatalf("%s left after delete", k)
		}
	}

	// Ids that cannot exist are NotFound; a missing id names the field.
	_, err = h.api.GetEndpoint(ctx(t), &registryv1.GetEndpointRequest{Id: "ep_nope"}, as(key))
	grpctest.RequireCode(t, err, codes.NotFound)
	_, err = h.api.GetEndpoint(ctx(t), &registryv1.GetEndpointRequest{}, as(key))
	wantInvalid(t, err, "id")
}

func TestCreateEndpointWithSecretAndStatus(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")
	mine := "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	resp := h.endpoint(key, &registryv1.CreateEndpointRequest{Secret: mine, Status: inactive})
	if resp.GetSecret() != mine || resp.GetEndpoint().GetStatus() != inactive {
		t.Fatalf("created %v secret %q", resp.GetEndpoint(), resp.GetSecret())
	}
	tgt, err := h.internal.GetDeliveryTarget(ctx(t), &registryv1.GetDeliveryTargetRequest{AccountId: acct, EndpointId: resp.GetEndpoint().GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if len(tgt.GetSecrets()) != 1 || tgt.GetSecrets()[0].GetValue() != mine || tgt.GetSecrets()[0].GetExpireTime() != nil {
		t.Fatalf("secrets %v", tgt.GetSecrets())
	}
}

func TestCreateEndpointValidation(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")
	ok := func() *registryv1.CreateEndpointRequest {
		return &registryv1.CreateEndpointRequest{Url: publicURL, EventTypes: []string{"transcription.completed"}}
	}
	manyHeaders := map[string]string{}
	for i := range 21 {
		manyHeaders[fmt.Sprintf("X-H%d", i)] = "v"
	}
	for _, tc := range []struct {
		name  string
		edit  func(r *registryv1.CreateEndpointRequest)
		field string
	}{
		{"no url", func(r *registryv1.CreateEndpointRequest) { r.Url = "" }, "url"},
		{"http", func(r *registryv1.CreateEndpointRequest) { r.Url = "http://93.184.216.34/hook" }, "url"},
		{"ftp", func(r *registryv1.CreateEndpointRequest) { r.Url = "ftp://93.184.216.34/hook" }, "url"},
		{"loopback", func(r *registryv1.CreateEndpointRequest) { r.Url = "https://127.0.0.1/hook" }, "url"},
		{"private", func(r *registryv1.CreateEndpointRequest) { r.Url = "https://10.1.2.3/hook" }, "url"},
		{"metadata", func(r *registryv1.CreateEndpointRequest) { r.Url = "https://169.254.169.254/latest" }, "url"},
		{"name resolving to private", func(r *registryv1.CreateEndpointRequest) { r.Url = "https://internal.example.com/h" }, "url"},
		{"unresolvable", func(r *registryv1.CreateEndpointRequest) { r.Url = "https://nxdomain.example.com/h" }, "url"},
		{"no event types", func(r *registryv1.CreateEndpointRequest) { r.EventTypes = nil }, "event_types"},
		{"unknown event type", func(r *registryv1.CreateEndpointRequest) { r.EventTypes = []string{"transcription.exploded"} }, "event_types[0]"},
		{"duplicate event type", func(r *registryv1.CreateEndpointRequest) {
			r.EventTypes = []string{"upload.completed", "credits.low", "upload.completed"}
		}, "event_types[2]"},
		{"unknown wildcard", func(r *registryv1.CreateEndpointRequest) { r.EventTypes = []string{"credits.low", "billing.*"} }, "event_types[1]"},
		{"empty event type", func(r *registryv1.CreateEndpointRequest) { r.EventTypes = []string{""} }, "event_types[0]"},
		{"long description", func(r *registryv1.CreateEndpointRequest) { r.Description = strings.Repeat("é", 257) }, "description"},
		{"content-type", func(r *registryv1.CreateEndpointRequest) { r.Headers = map[string]string{"Content-Type": "text/plain"} }, `headers["Content-Type"]`},
		{"host", func(r *registryv1.CreateEndpointRequest) { r.Headers = map[string]string{"HOST": "evil"} }, `headers["HOST"]`},
		{"user-agent", func(r *registryv1.CreateEndpointRequest) { r.Headers = map[string]string{"user-agent": "x"} }, `headers["user-agent"]`},
		{"traceparent", func(r *registryv1.CreateEndpointRequest) { r.Headers = map[string]string{"Traceparent": "x"} }, `headers["Traceparent"]`},
		{"x-webhook-*", func(r *registryv1.CreateEndpointRequest) { r.Headers = map[string]string{"X-Webhook-Signature": "x"} }, `headers["X-Webhook-Signature"]`},
		{"webhook-*", func(r *registryv1.CreateEndpointRequest) { r.Headers = map[string]string{"Webhook-Id": "x"} }, `headers["Webhook-Id"]`},
		{"header name", func(r *registryv1.CreateEndpointRequest) { r.Headers = map[string]string{"Bad Header": "x"} }, `headers["Bad Header"]`},
		{"header CRLF", func(r *registryv1.CreateEndpointRequest) { r.Headers = map[string]string{"X-A": "ok\r\nX-B: injected"} }, `headers["X-A"]`},
		{"too many headers", func(r *registryv1.CreateEndpointRequest) { r.Headers = manyHeaders }, "headers"},
		{"secret prefix", func(r *registryv1.CreateEndpointRequest) { r.Secret = "hunter2hunter2hunter2hunter2" }, "secret"},
		{"secret short", func(r *registryv1.CreateEndpointRequest) { r.Secret = "whsec_c2hvcnQ=" }, "secret"},
		{"secret base64", func(r *registryv1.CreateEndpointRequest) { r.Secret = "whsec_!!!not base64!!!" }, "secret"},
		{"status disabled", func(r *registryv1.CreateEndpointRequest) { r.Status = disabled }, "status"},
		{"status unknown", func(r *registryv1.CreateEndpointRequest) { r.Status = 42 }, "status"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := ok()
			tc.edit(req)
			_, err := h.api.CreateEndpoint(ctx(t), req, as(key))
			wantInvalid(t, err, tc.field)
			if n := h.epsCount(acct); n != 0 {
				t.Fatalf("refused endpoint stored (%d in eps)", n)
			}
		})
	}
	for _, k := range h.keys() {
		if strings.Contains(k, ":ep:") || strings.HasSuffix(k, ":ver") {
			t.Fatalf("refused endpoints left %s", k)
		}
	}

	// Wildcards and case-preserved custom headers are fine.
	h.endpoint(key, &registryv1.CreateEndpointRequest{
		EventTypes: []string{"transcription.*", "upload.completed"},
		Headers:    map[string]string{"X-Custom": "v\tx", "Authorization": "Bearer t"},
	})
	h.endpoint(key, &registryv1.CreateEndpointRequest{EventTypes: []string{"*"}})
}

func TestDevelopmentURLPolicy(t *testing.T) {
	h := newHarness(t, options{adminToken: adminToken, allowHTTP: true, allowedCIDRs: "127.0.0.0/8, ::1"})
	_, key := h.account("Dev")
	for _, u := range []string{"http://127.0.0.1:8080/hook", "https://[::1]:9443/hook", "http://93.184.216.34/hook"} {
		h.endpoint(key, &registryv1.CreateEndpointRequest{Url: u})
	}
	_, err := h.api.CreateEndpoint(ctx(t), &registryv1.CreateEndpointRequest{
		Url: "http://10.0.0.1/hook", EventTypes: []string{"credits.low"},
	}, as(key))
	wantInvalid(t, err, "url")
}

func TestCrossAccountIsolation(t *testing.T) {
	h := newHarness(t)
	acctA, keyA := h.account("A")
	acctB, keyB := h.account("B")
	ep := h.endpoint(keyA, &registryv1.CreateEndpointRequest{}).GetEndpoint()
	id := ep.GetId()
	c := ctx(t)

	calls := map[string]func() error{
		"get": func() error {
			_, err := h.api.GetEndpoint(c, &registryv1.GetEndpointRequest{Id: id}, as(keyB))
			return err
		},
		"update": func() error {
			_, err := h.api.UpdateEndpoint(c, &registryv1.UpdateEndpointRequest{
				Id: id, Endpoint: &registryv1.Endpoint{Description: "pwned"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}},
			}, as(keyB))
			return err
		},
		"delete": func() error {
			_, err := h.api.DeleteEndpoint(c, &registryv1.DeleteEndpointRequest{Id: id}, as(keyB))
			return err
		},
		"enable": func() error {
			_, err := h.api.EnableEndpoint(c, &registryv1.EnableEndpointRequest{Id: id}, as(keyB))
			return err
		},
		"disable": func() error {
			_, err := h.api.DisableEndpoint(c, &registryv1.DisableEndpointRequest{Id: id}, as(keyB))
			return err
		},
		"rotate": func() error {
			_, err := h.api.RotateEndpointSecret(c, &registryv1.RotateEndpointSecretRequest{Id: id}, as(keyB))
			return err
		},
		"internal target": func() error {
			_, err := h.internal.GetDeliveryTarget(c, &registryv1.GetDeliveryTargetRequest{AccountId: acctB, EndpointId: id})
			return err
		},
		"internal disable": func() error {
			_, err := h.internal.DisableEndpointBySystem(c, &registryv1.DisableEndpointBySystemRequest{AccountId: acctB, EndpointId: id, Reason: "x"})
			return err
		},
	}
	before := h.redis.Client.Get(context.Background(), "wh:{a:"+acctA+"}:ep:"+id).Val()
	for name, call := range calls {
		err := call()
		grpctest.RequireCode(t, err, codes.NotFound)
		if strings.Contains(err.Error(), acctA) {
			t.Fatalf("%s: error reveals the owner: %v", name, err)
		}
	}
	after := h.redis.Client.Get(context.Background(), "wh:{a:"+acctA+"}:ep:"+id).Val()
	if before != after {
		t.Fatalf("A's endpoint changed:\n%s\n%s", before, after)
	}
	got, err := h.api.GetEndpoint(c, &registryv1.GetEndpointRequest{Id: id}, as(keyA))
	if err != nil || !proto.Equal(got.GetEndpoint(), ep) {
		t.Fatalf("A's endpoint: %v, %v", got, err)
	}
	list, err := h.api.ListEndpoints(c, &registryv1.ListEndpointsRequest{}, as(keyB))
	if err != nil || len(list.GetEndpoints()) != 0 {
		t.Fatalf("B lists %v, %v", list, err)
	}
	subs, err := h.internal.ListSubscribers(c, &registryv1.ListSubscribersRequest{AccountId: acctB, EventType: "transcription.completed"})
	if err != nil || len(subs.GetEndpointIds()) != 0 {
		t.Fatalf("B subscribers %v, %v", subs, err)
	}
}

func TestPagination(t *testing.T) {
	for _, sameMillisecond := range []bool{false, true} {
		t.Run(fmt.Sprintf("same_ms=%v", sameMillisecond), func(t *testing.T) {
			h := newHarness(t)
			acct, key := h.account("Acme")
			for range 7 {
				h.endpoint(key, &registryv1.CreateEndpointRequest{})
				if !sameMillisecond {
					h.clock.Advance(time.Millisecond)
				}
			}
			// Oldest first: the eps zset's order (score, then id).
			want, _ := h.redis.Client.ZRange(context.Background(), "wh:{a:"+acct+"}:eps", 0, -1).Result()
			var got []string
			var sizes []int
			token := ""
			for page := 0; ; page++ {
				resp, err := h.api.ListEndpoints(ctx(t), &registryv1.ListEndpointsRequest{PageSize: 3, PageToken: token}, as(key))
				if err != nil {
					t.Fatal(err)
				}
				sizes = append(sizes, len(resp.GetEndpoints()))
				for _, e := range resp.GetEndpoints() {
					got = append(got, e.GetId())
				}
				token = resp.GetNextPageToken()
				if token == "" || page > 5 {
					break
				}
			}
			if !slices.Equal(sizes, []int{3, 3, 1}) || !slices.Equal(got, want) || len(want) != 7 {
				t.Fatalf("pages %v\ngot  %v\nwant %v", sizes, got, want)
			}
			if !sameMillisecond && !slices.IsSorted(got) {
				t.Fatalf("not in creation order: %v", got)
			}
		})
	}

	h := newHarness(t)
	_, key := h.account("Acme")
	for _, tok := range []string{"garbage!", base64.RawURLEncoding.EncodeToString([]byte("12:nope")), "MTI"} {
		_, err := h.api.ListEndpoints(ctx(t), &registryv1.ListEndpointsRequest{PageToken: tok}, as(key))
		wantInvalid(t, err, "page_token")
	}
	_, err := h.api.ListEndpoints(ctx(t), &registryv1.ListEndpointsRequest{PageSize: -1}, as(key))
	wantInvalid(t, err, "page_size")
	// Page sizes above the maximum are capped, not refused.
	if _, err := h.api.ListEndpoints(ctx(t), &registryv1.ListEndpointsRequest{PageSize: 1000}, as(key)); err != nil {
		t.Fatal(err)
	}
}

func TestUpdateMask(t *testing.T) {
	h := newHarness(t)
	_, key := h.account("Acme")
	ep := h.endpoint(key, &registryv1.CreateEndpointRequest{
		Description: "d", Headers: map[string]string{"X-A": "1"},
	}).GetEndpoint()
	update := func(e *registryv1.Endpoint, paths ...string) (*registryv1.Endpoint, error) {
		req := &registryv1.UpdateEndpointRequest{Id: ep.GetId(), Endpoint: e}
		if paths != nil {
			req.UpdateMask = &fieldmaskpb.FieldMask{Paths: paths}
		}
		resp, err := h.api.UpdateEndpoint(ctx(t), req, as(key))
		return resp.GetEndpoint(), err
	}

	got, err := update(&registryv1.Endpoint{
		Url: publicURL2, EventTypes: []string{"*"}, Description: "ignored", Headers: map[string]string{},
	}, "url", "event_types", "headers")
	if err != nil {
		t.Fatal(err)
	}
	if got.GetUrl() != publicURL2 || !slices.Equal(got.GetEventTypes(), []string{"*"}) ||
		got.GetDescription() != "d" || len(got.GetHeaders()) != 0 {
		t.Fatalf("updated %v", got)
	}
	got, err = update(&registryv1.Endpoint{Status: inactive}, "status")
	if err != nil || got.GetStatus() != inactive {
		t.Fatalf("status update: %v, %v", got, err)
	}
	// Output-only fields sent back from a GET are ignored.
	if _, err := update(got, "id", "create_time", "description"); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		e     *registryv1.Endpoint
		paths []string
		field string
	}{
		{&registryv1.Endpoint{Description: "x"}, nil, "update_mask"},
		{&registryv1.Endpoint{Description: "x"}, []string{}, "update_mask"},
		{&registryv1.Endpoint{Description: "x"}, []string{"description", "secret"}, "update_mask"},
		{&registryv1.Endpoint{Status: disabled}, []string{"status"}, "status"},
		{&registryv1.Endpoint{}, []string{"status"}, "status"},
		{&registryv1.Endpoint{Url: "https://10.0.0.1/"}, []string{"url"}, "url"},
		{&registryv1.Endpoint{}, []string{"event_types"}, "event_types"},
		{&registryv1.Endpoint{Headers: map[string]string{"webhook-signature": "x"}}, []string{"headers"}, `headers["webhook-signature"]`},
	} {
		before, _ := h.api.GetEndpoint(ctx(t), &registryv1.GetEndpointRequest{Id: ep.GetId()}, as(key))
		_, err := update(tc.e, tc.paths...)
		wantInvalid(t, err, tc.field)
		after, _ := h.api.GetEndpoint(ctx(t), &registryv1.GetEndpointRequest{Id: ep.GetId()}, as(key))
		if !proto.Equal(before.GetEndpoint(), after.GetEndpoint()) {
			t.Fatalf("refused update %v changed the endpoint", tc.paths)
		}
	}
}

func TestEnableDisable(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")
	id := h.endpoint(key, &registryv1.CreateEndpointRequest{}).GetEndpoint().GetId()

	d, err := h.api.DisableEndpoint(ctx(t), &registryv1.DisableEndpointRequest{Id: id}, as(key))
	if err != nil || d.GetEndpoint().GetStatus() != inactive {
		t.Fatalf("disable: %v, %v", d, err)
	}
	e, err := h.api.EnableEndpoint(ctx(t), &registryv1.EnableEndpointRequest{Id: id}, as(key))
	if err != nil || e.GetEndpoint().GetStatus() != active {
		t.Fatalf("enable: %v, %v", e, err)
	}

	h.clock.Advance(time.Minute)
	sys, err := h.internal.DisableEndpointBySystem(ctx(t), &registryv1.DisableEndpointBySystemRequest{
		AccountId: acct, EndpointId: id, Reason: "5 consecutive failures (last: connect refused)",
	})
	if err != nil {
		t.Fatal(err)
	}
	se := sys.GetEndpoint()
	if se.GetStatus() != disabled || se.GetDisabledReason() != "5 consecutive failures (last: connect refused)" ||
		!se.GetDisableTime().AsTime().Equal(h.clock.Now()) {
		t.Fatalf("system disable: %v", se)
	}
	// Repeating it keeps the first reason and time.
	h.clock.Advance(time.Minute)
	again, err := h.internal.DisableEndpointBySystem(ctx(t), &registryv1.DisableEndpointBySystemRequest{AccountId: acct, EndpointId: id, Reason: "410 Gone"})
	if err != nil || !proto.Equal(again.GetEndpoint(), se) {
		t.Fatalf("second system disable: %v, %v", again, err)
	}

	e, err = h.api.EnableEndpoint(ctx(t), &registryv1.EnableEndpointRequest{Id: id}, as(key))
	if err != nil {
		t.Fatal(err)
	}
	if ee := e.GetEndpoint(); ee.GetStatus() != active || ee.GetDisabledReason() != "" || ee.GetDisableTime() != nil {
		t.Fatalf("re-enabled %v", ee)
	}

	_, err = h.internal.DisableEndpointBySystem(ctx(t), &registryv1.DisableEndpointBySystemRequest{EndpointId: id})
	wantInvalid(t, err, "account_id")
	_, err = h.internal.DisableEndpointBySystem(ctx(t), &registryv1.DisableEndpointBySystemRequest{AccountId: acct})
	wantInvalid(t, err, "endpoint_id")
}

func TestRotateSecret(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")
	created := h.endpoint(key, &registryv1.CreateEndpointRequest{})
	id, first := created.GetEndpoint().GetId(), created.GetSecret()
	target := func() []*registryv1.Secret {
		t.Helper()
		resp, err := h.internal.GetDeliveryTarget(ctx(t), &registryv1.GetDeliveryTargetRequest{AccountId: acct, EndpointId: id})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetEndpoint().GetId() != id || resp.GetEndpoint().GetUrl() != publicURL {
			t.Fatalf("target endpoint %v", resp.GetEndpoint())
		}
		return resp.GetSecrets()
	}

	rot, err := h.api.RotateEndpointSecret(ctx(t), &registryv1.RotateEndpointSecretRequest{Id: id, OverlapSeconds: 60}, as(key))
	if err != nil {
		t.Fatal(err)
	}
	second := rot.GetSecret()
	if second == first || !strings.HasPrefix(second, "whsec_") {
		t.Fatalf("rotated secret %q", second)
	}
	s := target()
	if len(s) != 2 || s[0].GetValue() != second || s[0].GetExpireTime() != nil ||
		s[1].GetValue() != first || !s[1].GetExpireTime().AsTime().Equal(h.clock.Now().Add(time.Minute)) {
		t.Fatalf("after rotation: %v", s)
	}

	h.clock.Advance(61 * time.Second)
	if s := target(); len(s) != 1 || s[0].GetValue() != second {
		t.Fatalf("after the overlap: %v", s)
	}

	// The default overlap is a day; the expired secret is dropped from storage.
	rot, err = h.api.RotateEndpointSecret(ctx(t), &registryv1.RotateEndpointSecretRequest{Id: id}, as(key))
	if err != nil {
		t.Fatal(err)
	}
	s = target()
	if len(s) != 2 || s[0].GetValue() != rot.GetSecret() || s[1].GetValue() != second ||
		!s[1].GetExpireTime().AsTime().Equal(h.clock.Now().Add(24*time.Hour)) {
		t.Fatalf("default overlap: %v", s)
	}
	raw := h.redis.Client.Get(context.Background(), "wh:{a:"+acct+"}:ep:"+id).Val()
	if n := strings.Count(raw, `"sealed"`); n != 2 {
		t.Fatalf("stored %d secrets, want 2: %s", n, raw)
	}

	for _, o := range []int64{-1, 7*24*3600 + 1} {
		_, err := h.api.RotateEndpointSecret(ctx(t), &registryv1.RotateEndpointSecretRequest{Id: id, OverlapSeconds: o}, as(key))
		wantInvalid(t, err, "overlap_seconds")
	}
}

func TestNoPlaintextSecretsInRedis(t *testing.T) {
	h := newHarness(t)
	_, key := h.account("Acme")
	mine := "whsec_" + base64.StdEncoding.EncodeToString([]byte("my very own secret of 32 bytes!!"))
	secrets := []string{h.endpoint(key, &registryv1.CreateEndpointRequest{Secret: mine}).GetSecret()}
	ep := h.endpoint(key, &registryv1.CreateEndpointRequest{})
	secrets = append(secrets, ep.GetSecret())
	rot, err := h.api.RotateEndpointSecret(ctx(t), &registryv1.RotateEndpointSecretRequest{Id: ep.GetEndpoint().GetId()}, as(key))
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, rot.GetSecret())

	keys := h.keys()
	if len(keys) < 5 {
		t.Fatalf("expected keys, got %v", keys)
	}
	for _, k := range keys {
		v := dump(t, h, k)
		for _, s := range secrets {
			body := strings.TrimPrefix(s, "whsec_")
			if strings.Contains(v, body) || strings.Contains(k, body) {
				t.Fatalf("plaintext secret in %s: %s", k, v)
			}
			// The decoded key bytes must not appear either.
			raw, _ := base64.StdEncoding.DecodeString(body)
			if strings.Contains(v, string(raw)) {
				t.Fatalf("raw secret bytes in %s", k)
			}
		}
		if strings.Contains(v, key) {
			t.Fatalf("API key in %s", k)
		}
	}
}

func TestListSubscribers(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")
	_, otherKey := h.account("Other")
	mk := func(types ...string) string {
		return h.endpoint(key, &registryv1.CreateEndpointRequest{EventTypes: types}).GetEndpoint().GetId()
	}
	exact := mk("transcription.completed")
	h.clock.Advance(time.Millisecond)
	category := mk("transcription.*")
	h.clock.Advance(time.Millisecond)
	all := mk("*")
	h.clock.Advance(time.Millisecond)
	upload := mk("upload.completed", "credits.low")
	h.clock.Advance(time.Millisecond)
	paused := mk("transcription.completed", "*")
	h.clock.Advance(time.Millisecond)
	broken := mk("*")
	h.clock.Advance(time.Millisecond)
	deleted := mk("*")
	h.endpoint(otherKey, &registryv1.CreateEndpointRequest{EventTypes: []string{"*"}})

	if _, err := h.api.DisableEndpoint(ctx(t), &registryv1.DisableEndpointRequest{Id: paused}, as(key)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.internal.DisableEndpointBySystem(ctx(t), &registryv1.DisableEndpointBySystemRequest{AccountId: acct, EndpointId: broken, Reason: "410 Gone"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.api.DeleteEndpoint(ctx(t), &registryv1.DeleteEndpointRequest{Id: deleted}, as(key)); err != nil {
		t.Fatal(err)
	}

	// broken (DISABLED by the system) is listed: delivery parks its events
	// until it is enabled again. paused (INACTIVE) is not.
	for typ, want := range map[string][]string{
		"transcription.completed": {exact, category, all, broken},
		"transcription.started":   {category, all, broken},
		"upload.completed":        {all, upload, broken},
		"credits.low":             {all, upload, broken},
	} {
		resp, err := h.internal.ListSubscribers(ctx(t), &registryv1.ListSubscribersRequest{AccountId: acct, EventType: typ})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(resp.GetEndpointIds(), want) {
			t.Errorf("%s: got %v, want %v", typ, resp.GetEndpointIds(), want)
		}
	}
	_, err := h.internal.ListSubscribers(ctx(t), &registryv1.ListSubscribersRequest{AccountId: acct, EventType: "transcription.*"})
	wantInvalid(t, err, "event_type")
	_, err = h.internal.ListSubscribers(ctx(t), &registryv1.ListSubscribersRequest{EventType: "credits.low"})
	wantInvalid(t, err, "account_id")
}

// TestSubscribersAreActiveAndSystemDisabledEndpointsNeverPausedOnes: an
// endpoint disabled by the system stays a subscriber (its events are parked
// for it and delivered when it is enabled again); one paused by its owner
// is not, until it is enabled.
func TestSubscribersAreActiveAndSystemDisabledEndpointsNeverPausedOnes(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")
	ep := h.endpoint(key, &registryv1.CreateEndpointRequest{EventTypes: []string{"transcription.completed"}}).GetEndpoint().GetId()
	list := func() []string {
		t.Helper()
		resp, err := h.internal.ListSubscribers(ctx(t), &registryv1.ListSubscribersRequest{AccountId: acct, EventType: "transcription.completed"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetEndpointIds()
	}
	steps := []struct {
		name   string
		change func() error
		want   []string
	}{
		{"active", func() error { return nil }, []string{ep}},
		{"disabled by the system", func() error {
			_, err := h.internal.DisableEndpointBySystem(ctx(t), &registryv1.DisableEndpointBySystemRequest{AccountId: acct, EndpointId: ep, Reason: "5 consecutive failed attempts"})
			return err
		}, []string{ep}},
		{"enabled again", func() error {
			_, err := h.api.EnableEndpoint(ctx(t), &registryv1.EnableEndpointRequest{Id: ep}, as(key))
			return err
		}, []string{ep}},
		{"paused by its owner", func() error {
			_, err := h.api.DisableEndpoint(ctx(t), &registryv1.DisableEndpointRequest{Id: ep}, as(key))
			return err
		}, []string{}},
		{"enabled after the pause", func() error {
			_, err := h.api.EnableEndpoint(ctx(t), &registryv1.EnableEndpointRequest{Id: ep}, as(key))
			return err
		}, []string{ep}},
	}
	for _, st := range steps {
		if err := st.change(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := list(); !slices.Equal(got, st.want) {
			t.Errorf("%s: subscribers %v, want %v", st.name, got, st.want)
		}
	}
}

func TestChangesBumpVersionAndPublish(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")
	sub := h.redis.Client.Subscribe(context.Background(), "wh:registry:changed")
	defer sub.Close()
	if _, err := sub.Receive(ctx(t)); err != nil { // subscription confirmation
		t.Fatal(err)
	}
	ver := func() int64 {
		n, _ := h.redis.Client.Get(context.Background(), "wh:{a:"+acct+"}:ver").Int64()
		return n
	}
	next := func(what string) {
		t.Helper()
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		msg, err := sub.ReceiveMessage(c)
		if err != nil || msg.Payload != acct {
			t.Fatalf("%s: message %v, %v", what, msg, err)
		}
	}

	id := h.endpoint(key, &registryv1.CreateEndpointRequest{}).GetEndpoint().GetId()
	next("create")
	if ver() != 1 {
		t.Fatalf("ver after create = %d", ver())
	}
	if _, err := h.api.DisableEndpoint(ctx(t), &registryv1.DisableEndpointRequest{Id: id}, as(key)); err != nil {
		t.Fatal(err)
	}
	next("disable")
	if _, err := h.api.RotateEndpointSecret(ctx(t), &registryv1.RotateEndpointSecretRequest{Id: id}, as(key)); err != nil {
		t.Fatal(err)
	}
	next("rotate")
	if _, err := h.api.DeleteEndpoint(ctx(t), &registryv1.DeleteEndpointRequest{Id: id}, as(key)); err != nil {
		t.Fatal(err)
	}
	next("delete")
	if ver() != 4 {
		t.Fatalf("ver after 4 changes = %d", ver())
	}
}

// Concurrent changes to one endpoint are all applied (optimistic locking
// with WATCH), none lost.
func TestConcurrentChanges(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")
	id := h.endpoint(key, &registryv1.CreateEndpointRequest{}).GetEndpoint().GetId()
	calls := []func() error{
		func() error {
			_, err := h.api.UpdateEndpoint(ctx(t), &registryv1.UpdateEndpointRequest{
				Id: id, Endpoint: &registryv1.Endpoint{Description: "concurrent"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}},
			}, as(key))
			return err
		},
		func() error {
			_, err := h.api.DisableEndpoint(ctx(t), &registryv1.DisableEndpointRequest{Id: id}, as(key))
			return err
		},
	}
	for range 4 {
		calls = append(calls, func() error {
			_, err := h.api.RotateEndpointSecret(ctx(t), &registryv1.RotateEndpointSecretRequest{Id: id}, as(key))
			return err
		})
	}
	errc := make(chan error, len(calls))
	for _, c := range calls {
		go func() { errc <- c() }()
	}
	for range calls {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	tgt, err := h.internal.GetDeliveryTarget(ctx(t), &registryv1.GetDeliveryTargetRequest{AccountId: acct, EndpointId: id})
	if err != nil {
		t.Fatal(err)
	}
	if e := tgt.GetEndpoint(); e.GetDescription() != "concurrent" || e.GetStatus() != inactive || len(tgt.GetSecrets()) != 5 {
		t.Fatalf("lost a change: %v, %d secrets", e, len(tgt.GetSecrets()))
	}
	if v, _ := h.redis.Client.Get(context.Background(), "wh:{a:"+acct+"}:ver").Int(); v != 1+len(calls) {
		t.Fatalf("ver = %d, want %d", v, 1+len(calls))
	}
}
