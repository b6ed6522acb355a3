package grpcapi_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/grpctest"
	"github.com/voxscriber/webhooks/pkg/ids"
)

var operationalTypes = []string{"endpoint.disabled", "endpoint.enabled", "delivery.exhausted"}

func TestProducersCannotPublishOperationalEventsAndTheRefusalNamesTheType(t *testing.T) {
	e := newEnv(t, options{})
	acct := ids.New(ids.Account, time.Now())
	for _, typ := range operationalTypes {
		e.reg.Subscribe(acct, typ, ids.New(ids.Endpoint, time.Now()))
		_, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
			AccountId: acct, Type: typ, Data: sample(t, typ), IdempotencyKey: "k-" + typ,
		})
		grpctest.RequireCode(t, err, codes.InvalidArgument, "type: ", typ, "operational")
		if got := fieldViolation(err); got != "type" {
			t.Errorf("%s: BadRequest field = %q, want type", typ, got)
		}
		_, err = e.client.PublishEvents(t.Context(), &ingestionv1.PublishEventsRequest{Events: []*ingestionv1.PublishEventRequest{
			{AccountId: acct, Type: "transcription.started", Data: sample(t, "transcription.started")},
			{AccountId: acct, Type: typ, Data: sample(t, typ)},
		}})
		grpctest.RequireCode(t, err, codes.InvalidArgument, "events[1].type: ", typ)
		if got := fieldViolation(err); got != "events[1].type" {
			t.Errorf("%s batch: BadRequest field = %q, want events[1].type", typ, got)
		}
	}
	if n := e.dbsize(t); n != 0 {
		t.Fatalf("DBSIZE = %d after refused publishes, want 0", n)
	}
	if calls := e.dlv.calls(); len(calls) != 0 {
		t.Errorf("Schedule called %d times for refused events", len(calls))
	}
}

func TestAnOperationalEventReachesTheSubscribersButNeverTheEndpointItIsAbout(t *testing.T) {
	e := newEnv(t, options{})
	acct, custCtx := e.customer(t)
	now := time.Now()
	about, other1, other2 := ids.New(ids.Endpoint, now), ids.New(ids.Endpoint, now), ids.New(ids.Endpoint, now)
	e.reg.Subscribe(acct, "endpoint.disabled", about, other1, other2)
	data := sample(t, "endpoint.disabled", "endpointId", about, "count", 3.0)
	req := &ingestionv1.PublishSystemEventRequest{
		AccountId: acct, Type: "endpoint.disabled", Data: data, EndpointId: about, IdempotencyKey: "endpoint.disabled:" + about + ":1",
	}
	resp, err := e.internal.PublishSystemEvent(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	ev := resp.GetEvent()
	if resp.GetDuplicate() || ev.GetType() != "endpoint.disabled" || ev.GetAccountId() != acct || ev.GetDeliveryCount() != 2 {
		t.Fatalf("PublishSystemEvent = %v", resp)
	}
	var body struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal([]byte(ev.GetPayload()), &body); err != nil || body.Data["endpointId"] != about || body.Data["count"] != 3.0 {
		t.Fatalf("payload %s (%v)", ev.GetPayload(), err)
	}
	calls := e.dlv.calls()
	if len(calls) != 1 {
		t.Fatalf("%d Schedule calls, want 1", len(calls))
	}
	var to []string
	for _, it := range calls[0].GetItems() {
		to = append(to, it.GetEndpointId())
	}
	if slices.Contains(to, about) || len(to) != 2 || !slices.Contains(to, other1) || !slices.Contains(to, other2) {
		t.Fatalf("scheduled to %v; want %s and %s, never %s", to, other1, other2, about)
	}

	// A retry of the emitter is the same event, scheduled nothing new.
	again, err := e.internal.PublishSystemEvent(t.Context(), req)
	if err != nil || !again.GetDuplicate() || again.GetEvent().GetId() != ev.GetId() {
		t.Fatalf("repeat = %v, %v; want the original as a duplicate", again, err)
	}
	if n := len(e.dlv.calls()); n != 1 {
		t.Errorf("%d Schedule calls after a repeat, want 1", n)
	}
	// It is in the account's own stream.
	got, err := e.client.GetEvent(custCtx, &ingestionv1.GetEventRequest{Id: ev.GetId()})
	if err != nil || got.GetEvent().GetPayload() != ev.GetPayload() {
		t.Fatalf("GetEvent = %v, %v", got, err)
	}
}

func TestPublishSystemEventValidatesLikeEveryEventAndTakesOnlyOperationalTypes(t *testing.T) {
	e := newEnv(t, options{})
	acct := ids.New(ids.Account, time.Now())
	ep := ids.New(ids.Endpoint, time.Now())
	e.reg.Subscribe(acct, "delivery.exhausted", ids.New(ids.Endpoint, time.Now()))
	good := func() *ingestionv1.PublishSystemEventRequest {
		return &ingestionv1.PublishSystemEventRequest{AccountId: acct, Type: "delivery.exhausted",
			Data: sample(t, "delivery.exhausted"), EndpointId: ep, IdempotencyKey: "k"}
	}
	tests := []struct {
		name   string
		change func(*ingestionv1.PublishSystemEventRequest)
		field  string
	}{
		{"a producer type", func(r *ingestionv1.PublishSystemEventRequest) {
			r.Type, r.Data = "credits.low", sample(t, "credits.low")
		}, "type"},
		{"no endpoint", func(r *ingestionv1.PublishSystemEventRequest) { r.EndpointId = "" }, "endpoint_id"},
		{"no key", func(r *ingestionv1.PublishSystemEventRequest) { r.IdempotencyKey = "" }, "idempotency_key"},
		{"missing field", func(r *ingestionv1.PublishSystemEventRequest) {
			r.Data = sample(t, "delivery.exhausted", "attempts", deleted)
		}, "data.attempts"},
		{"count of one", func(r *ingestionv1.PublishSystemEventRequest) { r.Data = sample(t, "delivery.exhausted", "count", 1.0) }, "data.count"},
		{"bad account", func(r *ingestionv1.PublishSystemEventRequest) { r.AccountId = "acct_x" }, "account_id"},
	}
	for _, tt := range tests {
		r := good()
		tt.change(r)
		_, err := e.internal.PublishSystemEvent(t.Context(), r)
		grpctest.RequireCode(t, err, codes.InvalidArgument, tt.field+": ")
		if got := fieldViolation(err); got != tt.field {
			t.Errorf("%s: BadRequest field = %q, want %q", tt.name, got, tt.field)
		}
	}
	if n := e.dbsize(t); n != 0 {
		t.Fatalf("DBSIZE = %d after refused operational events, want 0", n)
	}
}
