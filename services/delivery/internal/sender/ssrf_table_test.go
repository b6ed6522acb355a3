package sender_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/ssrf"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
	"github.com/voxscriber/webhooks/services/delivery/internal/sender"
)

// answers is a DNS stand-in whose answers a test can change between the
// registration check and the delivery (DNS rebinding).
type answers struct {
	mu sync.Mutex
	m  map[string]string
}

func (a *answers) set(host, ip string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.m[host] = ip
}

func (a *answers) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ip, ok := a.m[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []netip.Addr{netip.MustParseAddr(ip)}, nil
}

// TestSSRFRefusedAtDialTime sends through the real sender to every address
// form that must be refused. A loopback server stands where a request would
// land if the guard let one through: it must see nothing.
func TestSSRFRefusedAtDialTime(t *testing.T) {
	var hits atomic.Int64
	victim := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer victim.Close()
	_, port, _ := net.SplitHostPort(victim.Listener.Addr().String())

	dns := &answers{m: map[string]string{
		"private.test":  "10.0.0.5",
		"loopback.test": "127.0.0.1",
		"metadata.test": "169.254.169.254",
		"ula.test":      "fd12:3456::1",
		"mapped.test":   "::ffff:127.0.0.1",
		"rebind.test":   "93.184.216.34", // public while the endpoint is registered
	}}
	policy := ssrf.Policy{AllowHTTP: true, Resolver: dns}

	// Registration accepts the rebinding name; by delivery time it points home.
	if _, err := policy.ValidateURL(context.Background(), "http://rebind.test:"+port+"/hook"); err != nil {
		t.Fatalf("rebind.test should pass registration while public: %v", err)
	}
	dns.set("rebind.test", "127.0.0.1")

	s := sender.New(sender.Config{Timeout: 2 * time.Second, Policy: policy})
	defer s.Close()
	cases := []struct{ name, host string }{
		{"decimal IPv4", "2130706433"},
		{"octal IPv4", "0177.0.0.1"},
		{"hex IPv4", "0x7f000001"},
		{"hex dotted IPv4", "0x7f.1"},
		{"IPv4-mapped IPv6 loopback", "[::ffff:127.0.0.1]"},
		{"IPv6 loopback", "[::1]"},
		{"unspecified", "0.0.0.0"},
		{"loopback", "127.0.0.1"},
		{"cloud metadata", "169.254.169.254"},
		{"CGNAT 100.64/10", "100.64.0.1"},
		{"ULA fc00::/7", "[fc00::1]"},
		{"private 10/8", "10.1.2.3"},
		{"name resolving private", "private.test"},
		{"name resolving loopback", "loopback.test"},
		{"name resolving metadata", "metadata.test"},
		{"name resolving ULA", "ula.test"},
		{"name resolving mapped loopback", "mapped.test"},
		{"DNS rebinding after registration", "rebind.test"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := s.Send(context.Background(), delivery.Request{
				URL: "http://" + c.host + ":" + port + "/hook", Body: []byte(`{}`),
				EventID: "evt_x", EventType: "upload.completed", Attempt: 1, Time: time.Now(),
				Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
			})
			if resp.Err == nil {
				t.Fatalf("request to %s went out: status %d", c.host, resp.StatusCode)
			}
			if et, msg := delivery.Classify(resp, 2*time.Second); et != delivery.ErrorBlocked {
				t.Fatalf("error type %v (%s), want blocked", et, msg)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the loopback server was reached %d times", n)
	}
}

// TestRedirectsAreNeverFollowed: an allowed receiver answering 302 towards
// the metadata address is a failed attempt; the Location is not visited.
func TestRedirectsAreNeverFollowed(t *testing.T) {
	var followed atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed.Add(1) }))
	defer target.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/latest/meta-data", http.StatusFound)
	}))
	defer redirector.Close()
	s := sender.New(sender.Config{Timeout: 2 * time.Second, Policy: ssrf.Policy{AllowHTTP: true, AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}})
	defer s.Close()
	resp := s.Send(context.Background(), delivery.Request{URL: redirector.URL, Body: []byte(`{}`), EventID: "evt_x", EventType: "upload.completed", Attempt: 1, Time: time.Now()})
	et, msg := delivery.Classify(resp, 2*time.Second)
	if resp.StatusCode != http.StatusFound || et != delivery.ErrorHTTPStatus || !strings.Contains(msg, "redirects are not followed") {
		t.Fatalf("302: status %d, %v %q", resp.StatusCode, et, msg)
	}
	if followed.Load() != 0 {
		t.Fatal("the redirect was followed")
	}
}
