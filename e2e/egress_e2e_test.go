package e2e

import (
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// egressProxy is a real HTTP CONNECT proxy: it records each CONNECT target
// and its Proxy-Authorization, then tunnels.
type egressProxy struct {
	*httptest.Server
	mu       sync.Mutex
	connects []string
	auth     []string
	tunnels  []net.Conn
}

func newEgressProxy(t *testing.T) *egressProxy {
	p := &egressProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		p.mu.Lock()
		p.connects = append(p.connects, r.Host)
		p.auth = append(p.auth, r.Header.Get("Proxy-Authorization"))
		p.mu.Unlock()
		up, err := net.DialTimeout("tcp", r.Host, 2*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		down, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			_ = up.Close()
			return
		}
		p.mu.Lock()
		p.tunnels = append(p.tunnels, up, down)
		p.mu.Unlock()
		_, _ = down.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
		go func() { _, _ = io.Copy(up, brw); _ = up.Close() }()
		go func() { _, _ = io.Copy(down, up); _ = down.Close() }()
	}))
	t.Cleanup(func() {
		p.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.tunnels {
			_ = c.Close()
		}
	})
	return p
}

func (p *egressProxy) seen() (connects, auth []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.connects...), append([]string(nil), p.auth...)
}

// TestWebhooksLeaveThroughTheEgressProxyAndPrivateTargetsStayBlocked: with
// DELIVERY_PROXY_URL the delivery process sends webhooks through the CONNECT
// proxy (to the checked address, with the URL's credentials), and a target
// the delivery's SSRF guard refuses is recorded as blocked without the
// proxy being asked. (The registry here allows all of 127.0.0.0/8, delivery
// only 127.0.0.1, so the refusal is the dial-time check's.)
func TestWebhooksLeaveThroughTheEgressProxyAndPrivateTargetsStayBlocked(t *testing.T) {
	proxy := newEgressProxy(t)
	s := startSuite(t, SuiteOptions{ServiceEnv: map[string]map[string]string{"delivery": {
		"DELIVERY_PROXY_URL":     strings.Replace(proxy.URL, "http://", "http://svc:s3cr3t@", 1),
		"ENDPOINT_ALLOWED_CIDRS": "127.0.0.1/32",
	}}})
	rc := newReceiver()
	defer rc.Close()
	_, port, _ := net.SplitHostPort(rc.Listener.Addr().String())
	acct, key := s.NewAccount("acme")
	good, _ := s.NewEndpoint(key, rc.URL+"/hook", "transcription.completed")
	blocked, _ := s.NewEndpoint(key, "http://127.0.0.2:"+port+"/hook", "transcription.completed")
	ing, ctx := s.Ingestion()
	publish(t, ing, ctx, acct, "transcription.completed", completed("upl_egress"), "")

	eventually(t, 10*time.Second, "the webhook through the proxy", func() bool { return rc.Count() >= 1 })
	var attempt string
	eventually(t, 10*time.Second, "the blocked attempt to be recorded", func() bool {
		ds := s.deliveries(key, "endpointId="+blocked.ID)
		if len(ds) != 1 {
			return false
		}
		d := s.delivery(key, ds[0].ID)
		if len(d.Attempts) == 0 {
			return false
		}
		attempt = d.Attempts[0].ErrorType + ": " + d.Attempts[0].Error
		return true
	})
	if !strings.HasPrefix(attempt, "ERROR_TYPE_BLOCKED: ") || !strings.Contains(attempt, "127.0.0.2") {
		t.Fatalf("attempt to 127.0.0.2: %s; want blocked by the SSRF guard", attempt)
	}
	eventually(t, 5*time.Second, "the delivery through the proxy to be recorded", func() bool {
		ds := s.deliveries(key, "endpointId="+good.ID)
		return len(ds) == 1 && ds[0].Status == "DELIVERY_STATUS_SUCCEEDED"
	})
	connects, auth := proxy.seen()
	for _, c := range connects {
		if c != "127.0.0.1:"+port {
			t.Fatalf("the proxy was asked to CONNECT %v; want only 127.0.0.1:%s", connects, port)
		}
	}
	if want := "Basic " + base64.StdEncoding.EncodeToString([]byte("svc:s3cr3t")); len(auth) == 0 || auth[0] != want {
		t.Fatalf("proxy saw CONNECTs %v with Proxy-Authorization %v, want %q", connects, auth, want)
	}
}
