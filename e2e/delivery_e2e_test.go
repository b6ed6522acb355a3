package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	"github.com/voxscriber/webhooks/pkg/signing"
)

// seedCheck is the receiver check of the seed's Express and Flask examples:
// hex HMAC-SHA256 of the raw body keyed by the secret string.
func seedCheck(secret string, body []byte, header string) bool {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal([]byte(hex.EncodeToString(m.Sum(nil))), []byte(header))
}

type delivery struct {
	ID              string `json:"id"`
	EventID         string `json:"eventId"`
	EndpointID      string `json:"endpointId"`
	Status          string `json:"status"`
	AttemptCount    int    `json:"attemptCount"`
	LastStatusCode  int    `json:"lastStatusCode"`
	NextAttemptTime string `json:"nextAttemptTime"`
	Payload         string `json:"payload"`
	OrderingKey     string `json:"orderingKey"`
	WaitingFor      string `json:"waitingFor"` // the event heading its ordered line, while it waits
	Attempts        []struct {
		Number       int               `json:"number"`
		StatusCode   int               `json:"statusCode"`
		ErrorType    string            `json:"errorType"`
		Error        string            `json:"error"`
		LatencyMs    string            `json:"latencyMs"`
		ResponseBody string            `json:"responseBody"`
		Headers      map[string]string `json:"requestHeaders"`
		TraceID      string            `json:"traceId"`
	} `json:"attempts"`
}

func (s *Suite) deliveries(key, query string) []delivery {
	s.t.Helper()
	var out struct {
		Deliveries []delivery `json:"deliveries"`
	}
	s.MustDo(200, "GET", "/v1/deliveries?"+query, key, nil, &out)
	return out.Deliveries
}

func (s *Suite) delivery(key, id string) delivery {
	s.t.Helper()
	var out struct {
		Delivery delivery `json:"delivery"`
	}
	s.MustDo(200, "GET", "/v1/deliveries/"+id, key, nil, &out)
	return out.Delivery
}

func completed(upload string) map[string]any {
	return map[string]any{"uploadId": upload, "text": "Olá, mundo — “quoted”", "duration": 12.5, "credits": 3}
}

func publish(t testing.TB, c ingestionv1.IngestionServiceClient, ctx context.Context, acct, typ string, data map[string]any, idem string) *ingestionv1.PublishEventResponse {
	t.Helper()
	st, err := structpb.NewStruct(data)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.PublishEvent(ctx, &ingestionv1.PublishEventRequest{AccountId: acct, Type: typ, Data: st, IdempotencyKey: idem})
	if err != nil {
		t.Fatalf("PublishEvent: %v", err)
	}
	return resp
}

// TestSignedDeliveryEndToEnd: an event published over gRPC reaches a real
// receiver once, signed so that the seed's check and Standard Webhooks both
// verify (README, "Verifying a signature"), with every header a receiver
// gets (X-Webhook-*, webhook-*, User-Agent, traceparent); the delivery log
// and the event show it.
func TestSignedDeliveryEndToEnd(t *testing.T) { signedDeliveryScenario(t, startSuite) }

// suiteStarter starts the suite (standalone Redis, or a Redis Cluster).
type suiteStarter func(testing.TB, SuiteOptions) *Suite

func signedDeliveryScenario(t *testing.T, startSuite suiteStarter) {
	s := startSuite(t, SuiteOptions{})
	rc := newReceiver()
	defer rc.Close()
	acct, key := s.NewAccount("acme")
	ep, secret := s.NewEndpoint(key, rc.URL+"/webhook/voxscriber", "transcription.completed")
	ing, ctx := s.Ingestion()
	resp := publish(t, ing, ctx, acct, "transcription.completed", completed("upl_123"), "")
	evID := resp.GetEvent().GetId()
	if !strings.HasPrefix(evID, "evt_") {
		t.Fatalf("event id %q", evID)
	}
	eventually(t, 10*time.Second, "the webhook", func() bool { return rc.Count() >= 1 })
	r := rc.Requests()[0]
	if !seedCheck(secret, r.Body, r.Header.Get("X-Webhook-Signature")) {
		t.Fatalf("the seed's Express/Flask check rejects X-Webhook-Signature %q", r.Header.Get("X-Webhook-Signature"))
	}
	v := signing.Verifier{Secrets: []string{secret}}
	if err := v.VerifyRequest(r.Header, r.Body); err != nil {
		t.Fatalf("Standard Webhooks verification: %v", err)
	}
	want := map[string]string{
		"Content-Type":      "application/json",
		"X-Webhook-Id":      evID,
		"X-Webhook-Event":   "transcription.completed",
		"X-Webhook-Attempt": "1",
		"Webhook-Id":        evID,
	}
	for h, v := range want {
		if got := r.Header.Get(h); got != v {
			t.Errorf("header %s = %q, want %q", h, got, v)
		}
	}
	if !strings.HasPrefix(r.Header.Get("User-Agent"), "VoxScriber") {
		t.Errorf("User-Agent %q", r.Header.Get("User-Agent"))
	}
	if tp := r.Header.Get("Traceparent"); len(tp) != 55 {
		t.Errorf("traceparent %q", tp)
	}
	var body struct {
		ID, Type, Timestamp string
		Data                map[string]any
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.ID != evID || body.Type != "transcription.completed" || body.Data["text"] != "Olá, mundo — “quoted”" {
		t.Fatalf("body %s", r.Body)
	}
	if string(r.Body) != resp.GetEvent().GetPayload() {
		t.Fatalf("body differs from the stored payload:\n%s\n%s", r.Body, resp.GetEvent().GetPayload())
	}

	var ev struct {
		Event struct {
			ID, Payload, TraceID string
		} `json:"event"`
	}
	s.MustDo(200, "GET", "/v1/events/"+evID, key, nil, &ev)
	if ev.Event.ID != evID || ev.Event.Payload != string(r.Body) {
		t.Fatalf("GET /v1/events: %+v", ev)
	}
	eventually(t, 5*time.Second, "the delivery to be recorded", func() bool {
		ds := s.deliveries(key, "endpointId="+ep.ID)
		return len(ds) == 1 && ds[0].Status == "DELIVERY_STATUS_SUCCEEDED"
	})
	d := s.delivery(key, s.deliveries(key, "endpointId="+ep.ID)[0].ID)
	if len(d.Attempts) != 1 || d.Attempts[0].StatusCode != 200 || d.Attempts[0].ResponseBody != `{"received":true}` {
		t.Fatalf("attempt log %+v", d.Attempts)
	}
	time.Sleep(300 * time.Millisecond)
	if rc.Count() != 1 {
		t.Fatalf("receiver got %d requests, want 1", rc.Count())
	}
}

// TestRetriesFollowTheSchedule: a receiver failing twice gets attempts 1, 2
// and 3 at the (scaled-down) schedule, with identical body and id; the
// delivery log shows both failures and the success.
func TestRetriesFollowTheSchedule(t *testing.T) { retryScenario(t, startSuite) }

func retryScenario(t *testing.T, startSuite suiteStarter) {
	s := startSuite(t, SuiteOptions{Env: map[string]string{"DELIVERY_RETRY_SCHEDULE": "0s,400ms,800ms,10s,10s"}})
	rc := newReceiver()
	defer rc.Close()
	rc.Respond = func(n int, _ *http.Request) int {
		if n <= 2 {
			return 500
		}
		return 200
	}
	acct, key := s.NewAccount("acme")
	ep, secret := s.NewEndpoint(key, rc.URL, "transcription.completed")
	ing, ctx := s.Ingestion()
	publish(t, ing, ctx, acct, "transcription.completed", completed("upl_r"), "")
	eventually(t, 15*time.Second, "three attempts", func() bool { return rc.Count() >= 3 })
	reqs := rc.Requests()
	for i, r := range reqs {
		if string(r.Body) != string(reqs[0].Body) || r.Header.Get("webhook-id") != reqs[0].Header.Get("webhook-id") {
			t.Fatalf("attempt %d differs in body or id", i+1)
		}
		if got := r.Header.Get("X-Webhook-Attempt"); got != strconv.Itoa(i+1) {
			t.Errorf("attempt %d header X-Webhook-Attempt = %s", i+1, got)
		}
		if !seedCheck(secret, r.Body, r.Header.Get("X-Webhook-Signature")) {
			t.Errorf("attempt %d: bad signature", i+1)
		}
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap < 400*time.Millisecond*9/10 {
		t.Errorf("attempt 2 came %v after attempt 1, schedule says 400ms", gap)
	}
	if gap := reqs[2].At.Sub(reqs[1].At); gap < 800*time.Millisecond*9/10 {
		t.Errorf("attempt 3 came %v after attempt 2, schedule says 800ms", gap)
	}
	var d delivery
	eventually(t, 5*time.Second, "success recorded", func() bool {
		ds := s.deliveries(key, "endpointId="+ep.ID)
		if len(ds) != 1 {
			return false
		}
		d = s.delivery(key, ds[0].ID)
		return d.Status == "DELIVERY_STATUS_SUCCEEDED" && len(d.Attempts) == 3
	})
	for i, want := range []int{500, 500, 200} {
		if d.Attempts[i].StatusCode != want {
			t.Errorf("attempt %d status %d, want %d", i+1, d.Attempts[i].StatusCode, want)
		}
	}
	if d.Attempts[0].ErrorType != "ERROR_TYPE_HTTP_STATUS" || d.Attempts[0].Error == "" {
		t.Errorf("failed attempt lacks its reason: %+v", d.Attempts[0])
	}
	time.Sleep(time.Second)
	if rc.Count() != 3 {
		t.Fatalf("receiver got %d requests after success, want 3", rc.Count())
	}
}

// TestIdempotencyKeyDeliversOnce: the same key published three times is one
// event and one delivery.
func TestIdempotencyKeyDeliversOnce(t *testing.T) {
	s := startSuite(t, SuiteOptions{})
	rc := newReceiver()
	defer rc.Close()
	acct, key := s.NewAccount("acme")
	s.NewEndpoint(key, rc.URL, "upload.completed")
	ing, ctx := s.Ingestion()
	data := map[string]any{"uploadId": "upl_1", "size": 1024, "format": "mp3"}
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, publish(t, ing, ctx, acct, "upload.completed", data, "idem-42").GetEvent().GetId())
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("ids differ: %v", ids)
	}
	eventually(t, 10*time.Second, "the webhook", func() bool { return rc.Count() >= 1 })
	time.Sleep(500 * time.Millisecond)
	if rc.Count() != 1 {
		t.Fatalf("receiver got %d requests, want 1", rc.Count())
	}
}

// TestKilledDeliveryProcessLosesNothing: a delivery process SIGKILLed in the
// middle of an attempt; another process delivers the work after the lease
// expires.
func TestKilledDeliveryProcessLosesNothing(t *testing.T) {
	s := startSuite(t, SuiteOptions{Env: map[string]string{"DELIVERY_TIMEOUT": "1s"}})
	rc := newReceiver()
	defer rc.Close()
	hold := make(chan struct{})
	rc.Hold = hold
	acct, key := s.NewAccount("acme")
	s.NewEndpoint(key, rc.URL, "transcription.started")
	ing, ctx := s.Ingestion()
	ev := publish(t, ing, ctx, acct, "transcription.started", map[string]any{"uploadId": "upl_k", "engine": "whisper"}, "")
	eventually(t, 10*time.Second, "attempt in flight", func() bool { return rc.Count() >= 1 })
	s.mu.Lock()
	victim := s.procs["delivery"][0]
	s.mu.Unlock()
	s.Kill(victim)
	rc.mu.Lock()
	rc.Hold = nil
	rc.mu.Unlock()
	close(hold)
	killedAt := time.Now()
	s.Start("delivery", nil)
	eventually(t, 30*time.Second, "redelivery after the lease", func() bool { return rc.Count() >= 2 })
	t.Logf("redelivered %v after the kill", time.Since(killedAt).Round(time.Millisecond))
	r := rc.Requests()[1]
	if r.Header.Get("X-Webhook-Id") != ev.GetEvent().GetId() {
		t.Fatalf("redelivered %s", r.Header.Get("X-Webhook-Id"))
	}
}

// TestTwoDeliveryProcessesNeverSendAnAttemptTwiceAtOnce.
func TestTwoDeliveryProcessesNeverSendAnAttemptTwiceAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	s := startSuite(t, SuiteOptions{})
	s.Start("delivery", map[string]string{"DELIVERY_ADDR": "127.0.0.1:0"})
	rc := newReceiver()
	defer rc.Close()
	rc.Respond = func(n int, _ *http.Request) int { time.Sleep(2 * time.Millisecond); return 200 }
	acct, key := s.NewAccount("acme")
	s.NewEndpoint(key, rc.URL, "transcription.progress")
	ing, ctx := s.Ingestion()
	const n = 300
	reqs := make([]*ingestionv1.PublishEventRequest, 0, 100)
	for i := 0; i < n; i++ {
		st, _ := structpb.NewStruct(map[string]any{"uploadId": fmt.Sprintf("upl_%d", i), "percentage": 50, "estimate": 3})
		reqs = append(reqs, &ingestionv1.PublishEventRequest{AccountId: acct, Type: "transcription.progress", Data: st})
		if len(reqs) == 100 {
			if _, err := ing.PublishEvents(ctx, &ingestionv1.PublishEventsRequest{Events: reqs}); err != nil {
				t.Fatal(err)
			}
			reqs = reqs[:0]
		}
	}
	eventually(t, 60*time.Second, "every delivery", func() bool { return rc.Count() >= n })
	time.Sleep(500 * time.Millisecond)
	rc.RequireEachOnceAtATime(t, n)
	t.Logf("%d requests for %d events", rc.Count(), n)
}
