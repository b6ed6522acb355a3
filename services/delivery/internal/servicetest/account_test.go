package servicetest

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/signing"
	"github.com/voxscriber/webhooks/services/delivery/internal/grpcapi"
)

// TestScheduleOnlyAcceptsEventsOfTheAccountItNames: a Schedule call that
// names the attacker's account and endpoint but the victim's event (or an
// event never stored) is refused whole, naming the event, and nothing is
// scheduled: the victim's body never reaches the attacker's endpoint, and
// no delivery joins either account's list.
func TestScheduleOnlyAcceptsEventsOfTheAccountItNames(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{workers: 2})
	victim, victimKey := e.account()
	attacker, attackerKey := e.account()
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) { w.WriteHeader(http.StatusOK) })
	e.reg.SetEndpoint(attacker, "ep_attacker", rc.url("/steal"), active(), nil, signing.GenerateSecret())
	secret, _ := e.publish(victim, completed)
	own, _ := e.publish(attacker, completed)

	for name, items := range map[string][]*deliveryv1.ScheduleItem{
		"another account's event":        {item(secret, "ep_attacker")},
		"mixed with one of its own":      {item(own, "ep_attacker"), item(secret, "ep_attacker")},
		"an event that was never stored": {item("evt_01KBXYZ0000000000000000000", "ep_attacker")},
	} {
		_, err := p.client.Schedule(context.Background(), &deliveryv1.ScheduleRequest{
			AccountId: attacker, EventType: completed, Items: items,
		}, as(internalToken))
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "evt_") {
			t.Errorf("%s: Schedule = %v, want InvalidArgument naming the event", name, err)
		}
	}
	time.Sleep(300 * time.Millisecond) // a wrongly scheduled first attempt is due at once
	if n := len(rc.requests()); n != 0 {
		t.Fatalf("the attacker's endpoint got %d requests", n)
	}
	for who, key := range map[string]string{"attacker": attackerKey, "victim": victimKey} {
		resp, err := p.client.ListDeliveries(context.Background(), &deliveryv1.ListDeliveriesRequest{}, as(key))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(resp.GetDeliveries()); n != 0 {
			t.Errorf("%s lists %d deliveries after refused Schedule calls: %v", who, n, resp.GetDeliveries())
		}
	}

	// The account's own events are scheduled as before.
	id := p.schedule(t, context.Background(), attacker, completed, item(own, "ep_attacker"))[0]
	p.waitStatus(t, attackerKey, id, deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 10*time.Second)
}

// TestScheduleNeedsTheInternalToken: a customer key, or nothing, never
// schedules.
func TestScheduleNeedsTheInternalToken(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{noWorker: true})
	acct, key := e.account()
	evt, _ := e.publish(acct, completed)
	req := &deliveryv1.ScheduleRequest{AccountId: acct, EventType: completed, Items: []*deliveryv1.ScheduleItem{item(evt, "ep_a")}}
	if _, err := p.client.Schedule(context.Background(), req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without a credential: %v", err)
	}
	if _, err := p.client.Schedule(context.Background(), req, as(key)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("with a customer key: %v", err)
	}
}

// TestOnlyIngestionMayScheduleAndOnlyTheRegistryEraseOverMutualTLS: each
// internal method names its callers, and the gateway is never one.
func TestOnlyIngestionMayScheduleAndOnlyTheRegistryEraseOverMutualTLS(t *testing.T) {
	callers := grpcapi.Callers()
	want := map[string][]string{
		deliveryv1.DeliveryService_Schedule_FullMethodName:             {"ingestion"},
		deliveryv1.DeliveryInternalService_EraseAccount_FullMethodName: {"registry"},
	}
	for m, role := range grpcapi.Policy() {
		if role == authn.Internal && !slices.Equal(callers[m], want[m]) {
			t.Errorf("%s: callers %v, want %v", m, callers[m], want[m])
		}
	}
}
