package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Request is what a test receiver saw.
type Request struct {
	At     time.Time
	Header http.Header
	Body   []byte
}

// Receiver is a real HTTP server whose answers the test controls.
type Receiver struct {
	*httptest.Server
	mu       sync.Mutex
	reqs     []Request
	inflight map[string]int
	overlap  atomic.Int64
	// Respond chooses the status of the n-th request (1-based); 200 when nil.
	Respond func(n int, r *http.Request) int
	// Hold, when set, is waited on before answering.
	Hold chan struct{}
}

func newReceiver() *Receiver {
	rc := &Receiver{inflight: map[string]int{}}
	rc.Server = httptest.NewServer(http.HandlerFunc(rc.serve))
	return rc
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	key := r.Header.Get("X-Webhook-Id") + "|" + r.Header.Get("X-Webhook-Signature")
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, Request{At: time.Now(), Header: r.Header.Clone(), Body: body})
	n := len(rc.reqs)
	rc.inflight[key]++
	if rc.inflight[key] > 1 {
		rc.overlap.Add(1)
	}
	respond, hold := rc.Respond, rc.Hold
	rc.mu.Unlock()
	defer func() {
		rc.mu.Lock()
		rc.inflight[key]--
		rc.mu.Unlock()
	}()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	code := 200
	if respond != nil {
		code = respond(n, r)
	}
	w.WriteHeader(code)
	_, _ = w.Write([]byte(`{"received":true}`))
}

// Requests returns a copy of what arrived so far.
func (rc *Receiver) Requests() []Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Request(nil), rc.reqs...)
}

// Count is the number of requests so far.
func (rc *Receiver) Count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.reqs)
}

// Overlaps counts requests that arrived while another with the same event
// id was still being answered (the same attempt sent twice at once).
func (rc *Receiver) Overlaps() int64 { return rc.overlap.Load() }

// RequireEachOnceAtATime fails t unless n distinct events (X-Webhook-Id)
// arrived and no attempt was ever sent while another of the same delivery
// was in flight.
func (rc *Receiver) RequireEachOnceAtATime(t testing.TB, n int) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range rc.Requests() {
		seen[r.Header.Get("X-Webhook-Id")] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct events delivered, want %d", len(seen), n)
	}
	if o := rc.Overlaps(); o != 0 {
		t.Fatalf("%d attempts were sent twice at the same time", o)
	}
}
