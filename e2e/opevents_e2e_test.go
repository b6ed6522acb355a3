package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/signing"
)

var operationalTypes = []string{"endpoint.disabled", "endpoint.enabled", "delivery.exhausted"}

// opEvent is an operational event as a receiver got it.
type opEvent struct {
	ID   string         `json:"id"`
	Type string         `json:"type"`
	Data map[string]any `json:"data"`
}

// operational returns the operational events a receiver got, verifying
// each one's signatures with secret.
func operational(t testing.TB, rc *Receiver, secret string) []opEvent {
	t.Helper()
	var out []opEvent
	for _, r := range rc.Requests() {
		var e opEvent
		if err := json.Unmarshal(r.Body, &e); err != nil || !strings.HasPrefix(e.Type, "endpoint.") && !strings.HasPrefix(e.Type, "delivery.") {
			continue
		}
		if secret != "" {
			if err := (signing.Verifier{Secrets: []string{secret}}).VerifyRequest(r.Header, r.Body); err != nil {
				t.Errorf("%s: signature: %v", e.Type, err)
			}
			if r.Header.Get("traceparent") == "" || r.Header.Get("X-Webhook-Event") != e.Type {
				t.Errorf("%s: headers %v", e.Type, r.Header)
			}
		}
		out = append(out, e)
	}
	return out
}

func ofType(evs []opEvent, typ string) []opEvent {
	var out []opEvent
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// TestOperationalEventsReachTheAccountsOtherEndpointsFoldedAndNeverTheOneTheyAreAbout:
// 20 deliveries to one endpoint fail their final attempt at once; the
// account's other endpoint, subscribed to the operational types, gets one
// delivery.exhausted with count 20 and one endpoint.disabled, signed and
// traced like every event; re-enabling the endpoint sends it
// endpoint.enabled. The failing endpoint, subscribed to them too, never
// gets an event about itself.
func TestOperationalEventsReachTheAccountsOtherEndpointsFoldedAndNeverTheOneTheyAreAbout(t *testing.T) {
	s := startSuite(t, SuiteOptions{Env: map[string]string{
		"DELIVERY_RETRY_SCHEDULE":  "0s", // every first attempt is the final one
		"OPERATIONAL_EVENT_DELAY":  "500ms",
		"OPERATIONAL_EVENT_WINDOW": "3s",
	}})
	const burst = 20
	failing := newReceiver()
	defer failing.Close()
	// Hold the requests until all 20 arrived, so all are sent before the
	// endpoint is disabled, then fail them: 20 final failures at once.
	hold := make(chan struct{})
	var once sync.Once
	var healthy sync.Mutex
	ok := false
	failing.Respond = func(n int, r *http.Request) int {
		healthy.Lock()
		defer healthy.Unlock()
		if ok {
			return 200
		}
		return 503
	}
	failing.Hold = hold
	watcher := newReceiver()
	defer watcher.Close()

	acct, key := s.NewAccount("acme")
	bad, _ := s.NewEndpoint(key, failing.URL, append([]string{"transcription.completed"}, operationalTypes...)...)
	_, secret := s.NewEndpoint(key, watcher.URL, operationalTypes...)

	ing, ctx := s.Ingestion()
	var batch []*ingestionv1.PublishEventRequest
	for i := range burst {
		st, _ := structpb.NewStruct(completed("upl_" + string(rune('a'+i))))
		batch = append(batch, &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.completed", Data: st})
	}
	if _, err := ing.PublishEvents(ctx, &ingestionv1.PublishEventsRequest{Events: batch}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "all 20 requests in flight", func() bool { return failing.Count() >= burst })
	once.Do(func() {
		failing.mu.Lock()
		failing.Hold = nil
		failing.mu.Unlock()
		close(hold)
	})

	eventually(t, 20*time.Second, "delivery.exhausted and endpoint.disabled at the other endpoint", func() bool {
		evs := operational(t, watcher, "")
		return len(ofType(evs, "delivery.exhausted")) >= 1 && len(ofType(evs, "endpoint.disabled")) >= 1
	})
	time.Sleep(1500 * time.Millisecond) // time for a second one to show up
	evs := operational(t, watcher, secret)
	ex := ofType(evs, "delivery.exhausted")
	if len(ex) != 1 || ex[0].Data["count"] != float64(burst) || ex[0].Data["endpointId"] != bad.ID ||
		ex[0].Data["eventType"] != "transcription.completed" || ex[0].Data["attempts"] != 1.0 || ex[0].Data["lastError"] == "" {
		t.Fatalf("delivery.exhausted at the other endpoint = %+v; want one about %s with count %d", ex, bad.ID, burst)
	}
	dis := ofType(evs, "endpoint.disabled")
	if len(dis) != 1 || dis[0].Data["endpointId"] != bad.ID || dis[0].Data["url"] != failing.URL ||
		dis[0].Data["reason"] == "" || dis[0].Data["lastError"] == "" || dis[0].Data["disabledAt"] == "" {
		t.Fatalf("endpoint.disabled at the other endpoint = %+v", dis)
	}
	if got := s.endpoint(key, bad.ID); got.Status != "ENDPOINT_STATUS_DISABLED" {
		t.Fatalf("failing endpoint is %s", got.Status)
	}
	// In the account's own stream, like every event.
	var listed struct {
		Events []struct{ ID string } `json:"events"`
	}
	s.MustDo(200, "GET", "/v1/events?type=delivery.exhausted", key, nil, &listed)
	if len(listed.Events) != 1 || listed.Events[0].ID != ex[0].ID {
		t.Errorf("GET /v1/events?type=delivery.exhausted = %+v, want %s", listed, ex[0].ID)
	}

	// The customer fixes the receiver and enables the endpoint again.
	healthy.Lock()
	ok = true
	healthy.Unlock()
	s.MustDo(200, "POST", "/v1/endpoints/"+bad.ID+":enable", key, map[string]any{}, nil)
	eventually(t, 20*time.Second, "endpoint.enabled at the other endpoint", func() bool {
		return len(ofType(operational(t, watcher, ""), "endpoint.enabled")) >= 1
	})
	time.Sleep(time.Second)
	en := ofType(operational(t, watcher, secret), "endpoint.enabled")
	if len(en) != 1 || en[0].Data["endpointId"] != bad.ID || en[0].Data["url"] != failing.URL {
		t.Fatalf("endpoint.enabled = %+v", en)
	}
	if mine := operational(t, failing, ""); len(mine) != 0 {
		t.Fatalf("the endpoint the events are about got %d of them: %+v", len(mine), mine)
	}
}

// TestProducersCannotPublishOperationalEvents: REST answers 400 and gRPC
// InvalidArgument, naming the type; nothing is delivered.
func TestProducersCannotPublishOperationalEvents(t *testing.T) {
	s := startSuite(t, SuiteOptions{})
	rc := newReceiver()
	defer rc.Close()
	acct, key := s.NewAccount("acme")
	s.NewEndpoint(key, rc.URL, operationalTypes...)
	ing, ctx := s.Ingestion()
	for _, typ := range operationalTypes {
		code, body := s.Do("POST", "/v1/events", producerToken, map[string]any{
			"accountId": acct, "type": typ, "data": map[string]any{"endpointId": "ep_x", "url": "https://x.example"},
		}, nil)
		if code != 400 || !strings.Contains(string(body), `"type"`) || !strings.Contains(string(body), typ) {
			t.Errorf("REST publish of %s = %d %s; want 400 naming type", typ, code, body)
		}
		st, _ := structpb.NewStruct(map[string]any{"endpointId": "ep_x", "url": "https://x.example"})
		_, err := ing.PublishEvent(ctx, &ingestionv1.PublishEventRequest{AccountId: acct, Type: typ, Data: st})
		if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), "type: ") {
			t.Errorf("gRPC publish of %s = %v; want InvalidArgument naming type", typ, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if rc.Count() != 0 {
		t.Errorf("%d requests delivered from refused publishes", rc.Count())
	}
}

// TestEventTypesListTheOperationalTypesWithSchemas: GET /v1/event-types
// lists the three with their data schemas, marked operational, count
// documented and optional.
func TestEventTypesListTheOperationalTypesWithSchemas(t *testing.T) {
	s := startSuite(t, SuiteOptions{})
	var types struct {
		EventTypes []struct {
			Name   string         `json:"name"`
			Schema map[string]any `json:"schema"`
		} `json:"eventTypes"`
	}
	s.MustDo(200, "GET", "/v1/event-types", "", nil, &types)
	want := map[string][]string{
		"endpoint.disabled":  {"endpointId", "url", "reason", "lastError", "disabledAt"},
		"endpoint.enabled":   {"endpointId", "url"},
		"delivery.exhausted": {"deliveryId", "eventId", "eventType", "endpointId", "attempts", "lastError"},
	}
	for _, et := range types.EventTypes {
		fields, ok := want[et.Name]
		if !ok {
			continue
		}
		delete(want, et.Name)
		props, _ := et.Schema["properties"].(map[string]any)
		req, _ := json.Marshal(et.Schema["required"])
		wantReq, _ := json.Marshal(fields)
		count, _ := props["count"].(map[string]any)
		if string(req) != string(wantReq) || count == nil || count["type"] != "integer" || et.Schema["x-operational"] != true {
			t.Errorf("%s schema = %v", et.Name, et.Schema)
		}
	}
	if len(want) != 0 {
		t.Errorf("GET /v1/event-types lacks %v", want)
	}
}
