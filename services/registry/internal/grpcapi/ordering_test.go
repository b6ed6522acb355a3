package grpcapi_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/auditlog"
)

const (
	unordered    = registryv1.EndpointOrdering_ENDPOINT_ORDERING_UNORDERED
	orderedByKey = registryv1.EndpointOrdering_ENDPOINT_ORDERING_ORDERED_BY_KEY
)

// auditSummaries lists the summaries of the account's audit entries still
// in Redis, oldest first.
func (h *harness) auditSummaries(acct string) []string {
	h.t.Helper()
	entries, err := auditlog.Live(context.Background(), h.redis.Client, acct)
	if err != nil {
		h.t.Fatal(err)
	}
	slices.SortFunc(entries, func(a, b auditlog.Entry) int { return strings.Compare(a.ID, b.ID) })
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Summary
	}
	return out
}

// An endpoint's ordering is stored with it, unordered unless asked for,
// read back by GetEndpoint and ListEndpoints, changed by an update naming
// it, and recorded in the audit log.
func TestEndpointOrderingIsStoredReadAndUpdated(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")

	plain := h.endpoint(key, &registryv1.CreateEndpointRequest{}).GetEndpoint()
	h.clock.Advance(time.Millisecond)
	ordered := h.endpoint(key, &registryv1.CreateEndpointRequest{Ordering: orderedByKey}).GetEndpoint()
	h.clock.Advance(time.Millisecond)
	explicit := h.endpoint(key, &registryv1.CreateEndpointRequest{Ordering: unordered}).GetEndpoint()
	if plain.GetOrdering() != unordered || ordered.GetOrdering() != orderedByKey || explicit.GetOrdering() != unordered {
		t.Fatalf("created orderings %v, %v, %v", plain.GetOrdering(), ordered.GetOrdering(), explicit.GetOrdering())
	}
	if got := dump(t, h, "wh:{a:"+acct+"}:ep:"+ordered.GetId()); !strings.Contains(got, `"ordering":"ORDERED_BY_KEY"`) {
		t.Fatalf("stored endpoint %s", got)
	}

	got, err := h.api.GetEndpoint(ctx(t), &registryv1.GetEndpointRequest{Id: ordered.GetId()}, as(key))
	if err != nil || got.GetEndpoint().GetOrdering() != orderedByKey {
		t.Fatalf("get: %v, %v", got, err)
	}
	list, err := h.api.ListEndpoints(ctx(t), &registryv1.ListEndpointsRequest{}, as(key))
	if err != nil {
		t.Fatal(err)
	}
	var orderings []registryv1.EndpointOrdering
	for _, e := range list.GetEndpoints() {
		orderings = append(orderings, e.GetOrdering())
	}
	if !slices.Equal(orderings, []registryv1.EndpointOrdering{unordered, orderedByKey, unordered}) {
		t.Fatalf("listed orderings %v", orderings)
	}

	update := func(id string, o registryv1.EndpointOrdering, paths ...string) (*registryv1.Endpoint, error) {
		resp, err := h.api.UpdateEndpoint(ctx(t), &registryv1.UpdateEndpointRequest{
			Id: id, Endpoint: &registryv1.Endpoint{Ordering: o, Description: "x"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
		}, as(key))
		return resp.GetEndpoint(), err
	}
	if e, err := update(plain.GetId(), orderedByKey, "ordering"); err != nil || e.GetOrdering() != orderedByKey || e.GetDescription() != "" {
		t.Fatalf("update to ordered: %v, %v", e, err)
	}
	// A mask without ordering leaves it alone.
	if e, err := update(plain.GetId(), unordered, "description"); err != nil || e.GetOrdering() != orderedByKey {
		t.Fatalf("update of another field: %v, %v", e, err)
	}
	if e, err := update(ordered.GetId(), unordered, "ordering"); err != nil || e.GetOrdering() != unordered {
		t.Fatalf("update to unordered: %v, %v", e, err)
	}
	// Unset (UNSPECIFIED) is the default, as on create: unordered.
	if _, err := update(plain.GetId(), orderedByKey, "ordering"); err != nil {
		t.Fatal(err)
	}
	if e, err := update(plain.GetId(), registryv1.EndpointOrdering_ENDPOINT_ORDERING_UNSPECIFIED, "ordering"); err != nil || e.GetOrdering() != unordered {
		t.Fatalf("update to unspecified: %v, %v", e, err)
	}
	got, err = h.api.GetEndpoint(ctx(t), &registryv1.GetEndpointRequest{Id: ordered.GetId()}, as(key))
	if err != nil || got.GetEndpoint().GetOrdering() != unordered {
		t.Fatalf("get after update: %v, %v", got, err)
	}

	summaries := h.auditSummaries(acct)
	for _, want := range []string{
		"status ACTIVE, ordering UNORDERED,",
		"status ACTIVE, ordering ORDERED_BY_KEY,",
		"ordering UNORDERED → ORDERED_BY_KEY",
		"ordering ORDERED_BY_KEY → UNORDERED",
	} {
		if !slices.ContainsFunc(summaries, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("no audit summary contains %q: %q", want, summaries)
		}
	}
}

// An ordering outside the enum is refused, naming the field, and changes
// nothing.
func TestEndpointOrderingOutsideTheEnumIsRefused(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")
	bad := registryv1.EndpointOrdering(7)

	_, err := h.api.CreateEndpoint(ctx(t), &registryv1.CreateEndpointRequest{
		Url: publicURL, EventTypes: []string{"transcription.completed"}, Ordering: bad,
	}, as(key))
	wantInvalid(t, err, "ordering")
	if n := h.epsCount(acct); n != 0 {
		t.Fatalf("%d endpoints after a refused create", n)
	}

	ep := h.endpoint(key, &registryv1.CreateEndpointRequest{Ordering: orderedByKey}).GetEndpoint()
	_, err = h.api.UpdateEndpoint(ctx(t), &registryv1.UpdateEndpointRequest{
		Id: ep.GetId(), Endpoint: &registryv1.Endpoint{Ordering: bad}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"ordering"}},
	}, as(key))
	wantInvalid(t, err, "ordering")
	got, err := h.api.GetEndpoint(ctx(t), &registryv1.GetEndpointRequest{Id: ep.GetId()}, as(key))
	if err != nil || got.GetEndpoint().GetOrdering() != orderedByKey {
		t.Fatalf("after a refused update: %v, %v", got, err)
	}
}

// An endpoint stored before orderings existed (no "ordering" in its JSON)
// reads as unordered, and is no ordered subscriber.
func TestAnEndpointStoredWithoutOrderingReadsAsUnordered(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")
	ep := h.endpoint(key, &registryv1.CreateEndpointRequest{Ordering: orderedByKey}).GetEndpoint()
	k := "wh:{a:" + acct + "}:ep:" + ep.GetId()
	old := strings.Replace(dump(t, h, k), `"ordering":"ORDERED_BY_KEY",`, "", 1)
	if strings.Contains(old, "ordering") {
		t.Fatalf("could not strip the ordering from %s", old)
	}
	if err := h.redis.Client.Set(context.Background(), k, old, 0).Err(); err != nil {
		t.Fatal(err)
	}

	got, err := h.api.GetEndpoint(ctx(t), &registryv1.GetEndpointRequest{Id: ep.GetId()}, as(key))
	if err != nil || got.GetEndpoint().GetOrdering() != unordered {
		t.Fatalf("get: %v, %v", got, err)
	}
	list, err := h.api.ListEndpoints(ctx(t), &registryv1.ListEndpointsRequest{}, as(key))
	if err != nil || len(list.GetEndpoints()) != 1 || list.GetEndpoints()[0].GetOrdering() != unordered {
		t.Fatalf("list: %v, %v", list, err)
	}
	subs, err := h.internal.ListSubscribers(ctx(t), &registryv1.ListSubscribersRequest{AccountId: acct, EventType: "transcription.completed"})
	if err != nil || !slices.Equal(subs.GetEndpointIds(), []string{ep.GetId()}) || len(subs.GetOrderedEndpointIds()) != 0 {
		t.Fatalf("subscribers: %v, %v", subs, err)
	}
}

// ListSubscribers names, among the subscribers, those ordered by key.
func TestListSubscribersNamesTheOrderedEndpoints(t *testing.T) {
	h := newHarness(t)
	acct, key := h.account("Acme")
	mk := func(o registryv1.EndpointOrdering, types ...string) string {
		h.clock.Advance(time.Millisecond)
		return h.endpoint(key, &registryv1.CreateEndpointRequest{EventTypes: types, Ordering: o}).GetEndpoint().GetId()
	}
	plain := mk(unordered, "*")
	ordered := mk(orderedByKey, "transcription.*")
	orderedUpload := mk(orderedByKey, "upload.completed")
	orderedBroken := mk(orderedByKey, "*")
	orderedPaused := mk(orderedByKey, "*")
	later := mk(registryv1.EndpointOrdering_ENDPOINT_ORDERING_UNSPECIFIED, "*")
	if _, err := h.api.DisableEndpoint(ctx(t), &registryv1.DisableEndpointRequest{Id: orderedPaused}, as(key)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.internal.DisableEndpointBySystem(ctx(t), &registryv1.DisableEndpointBySystemRequest{AccountId: acct, EndpointId: orderedBroken, Reason: "410 Gone"}); err != nil {
		t.Fatal(err)
	}

	for typ, want := range map[string][2][]string{
		"transcription.completed": {{plain, ordered, orderedBroken, later}, {ordered, orderedBroken}},
		"upload.completed":        {{plain, orderedUpload, orderedBroken, later}, {orderedUpload, orderedBroken}},
		"credits.low":             {{plain, orderedBroken, later}, {orderedBroken}},
	} {
		resp, err := h.internal.ListSubscribers(ctx(t), &registryv1.ListSubscribersRequest{AccountId: acct, EventType: typ})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(resp.GetEndpointIds(), want[0]) || !slices.Equal(resp.GetOrderedEndpointIds(), want[1]) {
			t.Errorf("%s: got %v ordered %v, want %v ordered %v", typ, resp.GetEndpointIds(), resp.GetOrderedEndpointIds(), want[0], want[1])
		}
	}
}
