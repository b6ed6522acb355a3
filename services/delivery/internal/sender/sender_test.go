package sender

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/voxscriber/webhooks/pkg/signing"
	"github.com/voxscriber/webhooks/pkg/ssrf"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

func loopback(t *testing.T) ssrf.Policy {
	cidrs, err := ssrf.ParseCIDRs("127.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	return ssrf.Policy{AllowHTTP: true, AllowedCIDRs: cidrs}
}

func request(url string) delivery.Request {
	return delivery.Request{
		URL: url, Body: []byte(`{"id":"evt_1","type":"upload.completed"}`), EventID: "evt_1",
		EventType: "upload.completed", Attempt: 2, Time: time.Now(), Secrets: []string{signing.GenerateSecret()},
		Headers: map[string]string{"X-Tenant": "t1", "X-Api-Key": "k", "webhook-id": "spoof", "Content-Type": "text/plain", "Host": "evil"},
	}
}

func TestSendsExactlyTheseHeaders(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		got.Set("Host", r.Host)
		_, _ = w.Write([]byte("a" + strings.Repeat("é", 3000))) // 6001 bytes, cut mid-rune at 4 KiB
	}))
	defer srv.Close()
	s := New(Config{Timeout: 2 * time.Second, Policy: loopback(t)})
	defer s.Close()
	resp := s.Send(context.Background(), request(srv.URL))
	if resp.Err != nil || resp.StatusCode != 200 {
		t.Fatalf("Send: %v %d", resp.Err, resp.StatusCode)
	}
	var names []string
	for k := range got {
		names = append(names, k)
	}
	slices.Sort(names)
	want := []string{"Content-Length", "Content-Type", "Host", "User-Agent", "Webhook-Id", "Webhook-Signature",
		"Webhook-Timestamp", "X-Api-Key", "X-Tenant", "X-Webhook-Attempt", "X-Webhook-Event", "X-Webhook-Id", "X-Webhook-Signature"}
	if !slices.Equal(names, want) {
		t.Fatalf("headers\n got %v\nwant %v", names, want)
	}
	if got.Get("Content-Type") != "application/json" || got.Get("Webhook-Id") != "evt_1" || got.Get("Host") == "evil" ||
		got.Get("X-Webhook-Attempt") != "2" || got.Get("User-Agent") != UserAgent {
		t.Fatalf("header values: %v", got)
	}
	if len(resp.Body) > delivery.MaxResponseBytes || !strings.HasPrefix(string(resp.Body), "aé") || !strings.HasSuffix(string(resp.Body), "é") || !utf8.Valid(resp.Body) {
		t.Fatalf("excerpt of %d bytes: ...%q", len(resp.Body), resp.Body[len(resp.Body)-8:])
	}
	if resp.RequestHeaders["X-Api-Key"] != "[redacted]" || resp.RequestHeaders["X-Tenant"] != "t1" || resp.RequestHeaders["X-Webhook-Signature"] == "" {
		t.Fatalf("recorded headers: %v", resp.RequestHeaders)
	}
}

func TestFailures(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // lets the server notice the client hanging up
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer tlsSrv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	strict := New(Config{Timeout: 300 * time.Millisecond})
	allowed := New(Config{Timeout: 300 * time.Millisecond, Policy: loopback(t)})
	tests := []struct {
		name string
		s    *Sender
		url  string
		want delivery.ErrorType
	}{
		{"timeout", allowed, slow.URL, delivery.ErrorTimeout},
		{"self-signed certificate", allowed, tlsSrv.URL, delivery.ErrorTLS},
		{"refused", allowed, closedURL, delivery.ErrorConnect},
		{"loopback blocked", New(Config{Timeout: time.Second, Policy: ssrf.Policy{AllowHTTP: true}}), slow.URL, delivery.ErrorBlocked},
		{"http refused without ENDPOINT_ALLOW_HTTP", strict, "http://example.com/hook", delivery.ErrorBlocked},
		{"unresolvable", strict, "https://does-not-exist.invalid/hook", delivery.ErrorDNS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := tt.s.Send(context.Background(), request(tt.url))
			got, msg := delivery.Classify(resp, 300*time.Millisecond)
			if got != tt.want {
				t.Fatalf("error type %q (%s), want %q", got, msg, tt.want)
			}
			if msg == "" {
				t.Fatal("no message")
			}
		})
	}
}

func TestReserved(t *testing.T) {
	for _, h := range []string{"content-type", "X-Webhook-Id", "x-webhook-anything", "Webhook-Signature", "traceparent", "User-Agent", "Host", "Content-Length"} {
		if !Reserved(h) {
			t.Errorf("%s is not reserved", h)
		}
	}
	for _, h := range []string{"X-Tenant", "Authorization", "X-Webhookish"} {
		if Reserved(h) {
			t.Errorf("%s is reserved", h)
		}
	}
}

func TestExcerpt(t *testing.T) {
	max := delivery.MaxResponseBytes
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"short text", []byte(`{"ok":true}`), `{"ok":true}`},
		{"binary", []byte{'a', 0xff, 'b'}, "a\uFFFDb"},
		{"exactly the limit", []byte(strings.Repeat("x", max)), strings.Repeat("x", max)},
		{"cut inside a character", []byte(strings.Repeat("x", max-1) + "é"), strings.Repeat("x", max-1)},
		{"binary at the limit", append([]byte(strings.Repeat("x", max-1)), 0xff), strings.Repeat("x", max-1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Excerpt(tt.in[:min(len(tt.in), max)])
			if string(got) != tt.want || len(got) > max || !utf8.Valid(got) {
				t.Fatalf("Excerpt = %d bytes %q...", len(got), got[:min(len(got), 16)])
			}
		})
	}
}
