package delivery

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestDecideCountsTheRoundAndParksOn410(t *testing.T) {
	d := NewDispatcher(Config{Retry: RetryPolicy{Schedule: []time.Duration{0, time.Second, time.Second}}}, Deps{})
	fail := func(n int) (Attempt, Response) {
		return Attempt{Number: n, StatusCode: 500, ErrorType: ErrorHTTPStatus}, Response{StatusCode: 500, Header: http.Header{}}
	}
	cases := []struct {
		name          string
		attempt, base int
		code          int
		want          Status
	}{
		{"first round, attempt 2 of 3", 2, 0, 500, StatusPending},
		{"first round, last attempt", 3, 0, 500, StatusFailed},
		{"resumed round: attempt 5 is its second", 5, 3, 500, StatusPending},
		{"resumed round: its last", 6, 3, 500, StatusFailed},
		{"retry now after the schedule ran out", 4, 0, 500, StatusFailed},
		{"410 parks", 1, 0, http.StatusGone, StatusParked},
	}
	for _, c := range cases {
		att, resp := fail(c.attempt)
		att.StatusCode, resp.StatusCode = c.code, c.code
		o := d.decide(Job{Delivery: Delivery{Base: c.base}}, att, resp)
		if o.Status != c.want {
			t.Errorf("%s: %s, want %s", c.name, o.Status, c.want)
		}
	}
}

func TestDisabledNotice(t *testing.T) {
	m := DisabledNotice("ops@x.test", "ep_1", "https://hooks.example/x", "5 consecutive failed attempts; last error: HTTP 500",
		"HTTP 500 Internal Server Error", time.Date(2026, 11, 26, 19, 0, 0, 0, time.UTC))
	if m.To != "ops@x.test" || !strings.Contains(m.Subject, "ep_1") {
		t.Errorf("to %q subject %q", m.To, m.Subject)
	}
	for _, want := range []string{"ep_1", "https://hooks.example/x", "5 consecutive failed attempts", "HTTP 500 Internal Server Error",
		"2026-11-26T19:00:00Z", "POST /v1/endpoints/ep_1:enable", "dashboard", "parked"} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("notice lacks %q:\n%s", want, m.Body)
		}
	}
}

type testClock struct{ t *time.Time }

func (c testClock) Now() time.Time { return *c.t }

func TestRateLimitDefersWithoutAttempt(t *testing.T) {
	now := time.Now()
	d := NewDispatcher(Config{}, Deps{Clock: testClock{&now}}) // no ledger: this process's own limits
	ctx, dl := t.Context(), &Delivery{ID: "dlv_1"}
	tg := &Target{EndpointID: "ep_1", RateLimit: 2}
	for i := range 2 {
		if d.checkRate(ctx, dl, tg) != nil {
			t.Fatalf("request %d of a burst of 2 refused", i+1)
		}
	}
	o := d.checkRate(ctx, dl, tg)
	if o == nil || o.Status != StatusPending || o.Attempt != nil || !o.Next.After(now) {
		t.Fatalf("third request at once: %+v", o)
	}
	now = now.Add(600 * time.Millisecond)
	if d.checkRate(ctx, dl, tg) != nil {
		t.Error("a token should be free after 0.5s")
	}
	if d.checkRate(ctx, dl, &Target{EndpointID: "ep_2"}) != nil {
		t.Error("no limit set, yet deferred")
	}
}
