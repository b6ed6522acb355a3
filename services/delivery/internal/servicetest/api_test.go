package servicetest

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/grpctest"
	"github.com/voxscriber/webhooks/pkg/signing"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
	"github.com/voxscriber/webhooks/services/delivery/internal/redisqueue"
)

func deliveryOutcomeFailed() delivery.Outcome {
	return delivery.Outcome{Status: delivery.StatusFailed, Now: time.Now(), LastError: "late"}
}

func TestSendTest(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{workers: 2})
	acct, key := e.account()
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	secret := signing.GenerateSecret()
	// Send Test works whatever the endpoint's status.
	e.reg.SetEndpoint(acct, "ep_a", rc.url("/hook"), registryv1.EndpointStatus_ENDPOINT_STATUS_DISABLED, nil, secret)

	res, err := p.client.SendTest(context.Background(), &deliveryv1.SendTestRequest{EndpointId: "ep_a", EventType: "upload.completed"}, as(key))
	if err != nil {
		t.Fatal(err)
	}
	if !res.GetSuccess() || res.GetStatusCode() != 200 || res.GetResponseBody() != `{"ok":true}` || res.GetDeliveryId() == "" || res.GetError() != "" {
		t.Fatalf("SendTest = %v", res)
	}
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests", len(reqs))
	}
	r := reqs[0]
	if !strings.HasSuffix(string(r.body), `,"test":true}`) || !strings.Contains(string(r.body), `"type":"upload.completed"`) ||
		!expressVerify(secret, r.body, r.header.Get("X-Webhook-Signature")) || r.header.Get("X-Webhook-Attempt") != "1" ||
		r.header.Get("X-Webhook-Event") != "upload.completed" || !strings.HasPrefix(r.header.Get("X-Webhook-Id"), "evt_") {
		t.Fatalf("test request: %s %v", r.body, r.header)
	}

	d := p.get(t, key, res.GetDeliveryId())
	if !d.GetTest() || d.GetStatus() != deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED || d.GetPayload() != string(r.body) ||
		len(d.GetAttempts()) != 1 || d.GetAttemptCount() != 1 || d.GetEventId() != r.header.Get("X-Webhook-Id") {
		t.Fatalf("test delivery = %v", d)
	}
	list, err := p.client.ListDeliveries(context.Background(), &deliveryv1.ListDeliveriesRequest{EndpointId: "ep_a"}, as(key))
	if err != nil || len(list.GetDeliveries()) != 1 || !list.GetDeliveries()[0].GetTest() {
		t.Fatalf("ListDeliveries = %v, %v", list, err)
	}
	_, err = p.client.RetryDelivery(context.Background(), &deliveryv1.RetryDeliveryRequest{Id: d.GetId()}, as(key))
	grpctest.RequireCode(t, err, codes.FailedPrecondition) // RetryDelivery of a test delivery

	// A failing receiver: the answer comes back, not an RPC error.
	rcFail := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) { http.Error(w, "nope", http.StatusTeapot) })
	e.reg.SetEndpoint(acct, "ep_c", rcFail.url("/"), active(), nil, secret)
	res, err = p.client.SendTest(context.Background(), &deliveryv1.SendTestRequest{EndpointId: "ep_c"}, as(key))
	if err != nil || res.GetSuccess() || res.GetStatusCode() != 418 || res.GetErrorType() != deliveryv1.ErrorType_ERROR_TYPE_HTTP_STATUS || !strings.Contains(res.GetResponseBody(), "nope") {
		t.Fatalf("failing SendTest = %v, %v", res, err)
	}
	if d := p.get(t, key, res.GetDeliveryId()); d.GetStatus() != deliveryv1.DeliveryStatus_DELIVERY_STATUS_FAILED {
		t.Fatalf("failed test delivery = %v", d)
	}
	_, err = p.client.SendTest(context.Background(), &deliveryv1.SendTestRequest{EndpointId: "ep_a", EventType: "nope.nope"}, as(key))
	grpctest.RequireCode(t, err, codes.InvalidArgument) // unknown event type
	_, err = p.client.SendTest(context.Background(), &deliveryv1.SendTestRequest{EndpointId: "ep_missing"}, as(key))
	grpctest.RequireCode(t, err, codes.NotFound) // unknown endpoint
}

func TestParkedAndCanceled(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{workers: 2})
	acct, key := e.account()
	rc := newReceiver(t, nil)
	e.reg.SetEndpoint(acct, "ep_paused", rc.url("/"), registryv1.EndpointStatus_ENDPOINT_STATUS_INACTIVE, nil, signing.GenerateSecret())
	evt, _ := e.publish(acct, completed)
	ids := p.schedule(t, context.Background(), acct, completed, item(evt, "ep_paused"), item(evt, "ep_deleted"))

	parked := p.waitStatus(t, key, ids[0], deliveryv1.DeliveryStatus_DELIVERY_STATUS_PARKED, 10*time.Second)
	canceled := p.waitStatus(t, key, ids[1], deliveryv1.DeliveryStatus_DELIVERY_STATUS_CANCELED, 10*time.Second)
	if parked.GetAttemptCount() != 0 || !strings.Contains(parked.GetLastError(), "inactive") {
		t.Errorf("parked = %v", parked)
	}
	if canceled.GetAttemptCount() != 0 || !strings.Contains(canceled.GetLastError(), "no longer exists") {
		t.Errorf("canceled = %v", canceled)
	}
	ctx := context.Background()
	shard := redisqueue.Shard(ids[0])
	if ok, _ := e.rdb.SIsMember(ctx, "wh:parked:{s"+strconv.Itoa(shard)+"}", "ep_paused|"+ids[0]).Result(); !ok {
		t.Error("parked delivery is not in its shard's parked set")
	}
	for _, id := range ids {
		if err := e.rdb.ZScore(ctx, redisqueue.ScheduleKey(id), id).Err(); err == nil {
			t.Errorf("%s is still scheduled", id)
		}
	}
	if rc.count() != 0 {
		t.Errorf("receiver got %d requests", rc.count())
	}

	// Enabled again, a resend of the parked delivery goes out and leaves the parked set.
	e.reg.SetEndpoint(acct, "ep_paused", rc.url("/"), active(), nil, signing.GenerateSecret())
	time.Sleep(1100 * time.Millisecond) // the registry answer is cached for a second
	if _, err := p.client.RetryDelivery(ctx, &deliveryv1.RetryDeliveryRequest{Id: ids[0]}, as(key)); err != nil {
		t.Fatal(err)
	}
	d := p.waitStatus(t, key, ids[0], deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 10*time.Second)
	if d.GetAttemptCount() != 1 || rc.count() != 1 {
		t.Errorf("resumed = %v, %d requests", d, rc.count())
	}
	if ok, _ := e.rdb.SIsMember(ctx, "wh:parked:{s"+strconv.Itoa(shard)+"}", "ep_paused|"+ids[0]).Result(); ok {
		t.Error("resent delivery is still in the parked set")
	}
}

func TestRetryDeliveryContinuesCounting(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{schedule: []time.Duration{0}, workers: 2})
	acct, key := e.account()
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	e.reg.SetEndpoint(acct, "ep_a", rc.url("/"), active(), nil, signing.GenerateSecret())
	evt, _ := e.publish(acct, completed)
	id := p.schedule(t, context.Background(), acct, completed, item(evt, "ep_a"))[0]
	p.waitStatus(t, key, id, deliveryv1.DeliveryStatus_DELIVERY_STATUS_FAILED, 10*time.Second)

	resp, err := p.client.RetryDelivery(context.Background(), &deliveryv1.RetryDeliveryRequest{Id: id}, as(key))
	if err != nil {
		t.Fatal(err)
	}
	if st := resp.GetDelivery().GetStatus(); st != deliveryv1.DeliveryStatus_DELIVERY_STATUS_PENDING && st != deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED {
		t.Fatalf("after RetryDelivery: %v", resp.GetDelivery())
	}
	d := p.waitStatus(t, key, id, deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 10*time.Second)
	reqs := rc.requests()
	if d.GetAttemptCount() != 2 || len(reqs) != 2 || reqs[1].header.Get("X-Webhook-Attempt") != "2" {
		t.Fatalf("delivery = %v, %d requests", d, len(reqs))
	}
}

func TestListDeliveriesFiltersAndPages(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{schedule: []time.Duration{0}, workers: 4})
	acct, key := e.account()
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Path == "/bad" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	e.reg.SetEndpoint(acct, "ep_good", rc.url("/good"), active(), nil, signing.GenerateSecret())
	e.reg.SetEndpoint(acct, "ep_bad", rc.url("/bad"), active(), nil, signing.GenerateSecret())
	var all []string
	for range 5 {
		evt, _ := e.publish(acct, completed)
		all = append(all, p.schedule(t, context.Background(), acct, completed, item(evt, "ep_good"), item(evt, "ep_bad"))...)
	}
	uploaded, _ := e.publish(acct, "upload.completed")
	all = append(all, p.schedule(t, context.Background(), acct, "upload.completed", item(uploaded, "ep_good"))...)
	waitFor(t, 10*time.Second, func() bool { return rc.count() == 11 }, func() string { return "not all delivered" })
	for _, id := range all {
		waitFor(t, 5*time.Second, func() bool {
			st := p.get(t, key, id).GetStatus()
			return st == deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED || st == deliveryv1.DeliveryStatus_DELIVERY_STATUS_FAILED
		}, func() string { return id + " not finished" })
	}

	list := func(req *deliveryv1.ListDeliveriesRequest) []*deliveryv1.Delivery {
		t.Helper()
		var out []*deliveryv1.Delivery
		for {
			resp, err := p.client.ListDeliveries(context.Background(), req, as(key))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, resp.GetDeliveries()...)
			if resp.GetNextPageToken() == "" {
				return out
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}
	tests := []struct {
		name string
		req  *deliveryv1.ListDeliveriesRequest
		want int
	}{
		{"all, one per page", &deliveryv1.ListDeliveriesRequest{PageSize: 1}, 11},
		{"all, three per page", &deliveryv1.ListDeliveriesRequest{PageSize: 3}, 11},
		{"by endpoint", &deliveryv1.ListDeliveriesRequest{EndpointId: "ep_bad", PageSize: 2}, 5},
		{"by status", &deliveryv1.ListDeliveriesRequest{Status: deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED}, 6},
		{"by type", &deliveryv1.ListDeliveriesRequest{EventType: "upload.completed"}, 1},
		{"by event", &deliveryv1.ListDeliveriesRequest{EventId: uploaded}, 1},
		{"status and endpoint", &deliveryv1.ListDeliveriesRequest{EndpointId: "ep_good", Status: deliveryv1.DeliveryStatus_DELIVERY_STATUS_FAILED}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := list(tt.req)
			if len(got) != tt.want {
				t.Fatalf("got %d deliveries, want %d", len(got), tt.want)
			}
			seen := map[string]bool{}
			for i, d := range got {
				if seen[d.GetId()] {
					t.Fatalf("%s listed twice", d.GetId())
				}
				seen[d.GetId()] = true
				// Newest first is id order: ids are time-ordered (to the
				// millisecond of their event), ties broken by the id. Two
				// events published in one millisecond may list in either
				// order of their create times, so those are not compared.
				if i > 0 && d.GetId() > got[i-1].GetId() {
					t.Fatalf("not newest first at %d: %s after %s", i, d.GetId(), got[i-1].GetId())
				}
			}
		})
	}
	_, err := p.client.ListDeliveries(context.Background(), &deliveryv1.ListDeliveriesRequest{PageToken: "garbage!"}, as(key))
	grpctest.RequireCode(t, err, codes.InvalidArgument) // bad page token
	// A delivery whose record expired is skipped (and its index entry dropped).
	if err := e.rdb.Del(context.Background(), redisqueue.DeliveryKey(all[0])).Err(); err != nil {
		t.Fatal(err)
	}
	if got := list(&deliveryv1.ListDeliveriesRequest{PageSize: 2}); len(got) != 10 {
		t.Fatalf("after expiry: %d deliveries, want 10", len(got))
	}
	_, err = p.client.ReplayEndpoint(context.Background(), &deliveryv1.ReplayEndpointRequest{EndpointId: "ep_bad"}, as(key))
	grpctest.RequireCode(t, err, codes.InvalidArgument) // ReplayEndpoint without since
	since := timestamppb.New(time.Now().Add(-time.Hour))
	_, err = p.client.ReplayEndpoint(context.Background(), &deliveryv1.ReplayEndpointRequest{EndpointId: "ep_other_account", Since: since}, as(key))
	grpctest.RequireCode(t, err, codes.NotFound) // ReplayEndpoint of an unknown endpoint
}

func TestScheduleValidation(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{noWorker: true})
	for _, req := range []*deliveryv1.ScheduleRequest{
		{EventType: completed, Items: []*deliveryv1.ScheduleItem{item("evt_1", "ep_1")}},
		{AccountId: "acct_1", Items: []*deliveryv1.ScheduleItem{item("evt_1", "ep_1")}},
		{AccountId: "acct_1", EventType: completed},
		{AccountId: "acct_1", EventType: completed, Items: []*deliveryv1.ScheduleItem{item("evt_1", "")}},
	} {
		if _, err := p.client.Schedule(context.Background(), req, as(internalToken)); !grpctest.CheckCode(t, err, codes.InvalidArgument) {
			t.Logf("the request: %v", req)
		}
	}
}

// TestReplayLeavesFailedSendTestsAlone: ReplayEndpoint re-sends the
// endpoint's failed deliveries but never a failed Send Test delivery (it has
// no event to send again, and RetryDelivery refuses it too): the test
// delivery stays FAILED with its one attempt, and the receiver sees no
// replay of it.
func TestReplayLeavesFailedSendTestsAlone(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{schedule: []time.Duration{0}, workers: 2})
	acct, key := e.account()
	var failing atomic.Bool
	failing.Store(true)
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	e.reg.SetEndpoint(acct, "ep_a", rc.url("/"), active(), nil, signing.GenerateSecret())
	ctx := context.Background()
	since := timestamppb.New(time.Now().Add(-time.Minute))

	res, err := p.client.SendTest(ctx, &deliveryv1.SendTestRequest{EndpointId: "ep_a"}, as(key))
	if err != nil || res.GetSuccess() {
		t.Fatalf("SendTest = %v, %v; want a failed answer", res, err)
	}
	testID := res.GetDeliveryId()
	evt, _ := e.publish(acct, completed)
	id := p.schedule(t, ctx, acct, completed, item(evt, "ep_a"))[0]
	p.waitStatus(t, key, id, deliveryv1.DeliveryStatus_DELIVERY_STATUS_FAILED, 10*time.Second)

	failing.Store(false)
	resp, err := p.client.ReplayEndpoint(ctx, &deliveryv1.ReplayEndpointRequest{EndpointId: "ep_a", Since: since}, as(key))
	if err != nil || resp.GetQueued() != 1 {
		t.Fatalf("ReplayEndpoint = %v, %v; want 1 queued (the event's delivery only)", resp, err)
	}
	p.waitStatus(t, key, id, deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 10*time.Second)
	time.Sleep(300 * time.Millisecond) // time for a wrongly restarted test delivery to be claimed
	d := p.get(t, key, testID)
	if d.GetStatus() != deliveryv1.DeliveryStatus_DELIVERY_STATUS_FAILED || d.GetAttemptCount() != 1 {
		t.Errorf("test delivery after replay: status %v, %d attempts; want FAILED, 1", d.GetStatus(), d.GetAttemptCount())
	}
	if err := e.rdb.ZScore(ctx, redisqueue.ScheduleKey(testID), testID).Err(); err == nil {
		t.Error("test delivery is in the schedule after replay")
	}
	if n := rc.count(); n != 3 { // the Send Test, the event's attempt, its replay
		t.Errorf("receiver got %d requests, want 3", n)
	}
}
