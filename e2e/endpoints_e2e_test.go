package e2e

import (
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/signing"
)

// TestInactiveEndpointTestedThenActivated: the seed's flow. An endpoint
// created INACTIVE answers Send Test but gets no events; after :enable the
// next event (within a second of the change) is delivered.
func TestInactiveEndpointTestedThenActivated(t *testing.T) {
	s := startSuite(t, SuiteOptions{})
	rc := newReceiver()
	defer rc.Close()
	acct, key := s.NewAccount("acme")
	var created struct {
		Endpoint Endpoint `json:"endpoint"`
	}
	s.MustDo(200, "POST", "/v1/endpoints", key, map[string]any{
		"url": rc.URL + "/hook", "eventTypes": []string{"transcription.completed"}, "status": "ENDPOINT_STATUS_INACTIVE",
	}, &created)
	ep := created.Endpoint
	if ep.Status != "ENDPOINT_STATUS_INACTIVE" {
		t.Fatalf("created with status %q", ep.Status)
	}
	var test struct {
		Success    bool   `json:"success"`
		StatusCode int    `json:"statusCode"`
		Error      string `json:"error"`
	}
	s.MustDo(200, "POST", "/v1/endpoints/"+ep.ID+":sendTest", key, map[string]any{}, &test)
	if !test.Success || test.StatusCode != 200 {
		t.Fatalf("sendTest on an INACTIVE endpoint: %+v", test)
	}
	if rc.Count() != 1 {
		t.Fatalf("receiver got %d requests after sendTest, want 1", rc.Count())
	}

	ing, ctx := s.Ingestion()
	publish(t, ing, ctx, acct, "transcription.completed", completed("upl_inactive"), "") // also warms caches
	time.Sleep(300 * time.Millisecond)
	if rc.Count() != 1 {
		t.Fatalf("an INACTIVE endpoint received an event")
	}

	s.MustDo(200, "POST", "/v1/endpoints/"+ep.ID+":enable", key, map[string]any{}, nil)
	time.Sleep(time.Second) // the change must be seen within one second
	ev := publish(t, ing, ctx, acct, "transcription.completed", completed("upl_active"), "")
	eventually(t, 10*time.Second, "the event after :enable", func() bool { return rc.Count() >= 2 })
	if got := rc.Requests()[1].Header.Get("X-Webhook-Id"); got != ev.GetEvent().GetId() {
		t.Fatalf("second request is %q, want the event %s", got, ev.GetEvent().GetId())
	}
}

// TestPatchedEventTypesApplyWithinOneSecond: ingestion's cached subscriber
// list follows a PATCH of eventTypes within a second (well inside the
// cache's safety TTL, so the change feed is what makes it happen).
func TestPatchedEventTypesApplyWithinOneSecond(t *testing.T) {
	s := startSuite(t, SuiteOptions{})
	rc := newReceiver()
	defer rc.Close()
	acct, key := s.NewAccount("acme")
	ep, _ := s.NewEndpoint(key, rc.URL+"/hook", "transcription.started")
	ing, ctx := s.Ingestion()
	// Warm the cache: no subscriber for completed yet.
	publish(t, ing, ctx, acct, "transcription.completed", completed("upl_0"), "")
	time.Sleep(200 * time.Millisecond)
	if rc.Count() != 0 {
		t.Fatal("delivered an unsubscribed type")
	}
	s.MustDo(200, "PATCH", "/v1/endpoints/"+ep.ID+"?updateMask=event_types", key,
		map[string]any{"eventTypes": []string{"transcription.completed"}}, nil)
	time.Sleep(time.Second)
	ev := publish(t, ing, ctx, acct, "transcription.completed", completed("upl_1"), "")
	publish(t, ing, ctx, acct, "transcription.started", map[string]any{"uploadId": "upl_1", "engine": "e"}, "")
	eventually(t, 10*time.Second, "the event of the newly subscribed type", func() bool { return rc.Count() >= 1 })
	time.Sleep(300 * time.Millisecond)
	reqs := rc.Requests()
	if len(reqs) != 1 || reqs[0].Header.Get("X-Webhook-Id") != ev.GetEvent().GetId() {
		t.Fatalf("receiver got %d requests (first %q), want only %s", len(reqs), reqs[0].Header.Get("X-Webhook-Id"), ev.GetEvent().GetId())
	}
}

// TestRotatedSecretBothVerifyDuringOverlap: after :rotateSecret a receiver
// still holding the old secret and one holding the new one both verify
// webhook-signature; X-Webhook-Signature uses the new secret.
func TestRotatedSecretBothVerifyDuringOverlap(t *testing.T) {
	s := startSuite(t, SuiteOptions{})
	rc := newReceiver()
	defer rc.Close()
	acct, key := s.NewAccount("acme")
	ep, oldSecret := s.NewEndpoint(key, rc.URL+"/hook", "transcription.completed")
	var rot struct {
		Secret string `json:"secret"`
	}
	s.MustDo(200, "POST", "/v1/endpoints/"+ep.ID+":rotateSecret", key, map[string]any{"overlapSeconds": 3600}, &rot)
	if rot.Secret == "" || rot.Secret == oldSecret {
		t.Fatalf("rotation returned %q", rot.Secret)
	}
	time.Sleep(time.Second) // delivery's target cache follows within a second
	ing, ctx := s.Ingestion()
	publish(t, ing, ctx, acct, "transcription.completed", completed("upl_rot"), "")
	eventually(t, 10*time.Second, "the webhook", func() bool { return rc.Count() >= 1 })
	r := rc.Requests()[0]
	for name, secret := range map[string]string{"old": oldSecret, "new": rot.Secret} {
		if err := (signing.Verifier{Secrets: []string{secret}}).VerifyRequest(r.Header, r.Body); err != nil {
			t.Errorf("a receiver holding the %s secret rejects webhook-signature %q: %v", name, r.Header.Get("Webhook-Signature"), err)
		}
	}
	if !seedCheck(rot.Secret, r.Body, r.Header.Get("X-Webhook-Signature")) {
		t.Error("X-Webhook-Signature is not made with the newest secret")
	}
}
