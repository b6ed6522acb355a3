package grpcapi_test

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ingestionv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/ingestion/v1"
	registryv1 "github.com/voxscriber/webhooks/gen/go/voxscriber/webhooks/registry/v1"
	"github.com/voxscriber/webhooks/pkg/grpctest"
	"github.com/voxscriber/webhooks/pkg/ids"
	"github.com/voxscriber/webhooks/services/ingestion/internal/index"
)

// creditsLowEvents lists the stored credits.low events of an account.
func (e *env) creditsLowEvents(t *testing.T, acct string) []map[string]any {
	t.Helper()
	evIDs, err := e.redis.Client.ZRange(t.Context(), index.EventsKey(acct), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, id := range evIDs {
		ev, err := e.store.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != "credits.low" {
			continue
		}
		var body map[string]any
		if err := json.Unmarshal(ev.Payload, &body); err != nil {
			t.Fatal(err)
		}
		out = append(out, body)
	}
	return out
}

func (e *env) report(t *testing.T, acct string, balance float64) *ingestionv1.Event {
	t.Helper()
	resp, err := e.client.ReportCreditBalance(t.Context(), &ingestionv1.ReportCreditBalanceRequest{AccountId: acct, Balance: balance})
	if err != nil {
		t.Fatalf("ReportCreditBalance(%v): %v", balance, err)
	}
	return resp.GetEvent()
}

func TestCreditsLowOncePerCrossingUnderConcurrency(t *testing.T) {
	e := newEnv(t, options{})
	acct := ids.New(ids.Account, time.Now())
	e.reg.SetSettings(acct, &registryv1.Settings{CreditsLowThreshold: 10})
	e.reg.Subscribe(acct, "credits.low", "ep_1")

	if ev := e.report(t, acct, 50); ev != nil {
		t.Fatalf("above the threshold emitted %v", ev)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var emitted []*ingestionv1.Event
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.client.ReportCreditBalance(t.Context(), &ingestionv1.ReportCreditBalanceRequest{AccountId: acct, Balance: float64(i % 10)})
			if err != nil {
				t.Error(err)
				return
			}
			if resp.GetEvent() != nil {
				mu.Lock()
				emitted = append(emitted, resp.GetEvent())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(emitted) != 1 {
		t.Fatalf("50 concurrent reports below the threshold returned %d events, want 1", len(emitted))
	}
	got := e.creditsLowEvents(t, acct)
	if len(got) != 1 {
		t.Fatalf("stored %d credits.low events, want 1", len(got))
	}
	data := got[0]["data"].(map[string]any)
	if data["threshold"] != 10.0 || data["balance"].(float64) >= 10 {
		t.Errorf("data %v, want balance < 10 and threshold 10", data)
	}
	if n := len(e.dlv.calls()); n != 1 {
		t.Errorf("%d Schedule calls, want 1 (fanned out like any event)", n)
	}

	// Still low: nothing. Back up: re-armed. Down again: a second event.
	if ev := e.report(t, acct, 3); ev != nil {
		t.Fatalf("still below emitted %v", ev)
	}
	if ev := e.report(t, acct, 10); ev != nil {
		t.Fatalf("back at the threshold emitted %v", ev)
	}
	ev := e.report(t, acct, 9.5)
	if ev == nil || ev.GetType() != "credits.low" {
		t.Fatalf("second crossing emitted %v", ev)
	}
	if ev.GetId() == emitted[0].GetId() {
		t.Fatal("second crossing repeated the first event")
	}
	if got := e.creditsLowEvents(t, acct); len(got) != 2 {
		t.Fatalf("stored %d credits.low events after two crossings, want 2", len(got))
	}
}

func TestCreditsLowWithoutThresholdNeverEmits(t *testing.T) {
	e := newEnv(t, options{})
	acct := ids.New(ids.Account, time.Now())
	for _, b := range []float64{100, 0, -5, 100, -1} {
		if ev := e.report(t, acct, b); ev != nil {
			t.Fatalf("balance %v with no threshold emitted %v", b, ev)
		}
	}
	// A threshold set later starts armed.
	e.reg.SetSettings(acct, &registryv1.Settings{CreditsLowThreshold: 5})
	if ev := e.report(t, acct, 1); ev == nil {
		t.Fatal("first report below a new threshold emitted nothing")
	}
}

func TestReportCreditBalanceValidates(t *testing.T) {
	e := newEnv(t, options{})
	_, err := e.client.ReportCreditBalance(t.Context(), &ingestionv1.ReportCreditBalanceRequest{AccountId: "nope", Balance: 3})
	grpctest.RequireCode(t, err, codes.InvalidArgument, "account_id")
}

// reportUntilOK retries a report the way a producer does after Unavailable.
func (e *env) reportUntilOK(t *testing.T, acct string, balance float64) *ingestionv1.Event {
	t.Helper()
	for range 50 {
		resp, err := e.client.ReportCreditBalance(t.Context(), &ingestionv1.ReportCreditBalanceRequest{AccountId: acct, Balance: balance})
		if err == nil {
			return resp.GetEvent()
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("ReportCreditBalance(%v): %v", balance, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("ReportCreditBalance(%v) still Unavailable after 50 tries", balance)
	return nil
}

// scheduledItems counts the (event, endpoint) pairs delivery accepted.
func (e *env) scheduledItems() map[string]int {
	out := map[string]int{}
	for _, c := range e.dlv.calls() {
		for _, it := range c.GetItems() {
			out[it.GetEventId()+" "+it.GetEndpointId()]++
		}
	}
	return out
}

func TestCreditsLowCrossingIsEmittedWhenItsFirstPublishFailsAndTheProducerRetries(t *testing.T) {
	e := newEnv(t, options{})
	acct := ids.New(ids.Account, time.Now())
	e.reg.SetSettings(acct, &registryv1.Settings{CreditsLowThreshold: 10})
	e.reg.Subscribe(acct, "credits.low", "ep_1")

	e.dlv.failNext(1)
	_, err := e.client.ReportCreditBalance(t.Context(), &ingestionv1.ReportCreditBalanceRequest{AccountId: acct, Balance: 5})
	grpctest.RequireCode(t, err, codes.Unavailable)

	ev := e.report(t, acct, 5) // the producer's retry, at once
	if ev == nil || ev.GetType() != "credits.low" {
		t.Fatalf("the retry of a failed crossing returned %v, want the credits.low event", ev)
	}
	got := e.creditsLowEvents(t, acct)
	if len(got) != 1 || got[0]["id"] != ev.GetId() {
		t.Fatalf("stored credits.low events %v, want exactly %s", got, ev.GetId())
	}
	if items := e.scheduledItems(); len(items) != 1 || items[ev.GetId()+" ep_1"] != 1 {
		t.Fatalf("scheduled %v, want one delivery of %s to ep_1", items, ev.GetId())
	}
	// Settled: further reports below the threshold emit nothing.
	if ev := e.report(t, acct, 4); ev != nil {
		t.Fatalf("a report after the crossing was published emitted %v", ev)
	}
	if got := e.creditsLowEvents(t, acct); len(got) != 1 {
		t.Fatalf("stored %d credits.low events, want 1", len(got))
	}
}

func TestCreditsLowCrossingIsNotLostWhenTheBalanceRisesBeforeItWasPublished(t *testing.T) {
	e := newEnv(t, options{})
	acct := ids.New(ids.Account, time.Now())
	e.reg.SetSettings(acct, &registryv1.Settings{CreditsLowThreshold: 10})
	e.reg.Subscribe(acct, "credits.low", "ep_1")

	e.dlv.failNext(1)
	_, err := e.client.ReportCreditBalance(t.Context(), &ingestionv1.ReportCreditBalanceRequest{AccountId: acct, Balance: 5})
	grpctest.RequireCode(t, err, codes.Unavailable)

	// The balance is back up before anyone retried: the crossing still goes
	// out, with the balance it crossed at.
	ev := e.report(t, acct, 50)
	if ev == nil || ev.GetType() != "credits.low" {
		t.Fatalf("a report after an unpublished crossing returned %v, want that crossing's event", ev)
	}
	got := e.creditsLowEvents(t, acct)
	if len(got) != 1 {
		t.Fatalf("stored %d credits.low events, want 1", len(got))
	}
	if data := got[0]["data"].(map[string]any); data["balance"] != 5.0 || data["threshold"] != 10.0 {
		t.Errorf("data %v, want the crossing's balance 5 and threshold 10", data)
	}
	// Re-armed: the next drop is a second crossing.
	if ev := e.report(t, acct, 2); ev == nil {
		t.Fatal("the crossing after the re-arm emitted nothing")
	}
	if got := e.creditsLowEvents(t, acct); len(got) != 2 {
		t.Fatalf("stored %d credits.low events after two crossings, want 2", len(got))
	}
}

func TestCreditsLowCrossingIsEmittedOnceWhenConcurrentReportsRetryAFailedPublish(t *testing.T) {
	e := newEnv(t, options{})
	acct := ids.New(ids.Account, time.Now())
	e.reg.SetSettings(acct, &registryv1.Settings{CreditsLowThreshold: 10})
	e.reg.Subscribe(acct, "credits.low", "ep_1")

	e.dlv.failNext(3)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.reportUntilOK(t, acct, float64(i%10))
		}()
	}
	wg.Wait()
	got := e.creditsLowEvents(t, acct)
	if len(got) != 1 {
		t.Fatalf("stored %d credits.low events, want 1", len(got))
	}
	items := e.scheduledItems()
	if len(items) != 1 || items[got[0]["id"].(string)+" ep_1"] != 1 {
		t.Fatalf("scheduled %v, want one delivery of %s to ep_1, scheduled once", items, got[0]["id"])
	}
}
