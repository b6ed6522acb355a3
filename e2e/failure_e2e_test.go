package e2e

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// ---- a tiny SMTP server: enough of RFC 5321 for net/smtp ----

type mail struct {
	From, To string
	Data     string
}

type smtpServer struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []mail
}

func newSMTPServer(t testing.TB) *smtpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *smtpServer) Addr() string { return s.ln.Addr().String() }

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	say := func(line string) { _, _ = c.Write([]byte(line + "\r\n")) }
	say("220 test.invalid ESMTP")
	var m mail
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			say("250 test.invalid")
		case strings.HasPrefix(cmd, "MAIL FROM:"):
			m = mail{From: strings.Trim(strings.TrimSpace(line)[10:], "<> ")}
			say("250 OK")
		case strings.HasPrefix(cmd, "RCPT TO:"):
			m.To = strings.Trim(strings.TrimSpace(line)[8:], "<> ")
			say("250 OK")
		case cmd == "DATA":
			say("354 end with <CRLF>.<CRLF>")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
			}
			m.Data = b.String()
			s.mu.Lock()
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
			say("250 OK queued")
		case cmd == "QUIT":
			say("221 bye")
			return
		case cmd == "RSET", cmd == "NOOP":
			say("250 OK")
		default:
			say("502 not implemented")
		}
	}
}

func (s *smtpServer) Messages() []mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mail(nil), s.msgs...)
}

// ---- helpers ----

type endpointView struct {
	ID             string `json:"id"`
	URL            string `json:"url"`
	Status         string `json:"status"`
	DisabledReason string `json:"disabledReason"`
}

func (s *Suite) endpoint(key, id string) endpointView {
	s.t.Helper()
	var out struct {
		Endpoint endpointView `json:"endpoint"`
	}
	s.MustDo(200, "GET", "/v1/endpoints/"+id, key, nil, &out)
	return out.Endpoint
}

// accountWithEmail creates an account whose notices go to email.
func (s *Suite) accountWithEmail(name, email string) (id, key string) {
	s.t.Helper()
	var out struct {
		Account struct{ ID string } `json:"account"`
		APIKey  string              `json:"apiKey"`
	}
	s.MustDo(200, "POST", "/v1/accounts", adminToken, map[string]any{"name": name, "notificationEmail": email}, &out)
	return out.Account.ID, out.APIKey
}

// TestFailingEndpointIsDisabledEmailedParkedResumedAndReplayed: with a
// scaled-down schedule, an event whose five attempts all fail disables the
// endpoint (no success since its first attempt) and emails the account; a
// second event held back by Retry-After comes due while the endpoint is
// disabled and is parked, not dropped; :enable resumes it; :replay re-sends
// the failed one.
func TestFailingEndpointIsDisabledEmailedParkedResumedAndReplayed(t *testing.T) {
	smtpd := newSMTPServer(t)
	s := startSuite(t, SuiteOptions{Env: map[string]string{
		"DELIVERY_RETRY_SCHEDULE": "0s,100ms,100ms,100ms,100ms",
		"SMTP_ADDR":               smtpd.Addr(),
		"SMTP_FROM":               "webhooks@voxscriber.test",
	}})
	var healthy atomic.Bool
	var mu sync.Mutex
	first := ""                      // the first event's id
	seen := map[string][]time.Time{} // event id -> request times
	rc := newReceiver()
	defer rc.Close()
	rc.Respond = func(n int, r *http.Request) int {
		id := r.Header.Get("X-Webhook-Id")
		mu.Lock()
		seen[id] = append(seen[id], time.Now())
		isFirst := first == "" || first == id
		if first == "" {
			first = id
		}
		mu.Unlock()
		if healthy.Load() {
			return 200
		}
		if !isFirst {
			return 503 // Retry-After below holds the second event back
		}
		return 500
	}
	// Retry-After: 3 on every answer (honoured only on 429/503).
	rc.Config.Handler = withHeader(rc.Config.Handler, "Retry-After", "3")

	acct, key := s.accountWithEmail("acme", "ops@acme.test")
	ep, _ := s.NewEndpoint(key, rc.URL, "transcription.completed")
	ing, ctx := s.Ingestion()
	t0 := time.Now()
	e1 := publish(t, ing, ctx, acct, "transcription.completed", completed("upl_1"), "")
	eventually(t, 5*time.Second, "first event's first attempt", func() bool { return rc.Count() >= 1 })
	e2 := publish(t, ing, ctx, acct, "transcription.completed", completed("upl_2"), "")

	// Five failed attempts of event 1 disable the endpoint.
	var got endpointView
	eventually(t, 15*time.Second, "endpoint disabled", func() bool {
		got = s.endpoint(key, ep.ID)
		return got.Status == "ENDPOINT_STATUS_DISABLED"
	})
	if !strings.Contains(got.DisabledReason, "5 consecutive failed attempts") || !strings.Contains(got.DisabledReason, "HTTP 500") {
		t.Errorf("disabled reason = %q", got.DisabledReason)
	}
	mu.Lock()
	if n := len(seen[e1.GetEvent().GetId()]); n != 5 {
		t.Errorf("event 1 got %d attempts, want 5", n)
	}
	mu.Unlock()

	// The notice email.
	var m mail
	eventually(t, 10*time.Second, "notice email", func() bool {
		ms := smtpd.Messages()
		if len(ms) > 0 {
			m = ms[0]
		}
		return len(ms) > 0
	})
	for _, want := range []string{ep.ID, rc.URL, "5 consecutive failed attempts", "HTTP 500", "/v1/endpoints/" + ep.ID + ":enable", "dashboard", "Subject: Webhook endpoint " + ep.ID + " was disabled"} {
		if !strings.Contains(m.Data, want) {
			t.Errorf("email lacks %q:\n%s", want, m.Data)
		}
	}
	if m.To != "ops@acme.test" || m.From != "webhooks@voxscriber.test" {
		t.Errorf("email from %q to %q", m.From, m.To)
	}

	// Event 2 (held back by Retry-After: 3) comes due while disabled: parked.
	d2 := DeliveryOf(t, s, key, ep.ID, e2.GetEvent().GetId())
	eventually(t, 10*time.Second, "event 2 parked", func() bool {
		d2 = s.delivery(key, d2.ID)
		return d2.Status == "DELIVERY_STATUS_PARKED"
	})
	mu.Lock()
	if ts := seen[e2.GetEvent().GetId()]; len(ts) != 1 {
		t.Errorf("event 2 attempts before parking = %d, want 1 (Retry-After held it back)", len(ts))
	}
	mu.Unlock()
	if len(smtpd.Messages()) != 1 {
		t.Errorf("%d emails, want 1", len(smtpd.Messages()))
	}

	// Enabling resumes the parked delivery.
	healthy.Store(true)
	s.MustDo(200, "POST", "/v1/endpoints/"+ep.ID+":enable", key, map[string]any{}, nil)
	eventually(t, 15*time.Second, "event 2 delivered after :enable", func() bool {
		return s.delivery(key, d2.ID).Status == "DELIVERY_STATUS_SUCCEEDED"
	})
	d1 := DeliveryOf(t, s, key, ep.ID, e1.GetEvent().GetId())
	if d1.Status != "DELIVERY_STATUS_FAILED" {
		t.Fatalf("event 1 delivery status %s, want FAILED", d1.Status)
	}

	// Replay since t0 re-sends the failed one (not the succeeded one).
	var rp struct {
		Queued int `json:"queued"`
	}
	s.MustDo(200, "POST", "/v1/endpoints/"+ep.ID+":replay", key, map[string]any{"since": t0.Add(-time.Second).UTC().Format(time.RFC3339Nano)}, &rp)
	if rp.Queued != 1 {
		t.Errorf("replay queued %d, want 1", rp.Queued)
	}
	eventually(t, 10*time.Second, "event 1 delivered after replay", func() bool {
		return s.delivery(key, d1.ID).Status == "DELIVERY_STATUS_SUCCEEDED"
	})
	if d := s.delivery(key, d1.ID); d.AttemptCount != 6 {
		t.Errorf("replayed delivery attempt count %d, want 6 (numbering continues)", d.AttemptCount)
	}
	// Replay of another account's endpoint: 404.
	_, key2 := s.NewAccount("other")
	if code, _ := s.Do("POST", "/v1/endpoints/"+ep.ID+":replay", key2, map[string]any{"since": t0.UTC().Format(time.RFC3339)}, nil); code != 404 {
		t.Errorf("replay of another account's endpoint = %d, want 404", code)
	}
	if s.endpoint(key, ep.ID).Status != "ENDPOINT_STATUS_ACTIVE" {
		t.Error("endpoint not active after enable")
	}
}

// TestEventsPublishedWhileDisabledArriveOnEnableButNotWhilePaused, as a new
// user meets it: an endpoint disabled by five failures misses nothing: an
// event published while it is DISABLED is parked for it and arrives once
// it is enabled. An event published while its owner has paused it
// (INACTIVE) is not for it: no delivery is made, and enabling it does not
// bring the event; what is published after that arrives.
func TestEventsPublishedWhileDisabledArriveOnEnableButNotWhilePaused(t *testing.T) {
	s := startSuite(t, SuiteOptions{Env: map[string]string{"DELIVERY_RETRY_SCHEDULE": "0s,100ms,100ms,100ms,100ms"}})
	var healthy atomic.Bool
	var mu sync.Mutex
	seen := map[string]int{} // event id -> requests
	rc := newReceiver()
	defer rc.Close()
	rc.Respond = func(_ int, r *http.Request) int {
		mu.Lock()
		seen[r.Header.Get("X-Webhook-Id")]++
		mu.Unlock()
		if healthy.Load() {
			return 200
		}
		return 500
	}
	got := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		return seen[id]
	}
	acct, key := s.NewAccount("acme")
	ep, _ := s.NewEndpoint(key, rc.URL, "transcription.completed")
	ing, ctx := s.Ingestion()

	// Five failed attempts disable the endpoint.
	e1 := publish(t, ing, ctx, acct, "transcription.completed", completed("upl_1"), "")
	eventually(t, 15*time.Second, "endpoint disabled", func() bool {
		return s.endpoint(key, ep.ID).Status == "ENDPOINT_STATUS_DISABLED"
	})

	// Published while DISABLED: parked for it, not sent.
	e2 := publish(t, ing, ctx, acct, "transcription.completed", completed("upl_2"), "")
	d2 := DeliveryOf(t, s, key, ep.ID, e2.GetEvent().GetId())
	eventually(t, 10*time.Second, "event 2 parked", func() bool {
		d2 = s.delivery(key, d2.ID)
		return d2.Status == "DELIVERY_STATUS_PARKED"
	})
	if n := got(e2.GetEvent().GetId()); n != 0 {
		t.Errorf("event 2 sent %d times while the endpoint was disabled", n)
	}

	// The customer fixes the server and enables the endpoint: it arrives.
	healthy.Store(true)
	s.MustDo(200, "POST", "/v1/endpoints/"+ep.ID+":enable", key, map[string]any{}, nil)
	eventually(t, 15*time.Second, "event 2 delivered after :enable", func() bool {
		return s.delivery(key, d2.ID).Status == "DELIVERY_STATUS_SUCCEEDED"
	})
	if n := got(e2.GetEvent().GetId()); n != 1 {
		t.Errorf("event 2 arrived %d times, want once", n)
	}
	if n := got(e1.GetEvent().GetId()); n != 5 {
		t.Errorf("event 1 sent %d times, want its 5 failed attempts only", n)
	}

	// Paused by its owner: what is published meanwhile is not for it.
	s.MustDo(200, "POST", "/v1/endpoints/"+ep.ID+":disable", key, map[string]any{}, nil)
	if st := s.endpoint(key, ep.ID).Status; st != "ENDPOINT_STATUS_INACTIVE" {
		t.Fatalf("status after :disable = %s", st)
	}
	// Ingestion's subscriber lists are invalidated by the registry's change
	// feed and live at most 3 s anyway: let the pause reach them.
	time.Sleep(3500 * time.Millisecond)
	e3 := publish(t, ing, ctx, acct, "transcription.completed", completed("upl_3"), "")
	s.MustDo(200, "POST", "/v1/endpoints/"+ep.ID+":enable", key, map[string]any{}, nil)
	e4 := publish(t, ing, ctx, acct, "transcription.completed", completed("upl_4"), "")
	eventually(t, 10*time.Second, "event 4 delivered after the pause", func() bool { return got(e4.GetEvent().GetId()) == 1 })
	// Resuming sweeps again a few seconds after a change: give it the time.
	time.Sleep(5 * time.Second)
	if n := got(e3.GetEvent().GetId()); n != 0 {
		t.Errorf("event 3, published while paused, arrived %d times", n)
	}
	for _, d := range s.deliveries(key, "endpointId="+ep.ID+"&pageSize=100") {
		if d.EventID == e3.GetEvent().GetId() {
			t.Errorf("event 3, published while paused, has delivery %s (%s)", d.ID, d.Status)
		}
	}
}

// withHeader sets a response header before h runs.
func withHeader(h http.Handler, k, v string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(k, v)
		h.ServeHTTP(w, r)
	})
}

// DeliveryOf finds the delivery of an event to an endpoint.
func DeliveryOf(t testing.TB, s *Suite, key, endpointID, eventID string) delivery {
	t.Helper()
	var d delivery
	eventually(t, 10*time.Second, "delivery of "+eventID, func() bool {
		for _, x := range s.deliveries(key, "endpointId="+endpointID+"&pageSize=100") {
			if x.EventID == eventID {
				d = x
				return true
			}
		}
		return false
	})
	return d
}

// TestOneSuccessInBetweenPreventsDisable: an event's final attempt fails,
// but another event succeeded after its first attempt: the endpoint stays
// active and no email goes out. Retry now then sends the failed one again.
func TestOneSuccessInBetweenPreventsDisable(t *testing.T) {
	smtpd := newSMTPServer(t)
	s := startSuite(t, SuiteOptions{Env: map[string]string{
		"DELIVERY_RETRY_SCHEDULE": "0s,150ms,150ms,150ms,150ms",
		"SMTP_ADDR":               smtpd.Addr(),
	}})
	var fixed atomic.Bool
	var mu sync.Mutex
	failing := ""
	rc := newReceiver()
	defer rc.Close()
	rc.Respond = func(n int, r *http.Request) int {
		id := r.Header.Get("X-Webhook-Id")
		mu.Lock()
		defer mu.Unlock()
		if failing == "" {
			failing = id
		}
		if id == failing && !fixed.Load() {
			return 500
		}
		return 200
	}
	acct, key := s.accountWithEmail("acme", "ops@acme.test")
	ep, _ := s.NewEndpoint(key, rc.URL, "transcription.completed")
	ing, ctx := s.Ingestion()
	e1 := publish(t, ing, ctx, acct, "transcription.completed", completed("upl_1"), "")
	eventually(t, 5*time.Second, "first attempt", func() bool { return rc.Count() >= 1 })
	publish(t, ing, ctx, acct, "transcription.completed", completed("upl_2"), "")
	d1 := DeliveryOf(t, s, key, ep.ID, e1.GetEvent().GetId())
	eventually(t, 15*time.Second, "event 1 failed", func() bool {
		d1 = s.delivery(key, d1.ID)
		return d1.Status == "DELIVERY_STATUS_FAILED"
	})
	time.Sleep(time.Second) // a disable would happen right after the final failure
	if st := s.endpoint(key, ep.ID).Status; st != "ENDPOINT_STATUS_ACTIVE" {
		t.Fatalf("endpoint %s after a failed event with a success in between", st)
	}
	if n := len(smtpd.Messages()); n != 0 {
		t.Errorf("%d emails sent", n)
	}

	// Retry now: one more attempt, numbered 6.
	fixed.Store(true)
	s.MustDo(200, "POST", "/v1/deliveries/"+d1.ID+":retry", key, map[string]any{}, nil)
	eventually(t, 10*time.Second, "retried delivery succeeded", func() bool {
		d1 = s.delivery(key, d1.ID)
		return d1.Status == "DELIVERY_STATUS_SUCCEEDED"
	})
	if d1.AttemptCount != 6 {
		t.Errorf("attempt count %d after retry, want 6", d1.AttemptCount)
	}
}

// Test410GoneDisablesAtOnce: one 410 answer disables the endpoint with its
// reason, parks the delivery and emails the account.
func Test410GoneDisablesAtOnce(t *testing.T) {
	smtpd := newSMTPServer(t)
	s := startSuite(t, SuiteOptions{Env: map[string]string{"SMTP_ADDR": smtpd.Addr()}})
	rc := newReceiver()
	defer rc.Close()
	rc.Respond = func(int, *http.Request) int { return http.StatusGone }
	acct, key := s.accountWithEmail("acme", "ops@acme.test")
	ep, _ := s.NewEndpoint(key, rc.URL, "transcription.completed")
	ing, ctx := s.Ingestion()
	e := publish(t, ing, ctx, acct, "transcription.completed", completed("upl_1"), "")
	var got endpointView
	eventually(t, 10*time.Second, "endpoint disabled", func() bool {
		got = s.endpoint(key, ep.ID)
		return got.Status == "ENDPOINT_STATUS_DISABLED"
	})
	if !strings.Contains(got.DisabledReason, "410") {
		t.Errorf("reason %q", got.DisabledReason)
	}
	d := DeliveryOf(t, s, key, ep.ID, e.GetEvent().GetId())
	if d.Status != "DELIVERY_STATUS_PARKED" || d.AttemptCount != 1 {
		t.Errorf("delivery %s after %d attempts, want PARKED after 1", d.Status, d.AttemptCount)
	}
	eventually(t, 10*time.Second, "notice email", func() bool { return len(smtpd.Messages()) == 1 })
	if m := smtpd.Messages()[0]; !strings.Contains(m.Data, "410 Gone") {
		t.Errorf("email lacks the reason:\n%s", m.Data)
	}
	if rc.Count() != 1 {
		t.Errorf("%d requests, want 1", rc.Count())
	}
}

// TestHangingEndpointDoesNotDelayOthers: an endpoint that never answers
// (until the timeout) holds at most DELIVERY_ENDPOINT_CONCURRENCY requests;
// a healthy endpoint's deliveries of the same events arrive promptly.
func TestHangingEndpointDoesNotDelayOthers(t *testing.T) {
	s := startSuite(t, SuiteOptions{Env: map[string]string{
		"DELIVERY_ENDPOINT_CONCURRENCY": "2",
		"DELIVERY_TIMEOUT":              "3s",
		"DELIVERY_WORKERS":              "8",
	}})
	var inflight, peak atomic.Int64
	release := make(chan struct{})
	hang := newReceiver()
	defer hang.Close()
	defer close(release)
	hang.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	ok := newReceiver()
	defer ok.Close()
	acct, key := s.NewAccount("acme")
	s.NewEndpoint(key, hang.URL, "transcription.completed")
	s.NewEndpoint(key, ok.URL, "transcription.completed")
	ing, ctx := s.Ingestion()
	const n = 30
	start := time.Now()
	for i := range n {
		publish(t, ing, ctx, acct, "transcription.completed", completed("upl_"+string(rune('a'+i))), "")
	}
	eventually(t, 5*time.Second, "healthy endpoint got every event", func() bool { return ok.Count() >= n })
	took := time.Since(start)
	if took > 3*time.Second {
		t.Errorf("healthy deliveries took %v: the hanging endpoint delayed them", took)
	}
	if p := peak.Load(); p > 2 {
		t.Errorf("hanging endpoint had %d concurrent requests, limit 2", p)
	}
	t.Logf("healthy endpoint: %d deliveries in %v; hanging endpoint peak concurrency %d", n, took, peak.Load())
}

// TestSIGTERMFinishesInFlightAndLosesNothing: a delivery process told to
// stop while attempts are in flight finishes them (the receiver's answers
// are recorded, nothing is sent twice), claims nothing more, and a new
// process delivers the rest.
func TestSIGTERMFinishesInFlightAndLosesNothing(t *testing.T) {
	s := startSuite(t, SuiteOptions{Env: map[string]string{
		"DELIVERY_ENDPOINT_CONCURRENCY": "4",
		"DELIVERY_WORKERS":              "4",
	}})
	rc := newReceiver()
	defer rc.Close()
	// The receiver holds every request until the victim has begun its
	// graceful stop, so SIGTERM always finds attempts in flight and work
	// still scheduled: a worker claims only for free slots, so at most
	// DELIVERY_WORKERS of the n deliveries are in flight then.
	hold := make(chan struct{})
	rc.Hold = hold
	released := false
	release := func() {
		if !released {
			released = true
			close(hold)
		}
	}
	defer release()
	acct, key := s.NewAccount("acme")
	ep, _ := s.NewEndpoint(key, rc.URL, "transcription.completed")
	ing, ctx := s.Ingestion()
	const n = 12
	for i := range n {
		publish(t, ing, ctx, acct, "transcription.completed", completed("upl_"+string(rune('a'+i))), "")
	}
	eventually(t, 10*time.Second, "attempts in flight", func() bool { return rc.Count() >= 1 })
	s.mu.Lock()
	victim := s.procs["delivery"][0]
	s.mu.Unlock()
	_ = victim.Process.Signal(syscall.SIGTERM)
	// Health turns NOT_SERVING just before the worker stops claiming; only
	// then do the held attempts get their answers.
	waitNotServing(t, s.Addrs["delivery"])
	release()
	_ = victim.Wait()
	before := rc.Count()
	if before >= n {
		t.Fatalf("the stopping process sent all %d deliveries: it kept claiming after SIGTERM", n)
	}
	s.Start("delivery", nil)
	eventually(t, 30*time.Second, "the rest delivered by a new process", func() bool {
		var out struct {
			Deliveries []delivery `json:"deliveries"`
		}
		code, _ := s.Do("GET", "/v1/deliveries?endpointId="+ep.ID+"&status=DELIVERY_STATUS_SUCCEEDED&pageSize=100", key, nil, &out)
		return code == 200 && len(out.Deliveries) == n
	})
	// Attempts in flight at SIGTERM finished and were recorded: none is
	// sent again.
	if got := rc.Count(); got != n {
		t.Errorf("receiver got %d requests for %d events (duplicates after a graceful stop)", got, n)
	}
	t.Logf("%d of %d delivered before SIGTERM completed; the rest by the new process", before, n)
}

// TestEndpointRateLimit: an endpoint's rateLimitPerSecond spreads its
// deliveries out (burst of one second's worth) without counting attempts.
func TestEndpointRateLimit(t *testing.T) {
	s := startSuite(t, SuiteOptions{})
	rc := newReceiver()
	defer rc.Close()
	acct, key := s.NewAccount("acme")
	var out struct {
		Endpoint struct {
			ID        string `json:"id"`
			RateLimit int    `json:"rateLimitPerSecond"`
		} `json:"endpoint"`
	}
	s.MustDo(200, "POST", "/v1/endpoints", key, map[string]any{"url": rc.URL, "eventTypes": []string{"transcription.completed"}, "rateLimitPerSecond": 2}, &out)
	if out.Endpoint.RateLimit != 2 {
		t.Fatalf("rateLimitPerSecond = %d", out.Endpoint.RateLimit)
	}
	ing, ctx := s.Ingestion()
	const n = 6
	for i := range n {
		publish(t, ing, ctx, acct, "transcription.completed", completed("upl_"+string(rune('a'+i))), "")
	}
	eventually(t, 15*time.Second, "all delivered", func() bool { return rc.Count() >= n })
	reqs := rc.Requests()
	span := reqs[n-1].At.Sub(reqs[0].At)
	if span < 1500*time.Millisecond {
		t.Errorf("%d requests within %v at 2/s (burst 2)", n, span)
	}
	for _, d := range s.deliveries(key, "endpointId="+out.Endpoint.ID) {
		if d.AttemptCount != 1 || d.Status != "DELIVERY_STATUS_SUCCEEDED" {
			t.Errorf("delivery %s: %s after %d attempts", d.ID, d.Status, d.AttemptCount)
		}
	}
	t.Logf("%d deliveries spread over %v", n, span)
}

// TestListDeliveriesFiltersOverREST: endpointId, status, eventType, a time
// range and pagination.
func TestListDeliveriesFiltersOverREST(t *testing.T) {
	s := startSuite(t, SuiteOptions{Env: map[string]string{"DELIVERY_RETRY_SCHEDULE": "0s,1h"}})
	good, bad := newReceiver(), newReceiver()
	defer good.Close()
	defer bad.Close()
	bad.Respond = func(int, *http.Request) int { return 500 }
	acct, key := s.NewAccount("acme")
	g, _ := s.NewEndpoint(key, good.URL, "transcription.completed", "upload.completed")
	b, _ := s.NewEndpoint(key, bad.URL, "transcription.completed")
	ing, ctx := s.Ingestion()
	for i := range 3 {
		publish(t, ing, ctx, acct, "transcription.completed", completed("upl_"+string(rune('a'+i))), "")
	}
	time.Sleep(50 * time.Millisecond)
	mid := time.Now().UTC()
	time.Sleep(50 * time.Millisecond)
	publish(t, ing, ctx, acct, "upload.completed", map[string]any{"uploadId": "upl_u", "size": 10, "format": "mp3"}, "")
	eventually(t, 10*time.Second, "deliveries made", func() bool { return good.Count() >= 4 && bad.Count() >= 3 })
	time.Sleep(300 * time.Millisecond)
	count := func(q string) int {
		total, token := 0, ""
		for pages := 0; ; pages++ {
			var out struct {
				Deliveries    []delivery `json:"deliveries"`
				NextPageToken string     `json:"nextPageToken"`
			}
			s.MustDo(200, "GET", "/v1/deliveries?pageSize=2&"+q+"&pageToken="+token, key, nil, &out)
			total += len(out.Deliveries)
			if token = out.NextPageToken; token == "" || pages > 20 {
				return total
			}
		}
	}
	for _, c := range []struct {
		q    string
		want int
	}{
		{"", 7},
		{"endpointId=" + g.ID, 4},
		{"endpointId=" + b.ID, 3},
		{"status=DELIVERY_STATUS_PENDING", 3},
		{"status=DELIVERY_STATUS_SUCCEEDED&endpointId=" + g.ID, 4},
		{"eventType=upload.completed", 1},
		{"startTime=" + mid.Format(time.RFC3339Nano), 1},
		{"endTime=" + mid.Format(time.RFC3339Nano), 6},
	} {
		if got := count(c.q); got != c.want {
			t.Errorf("?%s: %d deliveries, want %d", c.q, got, c.want)
		}
	}
}

// waitNotServing polls a service's gRPC health until it answers NOT_SERVING
// (what pkg/serve reports from the moment a graceful stop begins).
func waitNotServing(t testing.TB, addr string) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	eventually(t, 10*time.Second, addr+" NOT_SERVING", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	})
}
