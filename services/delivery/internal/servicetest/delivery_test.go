package servicetest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"

	deliveryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/delivery/v1"
	"github.com/voxscriber/webhooks/pkg/grpctest"
	"github.com/voxscriber/webhooks/pkg/signing"
	"github.com/voxscriber/webhooks/services/delivery/internal/redisqueue"
)

const completed = "transcription.completed"

// expressVerify is what the seed's Express example does:
// crypto.createHmac('sha256', secret).update(rawBody).digest('hex').
func expressVerify(secret string, rawBody []byte, header string) bool {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(rawBody)
	return hmac.Equal([]byte(hex.EncodeToString(m.Sum(nil))), []byte(header))
}

// (1) Signatures, headers and trace context as a receiver sees them.
func TestWebhookRequest(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{workers: 4})
	acct, key := e.account()
	rc := newReceiver(t, nil)
	newSecret, oldSecret := signing.GenerateSecret(), signing.GenerateSecret()
	e.reg.SetEndpoint(acct, "ep_a", rc.url("/hook"), active(), map[string]string{
		"X-Customer":      "abc",
		"Authorization":   "Bearer customer-token",
		"X-Webhook-Event": "spoofed", // reserved: never overrides ours
	}, newSecret, oldSecret)
	evt, body := e.publish(acct, completed)

	ctx, span := otel.Tracer("producer").Start(context.Background(), "PublishEvent")
	ids := p.schedule(t, ctx, acct, completed, item(evt, "ep_a"))
	span.End()
	traceID := span.SpanContext().TraceID().String()

	d := p.waitStatus(t, key, ids[0], deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 10*time.Second)
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	h := r.header
	if !bytes.Equal(r.body, body) {
		t.Fatalf("body changed:\n got %s\nwant %s", r.body, body)
	}
	if !expressVerify(newSecret, r.body, h.Get("X-Webhook-Signature")) {
		t.Errorf("X-Webhook-Signature %q does not verify with the newest secret", h.Get("X-Webhook-Signature"))
	}
	for _, s := range []string{newSecret, oldSecret} {
		if err := (signing.Verifier{Secrets: []string{s}}).VerifyRequest(h, r.body); err != nil {
			t.Errorf("Standard Webhooks signature does not verify with one of the rotation's secrets: %v", err)
		}
	}
	if n := len(strings.Fields(h.Get("webhook-signature"))); n != 2 {
		t.Errorf("webhook-signature carries %d signatures, want 2 during a rotation", n)
	}
	var env struct{ ID, Type string }
	if err := json.Unmarshal(r.body, &env); err != nil {
		t.Fatal(err)
	}
	ts, _ := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
	want := map[string]string{
		"Content-Type":      "application/json",
		"User-Agent":        "VoxScriber-Webhooks/0.1.0",
		"X-Webhook-Id":      evt,
		"webhook-id":        evt,
		"X-Webhook-Event":   completed,
		"X-Webhook-Attempt": "1",
		"X-Customer":        "abc",
		"Authorization":     "Bearer customer-token",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if env.ID != evt || env.Type != completed {
		t.Errorf("body id/type = %s/%s", env.ID, env.Type)
	}
	if d := time.Since(time.Unix(ts, 0)); d < -time.Second || d > 10*time.Second {
		t.Errorf("webhook-timestamp %d is %v away from now", ts, d)
	}
	tp := h.Get("traceparent")
	if !strings.HasPrefix(tp, "00-"+traceID+"-") {
		t.Errorf("traceparent %q is not in the producer's trace %s", tp, traceID)
	}
	if h.Get("baggage") != "" {
		t.Errorf("baggage leaked to the receiver: %q", h.Get("baggage"))
	}

	// The log: one attempt in the same trace, headers without secrets.
	if d.GetAttemptCount() != 1 || len(d.GetAttempts()) != 1 || d.GetPayload() != string(body) {
		t.Fatalf("delivery = %v", d)
	}
	a := d.GetAttempts()[0]
	if a.GetStatusCode() != 200 || a.GetTraceId() != traceID || a.GetSpanId() == "" || a.GetUrl() != rc.url("/hook") || d.GetTraceId() != traceID {
		t.Errorf("attempt = %v (trace %s)", a, traceID)
	}
	if !strings.HasSuffix(tp, "-01") || !strings.Contains(tp, a.GetSpanId()) {
		t.Errorf("traceparent %q is not the attempt span %s", tp, a.GetSpanId())
	}
	// The headers history keeps (history.KeptHeaders): not the derived ones
	// (the traceparent is the attempt's trace and span ids).
	hdrs := a.GetRequestHeaders()
	if hdrs["Authorization"] != "[redacted]" || hdrs["X-Webhook-Signature"] == "" || hdrs["Traceparent"] != "" || hdrs["User-Agent"] != "" {
		t.Errorf("recorded headers = %v", hdrs)
	}
	for k, v := range hdrs {
		if strings.Contains(v, newSecret) || strings.Contains(v, oldSecret) || strings.Contains(v, "customer-token") {
			t.Errorf("recorded header %s leaks a secret", k)
		}
	}

	// The attempt span: kind client, child of the stored context, attributes.
	var found bool
	for _, s := range spans.Ended() {
		if s.Name() != "webhook.attempt" || s.SpanContext().SpanID().String() != a.GetSpanId() {
			continue
		}
		found = true
		if s.SpanKind() != trace.SpanKindClient || s.SpanContext().TraceID().String() != traceID || !s.Parent().IsValid() {
			t.Errorf("attempt span kind %v trace %s parent %v", s.SpanKind(), s.SpanContext().TraceID(), s.Parent())
		}
		attrs := map[string]string{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		for k, v := range map[string]string{
			"webhook.event.id": evt, "webhook.event.type": completed, "webhook.endpoint.id": "ep_a",
			"webhook.attempt": "1", "http.request.method": "POST", "url.full": rc.url("/hook"),
			"http.response.status_code": "200",
		} {
			if attrs[k] != v {
				t.Errorf("span attribute %s = %q, want %q", k, attrs[k], v)
			}
		}
		if _, ok := attrs["webhook.latency_ms"]; !ok {
			t.Error("span has no latency attribute")
		}
	}
	if !found {
		t.Error("no webhook.attempt span recorded")
	}
}

// (2) Failures are retried on the schedule with the same body and id.
func TestRetriesFollowSchedule(t *testing.T) {
	e := newEnv(t)
	schedule := []time.Duration{0, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
	p := e.start(procOpts{schedule: schedule, workers: 4})
	acct, key := e.account()
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n <= 2 {
			http.Error(w, "busy being broken", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	e.reg.SetEndpoint(acct, "ep_a", rc.url("/"), active(), nil, signing.GenerateSecret())
	evt, body := e.publish(acct, completed)
	id := p.schedule(t, context.Background(), acct, completed, item(evt, "ep_a"))[0]

	d := p.waitStatus(t, key, id, deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 15*time.Second)
	reqs := rc.requests()
	if len(reqs) != 3 {
		t.Fatalf("receiver got %d requests, want 3", len(reqs))
	}
	for i, r := range reqs {
		if !bytes.Equal(r.body, body) || r.header.Get("webhook-id") != evt || r.header.Get("X-Webhook-Id") != evt {
			t.Errorf("request %d: body or id differs", i+1)
		}
		if got := r.header.Get("X-Webhook-Attempt"); got != strconv.Itoa(i+1) {
			t.Errorf("request %d: X-Webhook-Attempt = %s", i+1, got)
		}
		if i > 0 {
			// Due times are kept in whole milliseconds.
			if gap := r.at.Sub(reqs[i-1].at); gap < schedule[i]-2*time.Millisecond {
				t.Errorf("gap before attempt %d = %v, want >= %v", i+1, gap, schedule[i])
			}
		}
	}
	atts := d.GetAttempts()
	if d.GetAttemptCount() != 3 || len(atts) != 3 {
		t.Fatalf("attempts = %d/%d", d.GetAttemptCount(), len(atts))
	}
	for i, a := range atts[:2] {
		if a.GetNumber() != int32(i+1) || a.GetStatusCode() != 500 || a.GetErrorType() != deliveryv1.ErrorType_ERROR_TYPE_HTTP_STATUS ||
			!strings.Contains(a.GetError(), "500") || !strings.Contains(a.GetResponseBody(), "busy being broken") {
			t.Errorf("attempt %d = %v", i+1, a)
		}
	}
	if a := atts[2]; a.GetNumber() != 3 || a.GetStatusCode() != 200 || a.GetErrorType() != deliveryv1.ErrorType_ERROR_TYPE_UNSPECIFIED || a.GetError() != "" {
		t.Errorf("attempt 3 = %v", a)
	}
	if d.GetLastStatusCode() != 200 || d.GetLastError() != "" || d.GetNextAttemptTime() != nil {
		t.Errorf("delivery = %v", d)
	}
}

// (3) After the last scheduled attempt fails the delivery is FAILED.
func TestFinalFailure(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{schedule: []time.Duration{0, 50 * time.Millisecond, 50 * time.Millisecond}, workers: 2})
	acct, key := e.account()
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) { w.WriteHeader(http.StatusBadGateway) })
	e.reg.SetEndpoint(acct, "ep_a", rc.url("/"), active(), nil, signing.GenerateSecret())
	evt, _ := e.publish(acct, completed)
	id := p.schedule(t, context.Background(), acct, completed, item(evt, "ep_a"))[0]

	d := p.waitStatus(t, key, id, deliveryv1.DeliveryStatus_DELIVERY_STATUS_FAILED, 10*time.Second)
	if d.GetAttemptCount() != 3 || d.GetLastStatusCode() != 502 || !strings.Contains(d.GetLastError(), "502") {
		t.Fatalf("delivery = %v", d)
	}
	time.Sleep(200 * time.Millisecond)
	if n := rc.count(); n != 3 {
		t.Fatalf("receiver got %d requests, want 3", n)
	}
	if err := e.rdb.ZScore(context.Background(), redisqueue.ScheduleKey(id), id).Err(); err == nil {
		t.Fatal("a failed delivery is still scheduled")
	}
}

// (4) A claim that is never completed (a crashed worker) is redelivered by
// another worker once its lease expires, and the late completion is refused.
func TestExpiredLeaseIsRedelivered(t *testing.T) {
	e := newEnv(t)
	acct, key := e.account()
	rc := newReceiver(t, nil)
	e.reg.SetEndpoint(acct, "ep_a", rc.url("/"), active(), nil, signing.GenerateSecret())
	evt, _ := e.publish(acct, completed)

	// The crashing worker: a short timeout and margin make a short lease.
	crashed := e.start(procOpts{noWorker: true, timeout: 300 * time.Millisecond, leaseMargin: 400 * time.Millisecond})
	id := crashed.schedule(t, context.Background(), acct, completed, item(evt, "ep_a"))[0]
	claimedAt := time.Now()
	jobs, _, err := crashed.queue.Claim(context.Background(), claimedAt, crashed.disp.LeaseUntil(claimedAt), 10)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("claim: %v, %d jobs", err, len(jobs))
	}
	lease := jobs[0].LeaseUntil

	e.start(procOpts{workers: 2})
	d := crashed.waitStatus(t, key, id, deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 10*time.Second)
	reqs := rc.requests()
	if len(reqs) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(reqs))
	}
	if reqs[0].at.Before(lease.Add(-2 * time.Millisecond)) {
		t.Fatalf("redelivered at %v, before the lease ended at %v", reqs[0].at, lease)
	}
	if d.GetAttemptCount() != 1 || reqs[0].header.Get("X-Webhook-Attempt") != "1" {
		t.Fatalf("delivery = %v", d)
	}
	ok, _, err := crashed.queue.Complete(context.Background(), jobs[0], deliveryOutcomeFailed())
	if err != nil || ok {
		t.Fatalf("late Complete of a lost lease = %v, %v; want refused", ok, err)
	}
	if got := crashed.get(t, key, id); got.GetStatus() != deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED {
		t.Fatalf("late completion changed the delivery: %v", got)
	}
}

// (5) Two workers on one Redis: every delivery is sent, none twice at once.
func TestTwoWorkersShareTheSchedule(t *testing.T) {
	e := newEnv(t)
	a := e.start(procOpts{workers: 16})
	b := e.start(procOpts{workers: 16})
	acct, key := e.account()
	var (
		mu       sync.Mutex
		inflight = map[string]bool{}
		seen     = map[string]int{}
	)
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		k := r.URL.Path + "|" + r.Header.Get("webhook-id")
		mu.Lock()
		if inflight[k] {
			t.Errorf("delivery %s sent twice concurrently", k)
		}
		inflight[k] = true
		seen[k]++
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		inflight[k] = false
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	e.reg.SetEndpoint(acct, "ep_a", rc.url("/a"), active(), nil, signing.GenerateSecret())
	e.reg.SetEndpoint(acct, "ep_b", rc.url("/b"), active(), nil, signing.GenerateSecret())

	const eventsN = 100
	for i := range eventsN {
		evt, _ := e.publish(acct, completed)
		p := a
		if i%2 == 1 {
			p = b
		}
		p.schedule(t, context.Background(), acct, completed, item(evt, "ep_a"), item(evt, "ep_b"))
	}
	waitFor(t, 30*time.Second, func() bool { return rc.count() >= 2*eventsN },
		func() string { return fmt.Sprintf("%d of %d delivered", rc.count(), 2*eventsN) })

	// Every delivery listed, succeeded, received once (paging through 2 pages).
	// The last outcomes are recorded just after their receiver answered.
	var all []*deliveryv1.Delivery
	waitFor(t, 10*time.Second, func() bool {
		resp, err := a.client.ListDeliveries(context.Background(), &deliveryv1.ListDeliveriesRequest{
			PageSize: 100, Status: deliveryv1.DeliveryStatus_DELIVERY_STATUS_PENDING}, as(key))
		return err == nil && len(resp.GetDeliveries()) == 0
	}, func() string { return "deliveries still pending" })
	token := ""
	for {
		resp, err := a.client.ListDeliveries(context.Background(), &deliveryv1.ListDeliveriesRequest{PageSize: 150, PageToken: token}, as(key))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, resp.GetDeliveries()...)
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(all) != 2*eventsN {
		t.Fatalf("listed %d deliveries, want %d", len(all), 2*eventsN)
	}
	unique := map[string]bool{}
	for _, d := range all {
		unique[d.GetId()] = true
		if d.GetStatus() != deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED || d.GetAttemptCount() != 1 {
			t.Errorf("delivery %s: %v after %d attempts", d.GetId(), d.GetStatus(), d.GetAttemptCount())
		}
	}
	if len(unique) != 2*eventsN {
		t.Fatalf("listed %d unique deliveries", len(unique))
	}
	mu.Lock()
	defer mu.Unlock()
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s received %d times", k, n)
		}
	}
	t.Logf("worker a sent %d, worker b sent %d", a.sent.Load(), b.sent.Load())
}

// (6) A redirect is a failure and is not followed; Retry-After is honoured.
func TestRedirectAndRetryAfter(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{schedule: []time.Duration{0, 100 * time.Millisecond}, workers: 4})
	acct, key := e.account()
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch {
		case r.URL.Path == "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case r.URL.Path == "/busy" && n == 1:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	e.reg.SetEndpoint(acct, "ep_redirect", rc.url("/redirect"), active(), nil, signing.GenerateSecret())
	e.reg.SetEndpoint(acct, "ep_busy", rc.url("/busy"), active(), nil, signing.GenerateSecret())
	evt, _ := e.publish(acct, completed)
	ids := p.schedule(t, context.Background(), acct, completed, item(evt, "ep_redirect"), item(evt, "ep_busy"))

	d := p.waitStatus(t, key, ids[0], deliveryv1.DeliveryStatus_DELIVERY_STATUS_FAILED, 10*time.Second)
	for _, a := range d.GetAttempts() {
		if a.GetStatusCode() != 302 || a.GetErrorType() != deliveryv1.ErrorType_ERROR_TYPE_HTTP_STATUS || !strings.Contains(a.GetError(), "/elsewhere") {
			t.Errorf("redirect attempt = %v", a)
		}
	}
	busy := p.waitStatus(t, key, ids[1], deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 10*time.Second)
	if busy.GetAttemptCount() != 2 {
		t.Fatalf("busy delivery = %v", busy)
	}
	var times []time.Time
	for _, r := range rc.requests() {
		if r.path == "/elsewhere" {
			t.Error("the redirect was followed")
		}
		if r.path == "/busy" {
			times = append(times, r.at)
		}
	}
	if len(times) != 2 || times[1].Sub(times[0]) < time.Second-2*time.Millisecond {
		t.Fatalf("Retry-After: 1 not honoured: attempts at %v", times)
	}
}

// (7) The SSRF guard refuses loopback receivers unless they are allowed.
func TestSSRFGuardBlocksLoopback(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{cidrs: "-", schedule: []time.Duration{0}, workers: 2})
	acct, key := e.account()
	rc := newReceiver(t, nil)
	e.reg.SetEndpoint(acct, "ep_a", rc.url("/"), active(), nil, signing.GenerateSecret())

	res, err := p.client.SendTest(context.Background(), &deliveryv1.SendTestRequest{EndpointId: "ep_a"}, as(key))
	if err != nil {
		t.Fatal(err)
	}
	if res.GetSuccess() || res.GetErrorType() != deliveryv1.ErrorType_ERROR_TYPE_BLOCKED || !strings.Contains(res.GetError(), "loopback") {
		t.Fatalf("SendTest = %v", res)
	}

	evt, _ := e.publish(acct, completed)
	id := p.schedule(t, context.Background(), acct, completed, item(evt, "ep_a"))[0]
	d := p.waitStatus(t, key, id, deliveryv1.DeliveryStatus_DELIVERY_STATUS_FAILED, 10*time.Second)
	if a := d.GetAttempts(); len(a) != 1 || a[0].GetErrorType() != deliveryv1.ErrorType_ERROR_TYPE_BLOCKED || !strings.Contains(a[0].GetError(), "ENDPOINT_ALLOWED_CIDRS") {
		t.Fatalf("attempts = %v", a)
	}
	if rc.count() != 0 {
		t.Fatalf("the blocked receiver got %d requests", rc.count())
	}
}

// (8) Scheduling the same items twice is one delivery.
func TestScheduleIsIdempotent(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{workers: 2})
	acct, key := e.account()
	rc := newReceiver(t, nil)
	e.reg.SetEndpoint(acct, "ep_a", rc.url("/"), active(), nil, signing.GenerateSecret())
	evt, _ := e.publish(acct, completed)
	first := p.schedule(t, context.Background(), acct, completed, item(evt, "ep_a"))
	p.waitStatus(t, key, first[0], deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 10*time.Second)
	second := p.schedule(t, context.Background(), acct, completed, item(evt, "ep_a"), item(evt, "ep_a"))
	if second[0] != first[0] || second[1] != first[0] {
		t.Fatalf("ids %v then %v", first, second)
	}
	time.Sleep(300 * time.Millisecond)
	if n := rc.count(); n != 1 {
		t.Fatalf("receiver got %d requests, want 1", n)
	}
	resp, err := p.client.ListDeliveries(context.Background(), &deliveryv1.ListDeliveriesRequest{}, as(key))
	if err != nil || len(resp.GetDeliveries()) != 1 {
		t.Fatalf("ListDeliveries = %v, %v", resp, err)
	}
}

// (9) Another account's delivery does not exist.
func TestOtherAccountsDeliveriesAreNotFound(t *testing.T) {
	e := newEnv(t)
	p := e.start(procOpts{workers: 2})
	acct, key := e.account()
	_, otherKey := e.account()
	rc := newReceiver(t, nil)
	e.reg.SetEndpoint(acct, "ep_a", rc.url("/"), active(), nil, signing.GenerateSecret())
	evt, _ := e.publish(acct, completed)
	id := p.schedule(t, context.Background(), acct, completed, item(evt, "ep_a"))[0]
	p.waitStatus(t, key, id, deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 10*time.Second)

	ctx := context.Background()
	_, err := p.client.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Id: id}, as(otherKey))
	grpctest.CheckCode(t, err, codes.NotFound) // GetDelivery as another account
	_, err = p.client.RetryDelivery(ctx, &deliveryv1.RetryDeliveryRequest{Id: id}, as(otherKey))
	grpctest.CheckCode(t, err, codes.NotFound) // RetryDelivery as another account
	_, err = p.client.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Id: "dlv_nope"}, as(key))
	grpctest.CheckCode(t, err, codes.NotFound) // GetDelivery of a malformed id
	if resp, err := p.client.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{}, as(otherKey)); err != nil || len(resp.GetDeliveries()) != 0 {
		t.Errorf("ListDeliveries as another account = %v, %v", resp, err)
	}
	_, err = p.client.SendTest(ctx, &deliveryv1.SendTestRequest{EndpointId: "ep_a"}, as(otherKey))
	grpctest.CheckCode(t, err, codes.NotFound) // SendTest to another account's endpoint
	_, err = p.client.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Id: id})
	grpctest.CheckCode(t, err, codes.Unauthenticated) // GetDelivery without a key
	_, err = p.client.GetDelivery(ctx, &deliveryv1.GetDeliveryRequest{Id: id}, as("vsk_unknown"))
	grpctest.CheckCode(t, err, codes.Unauthenticated) // GetDelivery with an unknown key
}

// (10) Drain waits for running attempts, and releases those that cannot
// finish in time so another worker takes them at once.
func TestDrain(t *testing.T) {
	t.Run("waits for in-flight attempts", func(t *testing.T) {
		e := newEnv(t)
		p := e.start(procOpts{workers: 2})
		acct, key := e.account()
		rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
			time.Sleep(300 * time.Millisecond)
			w.WriteHeader(http.StatusOK)
		})
		e.reg.SetEndpoint(acct, "ep_a", rc.url("/"), active(), nil, signing.GenerateSecret())
		evt, _ := e.publish(acct, completed)
		id := p.schedule(t, context.Background(), acct, completed, item(evt, "ep_a"))[0]
		waitFor(t, 5*time.Second, func() bool { return rc.count() == 1 }, func() string { return "no request" })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.drain(ctx)
		if d := p.get(t, key, id); d.GetStatus() != deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED {
			t.Fatalf("after drain: %v", d)
		}
	})
	t.Run("releases what cannot finish", func(t *testing.T) {
		e := newEnv(t)
		p := e.start(procOpts{workers: 2, timeout: 3 * time.Second})
		acct, key := e.account()
		hang := make(chan struct{})
		rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				select {
				case <-hang:
				case <-r.Context().Done():
				}
			}
			w.WriteHeader(http.StatusOK)
		})
		defer close(hang)
		e.reg.SetEndpoint(acct, "ep_a", rc.url("/"), active(), nil, signing.GenerateSecret())
		evt, _ := e.publish(acct, completed)
		id := p.schedule(t, context.Background(), acct, completed, item(evt, "ep_a"))[0]
		waitFor(t, 5*time.Second, func() bool { return rc.count() == 1 }, func() string { return "no request" })

		ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
		defer cancel()
		start := time.Now()
		p.drain(ctx)
		if took := time.Since(start); took > 2500*time.Millisecond {
			t.Fatalf("drain took %v, past its deadline", took)
		}
		d := p.get(t, key, id)
		if d.GetStatus() != deliveryv1.DeliveryStatus_DELIVERY_STATUS_PENDING || d.GetAttemptCount() != 0 || len(d.GetAttempts()) != 0 {
			t.Fatalf("after drain: %v", d)
		}
		score, err := e.rdb.ZScore(context.Background(), redisqueue.ScheduleKey(id), id).Result()
		if err != nil || int64(score) > time.Now().UnixMilli() {
			t.Fatalf("released item scored %v (%v), want due now", int64(score), err)
		}

		next := e.start(procOpts{workers: 2})
		d = next.waitStatus(t, key, id, deliveryv1.DeliveryStatus_DELIVERY_STATUS_SUCCEEDED, 5*time.Second)
		if d.GetAttemptCount() != 1 || rc.count() != 2 {
			t.Fatalf("after handover: %v, %d requests", d, rc.count())
		}
	})
}
