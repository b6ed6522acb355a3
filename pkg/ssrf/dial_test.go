package ssrf_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/voxscriber/webhooks/pkg/ssrf"
)

// newReceiver starts an HTTP server on 127.0.0.1 that answers "ok".
func newReceiver(t *testing.T) (srv *httptest.Server, port string) {
	t.Helper()
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return srv, u.Port()
}

// clientFor returns an HTTP client that dials through the policy, the way
// the delivery sender does (no proxy, no redirects).
func clientFor(p ssrf.Policy) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			Proxy:       nil,
			DialContext: p.DialContext(&net.Dialer{Timeout: 2 * time.Second}),
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func get(t *testing.T, c *http.Client, u string) (string, error) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func wantBlocked(t *testing.T, err error, msg string) {
	t.Helper()
	var se *ssrf.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v: errors.As does not find *ssrf.Error", err)
	}
	if se.Kind != ssrf.KindBlocked || !strings.Contains(se.Message, msg) {
		t.Fatalf("got [%s] %q; want [blocked] containing %q", se.Kind, se.Message, msg)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) || opErr.Op != "dial" {
		t.Fatalf("error %v should be a dial *net.OpError", err)
	}
}

func TestDialContextLoopback(t *testing.T) {
	srv, _ := newReceiver(t)

	t.Run("refused by default", func(t *testing.T) {
		_, err := get(t, clientFor(ssrf.Policy{AllowHTTP: true}), srv.URL)
		wantBlocked(t, err, "127.0.0.1 is a loopback address")
	})

	t.Run("allowed by AllowedCIDRs", func(t *testing.T) {
		allowed, _ := ssrf.ParseCIDRs("127.0.0.0/8")
		body, err := get(t, clientFor(ssrf.Policy{AllowHTTP: true, AllowedCIDRs: allowed}), srv.URL)
		if err != nil || body != "ok" {
			t.Fatalf("GET %s = %q, %v; want ok", srv.URL, body, err)
		}
	})
}

func TestDialContextNames(t *testing.T) {
	_, port := newReceiver(t)
	resolver := fakeResolver{
		"receiver.test": {"127.0.0.1"},
		"mixed.test":    {"10.9.9.9", "::ffff:127.0.0.1"},
		"v6.test":       {"::1"},
	}
	allowed, _ := ssrf.ParseCIDRs("127.0.0.0/8")

	t.Run("name to loopback refused", func(t *testing.T) {
		_, err := get(t, clientFor(ssrf.Policy{Resolver: resolver}), "http://receiver.test:"+port+"/")
		wantBlocked(t, err, "host receiver.test resolves to 127.0.0.1, a loopback address")
	})
	t.Run("name to allowed loopback", func(t *testing.T) {
		body, err := get(t, clientFor(ssrf.Policy{Resolver: resolver, AllowedCIDRs: allowed}), "http://receiver.test:"+port+"/")
		if err != nil || body != "ok" {
			t.Fatalf("got %q, %v; want ok", body, err)
		}
	})
	t.Run("blocked answers skipped, allowed one dialled", func(t *testing.T) {
		body, err := get(t, clientFor(ssrf.Policy{Resolver: resolver, AllowedCIDRs: allowed}), "http://mixed.test:"+port+"/")
		if err != nil || body != "ok" {
			t.Fatalf("got %q, %v; want ok", body, err)
		}
	})
	t.Run("tcp4 ignores IPv6 answers", func(t *testing.T) {
		dial := ssrf.Policy{Resolver: resolver, AllowedCIDRs: allowed}.DialContext(nil)
		_, err := dial(context.Background(), "tcp4", "v6.test:"+port)
		var se *ssrf.Error
		if !errors.As(err, &se) || se.Kind != ssrf.KindDNS {
			t.Fatalf("got %v; want a dns error (no IPv4 answers)", err)
		}
	})
	t.Run("nxdomain", func(t *testing.T) {
		_, err := get(t, clientFor(ssrf.Policy{Resolver: resolver}), "http://nope.test:"+port+"/")
		var se *ssrf.Error
		var dnsErr *net.DNSError
		if !errors.As(err, &se) || se.Kind != ssrf.KindDNS || !errors.As(err, &dnsErr) {
			t.Fatalf("got %v; want *ssrf.Error kind dns wrapping *net.DNSError", err)
		}
	})
	t.Run("numeric shorthand refused", func(t *testing.T) {
		_, err := ssrf.Policy{}.DialContext(nil)(context.Background(), "tcp", "0x7f.1:"+port)
		var se *ssrf.Error
		if !errors.As(err, &se) || se.Kind != ssrf.KindInvalidURL {
			t.Fatalf("got %v; want *ssrf.Error kind invalid_url", err)
		}
	})
	t.Run("non-tcp network refused", func(t *testing.T) {
		_, err := ssrf.Policy{AllowedCIDRs: allowed}.DialContext(nil)(context.Background(), "unix", "/tmp/x.sock")
		var se *ssrf.Error
		if !errors.As(err, &se) || se.Kind != ssrf.KindBlocked {
			t.Fatalf("got %v; want *ssrf.Error kind blocked", err)
		}
	})
}

// TestDialContextRebinding registers a name while it points at a public
// address, then repoints it at loopback: the dial must be refused.
func TestDialContextRebinding(t *testing.T) {
	_, port := newReceiver(t)
	resolver := &switchResolver{}
	resolver.set("93.184.216.34")
	p := ssrf.Policy{AllowHTTP: true, Resolver: resolver}

	target := "http://rebind.test:" + port + "/hook"
	if _, err := p.ValidateURL(context.Background(), target); err != nil {
		t.Fatalf("ValidateURL while public: %v", err)
	}

	resolver.set("127.0.0.1")
	_, err := get(t, clientFor(p), target)
	wantBlocked(t, err, "host rebind.test resolves to 127.0.0.1, a loopback address")
	if resolver.hits < 2 {
		t.Errorf("resolver asked %d times; the dialer must resolve the name itself", resolver.hits)
	}
}

// TestDialContextKeepsDialerControl checks that a caller's Control hook still
// runs after the guard's own check.
func TestDialContextKeepsDialerControl(t *testing.T) {
	_, port := newReceiver(t)
	allowed, _ := ssrf.ParseCIDRs("127.0.0.0/8")
	called := false
	d := &net.Dialer{Control: func(network, address string, c syscall.RawConn) error {
		called = true
		return nil
	}}
	conn, err := ssrf.Policy{AllowedCIDRs: allowed}.DialContext(d)(context.Background(), "tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if !called {
		t.Error("the dialer's own Control hook was not called")
	}
	if d.ControlContext != nil {
		t.Error("DialContext modified the caller's dialer")
	}
}
