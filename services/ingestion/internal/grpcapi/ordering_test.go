package grpcapi_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
)

// The fan-out gives a delivery to an endpoint ordered by key its ordering
// key (the producer's orderingKey, else data.uploadId, else the account)
// and leaves the deliveries to unordered endpoints without one.
func TestFanoutResolvesTheOrderingKeyForOrderedEndpointsOnly(t *testing.T) {
	e := newEnv(t, options{})
	acct, _ := e.customer(t)
	e.reg.Subscribe(acct, "transcription.progress", "ep_plain", "ep_ordered")
	e.reg.Subscribe(acct, "credits.low", "ep_plain", "ep_ordered")
	e.reg.SetOrdering(acct, "ep_ordered", registryv1.EndpointOrdering_ENDPOINT_ORDERING_ORDERED_BY_KEY)

	publish := func(typ, orderingKey string) *ingestionv1.Event {
		t.Helper()
		resp, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
			AccountId: acct, Type: typ, Data: sample(t, typ, "uploadId", "upl_42"), OrderingKey: orderingKey,
		})
		if err != nil {
			t.Fatalf("publish %s: %v", typ, err)
		}
		return resp.GetEvent()
	}
	withKey := publish("transcription.progress", "job-7")
	byUpload := publish("transcription.progress", "")
	cl, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
		AccountId: acct, Type: "credits.low", Data: sample(t, "credits.low", "uploadId", deleted),
	})
	if err != nil {
		t.Fatalf("publish credits.low: %v", err)
	}
	if withKey.GetOrderingKey() != "job-7" || byUpload.GetOrderingKey() != "" {
		t.Errorf("events answer ordering keys %q and %q", withKey.GetOrderingKey(), byUpload.GetOrderingKey())
	}
	want := map[string]string{withKey.GetId(): "job-7", byUpload.GetId(): "upl_42", cl.GetEvent().GetId(): acct}
	seen := 0
	for _, c := range e.dlv.calls() {
		for _, it := range c.GetItems() {
			got := it.GetOrderingKey()
			switch it.GetEndpointId() {
			case "ep_plain":
				if got != "" {
					t.Errorf("unordered endpoint: %s has ordering key %q", it.GetEventId(), got)
				}
			case "ep_ordered":
				seen++
				if got != want[it.GetEventId()] {
					t.Errorf("ordered endpoint: %s has ordering key %q, want %q", it.GetEventId(), got, want[it.GetEventId()])
				}
			}
		}
	}
	if seen != 3 {
		t.Errorf("%d deliveries to the ordered endpoint, want 3", seen)
	}
}

func TestPublishRefusesABadOrderingKey(t *testing.T) {
	e := newEnv(t, options{})
	acct, _ := e.customer(t)
	for _, key := range []string{strings.Repeat("k", 201), "line\nbreak", "tab\there"} {
		_, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
			AccountId: acct, Type: "transcription.progress", Data: sample(t, "transcription.progress"), OrderingKey: key,
		})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "ordering_key") {
			t.Errorf("ordering key %q: %v, want InvalidArgument naming ordering_key", key, err)
		}
	}
	if keys := e.eventKeys(t); len(keys) != 0 {
		t.Errorf("refused publishes stored %v", keys)
	}
}

// A publish retried after its fan-out was not recorded repeats the fan-out
// with the event's ordering key as repeat_ordering_key on every item,
// ordered endpoint or not, so delivery keeps a delivery the first fan-out
// made under the endpoint's other ordering; a first fan-out sets none.
func TestARepeatedFanoutNamesTheEventsOrderingKey(t *testing.T) {
	e := newEnv(t, options{})
	acct, _ := e.customer(t)
	e.reg.Subscribe(acct, "transcription.progress", "ep_plain", "ep_changed")
	req := &ingestionv1.PublishEventRequest{
		AccountId: acct, Type: "transcription.progress", IdempotencyKey: "p-1",
		Data: sample(t, "transcription.progress", "uploadId", "upl_7"),
	}
	e.dlv.failNext(1)
	if _, err := e.client.PublishEvent(t.Context(), req); status.Code(err) != codes.Unavailable {
		t.Fatalf("first publish: %v, want Unavailable", err)
	}
	e.reg.SetOrdering(acct, "ep_changed", registryv1.EndpointOrdering_ENDPOINT_ORDERING_ORDERED_BY_KEY)
	if _, err := e.client.PublishEvent(t.Context(), req); err != nil {
		t.Fatalf("retry: %v", err)
	}
	fresh, err := e.client.PublishEvent(t.Context(), &ingestionv1.PublishEventRequest{
		AccountId: acct, Type: "transcription.progress", Data: sample(t, "transcription.progress", "uploadId", "upl_8"),
	})
	if err != nil {
		t.Fatal(err)
	}
	calls := e.dlv.calls()
	if len(calls) != 2 {
		t.Fatalf("%d accepted Schedule calls, want 2", len(calls))
	}
	for _, it := range calls[0].GetItems() {
		if it.GetRepeatOrderingKey() != "upl_7" {
			t.Errorf("repeated fan-out to %s: repeat_ordering_key %q, want upl_7", it.GetEndpointId(), it.GetRepeatOrderingKey())
		}
	}
	for _, it := range calls[1].GetItems() {
		if it.GetEventId() != fresh.GetEvent().GetId() || it.GetRepeatOrderingKey() != "" {
			t.Errorf("first fan-out item %v has a repeat_ordering_key", it)
		}
	}
}
