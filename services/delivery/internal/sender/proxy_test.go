package sender_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"log"
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

// connectProxy is a real HTTP CONNECT proxy on 127.0.0.1: it records every
// CONNECT it is asked for, then tunnels to that address, or answers refuse
// instead when it is set.
type connectProxy struct {
	srv    *httptest.Server
	refuse int
	conns  atomic.Int64 // TCP connections accepted

	mu       sync.Mutex
	connects []string // CONNECT targets, in order
	auth     []string // their Proxy-Authorization headers
	tunnels  []net.Conn
}

func newConnectProxy(t *testing.T, refuse int, overTLS bool) *connectProxy {
	t.Helper()
	p := &connectProxy{refuse: refuse}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what some tests make
	p.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			p.conns.Add(1)
		}
	}
	if overTLS {
		p.srv.StartTLS()
	} else {
		p.srv.Start()
	}
	t.Cleanup(func() {
		p.srv.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.tunnels {
			_ = c.Close()
		}
	})
	return p
}

func (p *connectProxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	p.mu.Lock()
	p.connects = append(p.connects, r.Host)
	p.auth = append(p.auth, r.Header.Get("Proxy-Authorization"))
	p.mu.Unlock()
	if p.refuse != 0 {
		w.WriteHeader(p.refuse)
		return
	}
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
}

func (p *connectProxy) seen() (connects, auth []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.connects...), append([]string(nil), p.auth...)
}

func (p *connectProxy) url(t *testing.T, userinfo string) *ssrf.Proxy {
	t.Helper()
	u := strings.Replace(p.srv.URL, "://", "://"+userinfo, 1)
	x, err := ssrf.ParseProxyURL(u)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// receiver is an https (or http) webhook receiver on 127.0.0.1 that records
// the requests it gets and the TLS server name clients asked for.
type receiver struct {
	srv   *httptest.Server
	port  string
	pool  *x509.CertPool
	hits  atomic.Int64
	mu    sync.Mutex
	sni   []string
	hosts []string
}

func newReceiver(t *testing.T, overTLS bool) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.hits.Add(1)
		rc.mu.Lock()
		rc.hosts = append(rc.hosts, r.Host)
		rc.mu.Unlock()
		_, _ = io.WriteString(w, `{"received":true}`)
	}))
	rc.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if overTLS {
		rc.srv.TLS = &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			rc.mu.Lock()
			rc.sni = append(rc.sni, hello.ServerName)
			rc.mu.Unlock()
			return nil, nil
		}}
		rc.srv.StartTLS()
		rc.pool = x509.NewCertPool()
		rc.pool.AddCert(rc.srv.Certificate())
	} else {
		rc.srv.Start()
	}
	t.Cleanup(rc.srv.Close)
	_, rc.port, _ = net.SplitHostPort(rc.srv.Listener.Addr().String())
	return rc
}

// proxyPolicy allows only 127.0.0.1 (where the receivers listen) and
// resolves *.example.com names from a table the test controls.
func proxyPolicy(dns *answers) ssrf.Policy {
	return ssrf.Policy{AllowHTTP: true, AllowedCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Resolver: dns}
}

func send(s *sender.Sender, url string) delivery.Response {
	return s.Send(context.Background(), delivery.Request{
		URL: url, Body: []byte(`{"id":"evt_p","type":"upload.completed"}`), EventID: "evt_p",
		EventType: "upload.completed", Attempt: 1, Time: time.Now(),
		Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
	})
}

// TestDeliveryThroughTheEgressProxyConnectsToTheCheckedAddressAndVerifiesTheHostName:
// with DELIVERY_PROXY_URL a webhook to an https receiver leaves through the
// proxy; the proxy is asked to CONNECT to the address the guard checked
// (an IP literal, never the name it could re-resolve), with the URL's
// credentials as Proxy-Authorization, while TLS inside the tunnel asks for
// and verifies the receiver's host name.
func TestDeliveryThroughTheEgressProxyConnectsToTheCheckedAddressAndVerifiesTheHostName(t *testing.T) {
	rc := newReceiver(t, true)
	proxy := newConnectProxy(t, 0, false)
	dns := &answers{m: map[string]string{"hooks.example.com": "127.0.0.1"}}
	s := sender.New(sender.Config{Timeout: 2 * time.Second, Policy: proxyPolicy(dns), RootCAs: rc.pool, Proxy: proxy.url(t, "svc:s3cr3t@")})
	defer s.Close()

	resp := send(s, "https://hooks.example.com:"+rc.port+"/hook")
	if et, msg := delivery.Classify(resp, 2*time.Second); et != delivery.ErrorNone {
		t.Fatalf("delivery through the proxy failed: %v %s", et, msg)
	}
	connects, auth := proxy.seen()
	if len(connects) != 1 || connects[0] != "127.0.0.1:"+rc.port {
		t.Fatalf("proxy was asked to CONNECT %v, want exactly [127.0.0.1:%s]", connects, rc.port)
	}
	if want := "Basic " + base64.StdEncoding.EncodeToString([]byte("svc:s3cr3t")); auth[0] != want {
		t.Fatalf("Proxy-Authorization %q, want %q", auth[0], want)
	}
	if rc.hits.Load() != 1 || len(rc.sni) != 1 || rc.sni[0] != "hooks.example.com" || rc.hosts[0] != "hooks.example.com:"+rc.port {
		t.Fatalf("receiver: %d requests, SNI %v, Host %v; want 1, hooks.example.com", rc.hits.Load(), rc.sni, rc.hosts)
	}
	for k, v := range resp.RequestHeaders {
		if strings.EqualFold(k, "Proxy-Authorization") || strings.Contains(v, "s3cr3t") {
			t.Fatalf("the attempt log records the proxy credentials: %s: %s", k, v)
		}
	}
}

// TestPlainHTTPTargetsLeaveThroughTheProxyToo: with ENDPOINT_ALLOW_HTTP an
// http:// receiver is also reached through a CONNECT tunnel, so every
// webhook has the proxy's source address.
func TestPlainHTTPTargetsLeaveThroughTheProxyToo(t *testing.T) {
	rc := newReceiver(t, false)
	proxy := newConnectProxy(t, 0, false)
	dns := &answers{m: map[string]string{"hooks.example.com": "127.0.0.1"}}
	s := sender.New(sender.Config{Timeout: 2 * time.Second, Policy: proxyPolicy(dns), Proxy: proxy.url(t, "")})
	defer s.Close()

	resp := send(s, "http://hooks.example.com:"+rc.port+"/hook")
	if resp.Err != nil || resp.StatusCode != 200 {
		t.Fatalf("Send: %v %d", resp.Err, resp.StatusCode)
	}
	if connects, auth := proxy.seen(); len(connects) != 1 || connects[0] != "127.0.0.1:"+rc.port || auth[0] != "" {
		t.Fatalf("proxy saw CONNECT %v (auth %q), want [127.0.0.1:%s] without credentials", connects, auth, rc.port)
	}
	if rc.hosts[0] != "hooks.example.com:"+rc.port {
		t.Fatalf("receiver saw Host %q", rc.hosts[0])
	}
}

// TestHTTPSProxyCarriesTheTunnelOverTLS: an https:// egress proxy is
// reached over TLS (its certificate verified), and the receiver's own TLS
// runs inside that.
func TestHTTPSProxyCarriesTheTunnelOverTLS(t *testing.T) {
	rc := newReceiver(t, true)
	proxy := newConnectProxy(t, 0, true)
	dns := &answers{m: map[string]string{"hooks.example.com": "127.0.0.1"}}
	x := proxy.url(t, "")
	x.RootCAs = rc.pool // httptest servers share one certificate
	s := sender.New(sender.Config{Timeout: 2 * time.Second, Policy: proxyPolicy(dns), RootCAs: rc.pool, Proxy: x})
	defer s.Close()

	resp := send(s, "https://hooks.example.com:"+rc.port+"/hook")
	if et, msg := delivery.Classify(resp, 2*time.Second); et != delivery.ErrorNone {
		t.Fatalf("delivery through the https proxy failed: %v %s", et, msg)
	}
	if connects, _ := proxy.seen(); len(connects) != 1 || connects[0] != "127.0.0.1:"+rc.port {
		t.Fatalf("proxy saw CONNECT %v", connects)
	}

	// Without the proxy's CA the proxy is not trusted: a connect error that
	// names the proxy, not a TLS error of the receiver.
	x2 := proxy.url(t, "")
	s2 := sender.New(sender.Config{Timeout: 2 * time.Second, Policy: proxyPolicy(dns), RootCAs: rc.pool, Proxy: x2})
	defer s2.Close()
	et, msg := delivery.Classify(send(s2, "https://hooks.example.com:"+rc.port+"/hook"), 2*time.Second)
	if et != delivery.ErrorConnect || !strings.Contains(msg, "egress proxy "+x2.Addr()) || !strings.Contains(msg, "certificate") {
		t.Fatalf("untrusted proxy: %v %q, want connect naming the proxy and its certificate", et, msg)
	}
}

// TestBlockedTargetsAreRefusedWithoutAskingTheProxy: the guard still
// applies to the target's resolved address with a proxy configured; a
// private, loopback (outside the allow-list) or metadata target is refused
// as blocked, and the proxy never even gets a connection.
func TestBlockedTargetsAreRefusedWithoutAskingTheProxy(t *testing.T) {
	rc := newReceiver(t, false)
	proxy := newConnectProxy(t, 0, false)
	dns := &answers{m: map[string]string{
		"private.example.com":  "10.0.0.5",
		"loopback.example.com": "127.0.0.2",
		"metadata.example.com": "169.254.169.254",
		"rebind.example.com":   "93.184.216.34", // public while the endpoint is registered
	}}
	policy := proxyPolicy(dns)
	if _, err := policy.ValidateURL(context.Background(), "http://rebind.example.com:"+rc.port+"/hook"); err != nil {
		t.Fatalf("registration: %v", err)
	}
	dns.set("rebind.example.com", "127.0.0.2")
	s := sender.New(sender.Config{Timeout: 2 * time.Second, Policy: policy, Proxy: proxy.url(t, "")})
	defer s.Close()

	for _, host := range []string{
		"10.0.0.5", "127.0.0.2", "[::1]", "169.254.169.254", "[::ffff:10.0.0.5]",
		"private.example.com", "loopback.example.com", "metadata.example.com", "rebind.example.com",
	} {
		t.Run(host, func(t *testing.T) {
			resp := send(s, "http://"+host+":"+rc.port+"/hook")
			if et, msg := delivery.Classify(resp, 2*time.Second); et != delivery.ErrorBlocked {
				t.Fatalf("error type %v (%s), want blocked", et, msg)
			}
		})
	}
	if n := proxy.conns.Load(); n != 0 {
		t.Fatalf("the proxy got %d connections for blocked targets", n)
	}
	if rc.hits.Load() != 0 {
		t.Fatal("a blocked request reached the receiver")
	}
}

// TestProxyFailuresAreConnectErrorsNamingTheProxy: a proxy that refuses the
// CONNECT (403, 502) or cannot be reached is a connect error naming the
// proxy and its answer; one that never answers is a timeout. The messages
// never carry the proxy's password. (A silent proxy's timeout reads like a
// receiver's: net/http reports the request's deadline, not the dial's.)
func TestProxyFailuresAreConnectErrorsNamingTheProxy(t *testing.T) {
	rc := newReceiver(t, true)
	dns := &answers{m: map[string]string{"hooks.example.com": "127.0.0.1"}}
	target := "https://hooks.example.com:" + rc.port + "/hook"
	check := func(t *testing.T, x *ssrf.Proxy, timeout time.Duration, want delivery.ErrorType, wantMsg ...string) {
		t.Helper()
		s := sender.New(sender.Config{Timeout: timeout, Policy: proxyPolicy(dns), RootCAs: rc.pool, Proxy: x})
		defer s.Close()
		et, msg := delivery.Classify(send(s, target), timeout)
		if et != want {
			t.Fatalf("error type %v (%s), want %v", et, msg, want)
		}
		if want != delivery.ErrorTimeout {
			wantMsg = append(wantMsg, "egress proxy "+x.Addr())
		}
		for _, w := range wantMsg {
			if !strings.Contains(msg, w) {
				t.Fatalf("message %q does not say %q", msg, w)
			}
		}
		if strings.Contains(msg, "s3cr3t") {
			t.Fatalf("message shows the proxy password: %q", msg)
		}
	}

	for _, code := range []int{http.StatusForbidden, http.StatusBadGateway, http.StatusProxyAuthRequired} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			proxy := newConnectProxy(t, code, false)
			check(t, proxy.url(t, "svc:s3cr3t@"), 2*time.Second, delivery.ErrorConnect,
				"refused CONNECT 127.0.0.1:"+rc.port, http.StatusText(code))
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		x, err := ssrf.ParseProxyURL("http://svc:s3cr3t@" + addr)
		if err != nil {
			t.Fatal(err)
		}
		check(t, x, 2*time.Second, delivery.ErrorConnect, "cannot reach the proxy")
	})
	t.Run("silent", func(t *testing.T) {
		// Accepts connections and never answers; reports when the sender
		// hangs up on one.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		hungUp := make(chan struct{}, 4)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_, _ = io.Copy(io.Discard, c)
					hungUp <- struct{}{}
				}()
			}
		}()
		x, err := ssrf.ParseProxyURL("http://" + l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		check(t, x, 300*time.Millisecond, delivery.ErrorTimeout)
		select { // the tunnel set-up is bounded too: it is not left waiting forever
		case <-hungUp:
		case <-time.After(5 * time.Second):
			t.Fatal("the sender still holds its connection to a proxy that never answered")
		}
	})
}

// TestReceiverCertificatesAreStillVerifiedThroughTheProxy: inside the
// tunnel the receiver's certificate is checked against the URL's host name
// (not the IP the tunnel goes to, which this certificate does cover), and
// an untrusted one is a tls error as without a proxy.
func TestReceiverCertificatesAreStillVerifiedThroughTheProxy(t *testing.T) {
	rc := newReceiver(t, true)
	proxy := newConnectProxy(t, 0, false)
	dns := &answers{m: map[string]string{"hooks.example.com": "127.0.0.1", "other.test": "127.0.0.1"}}
	for _, c := range []struct {
		name string
		pool *x509.CertPool
		host string
	}{
		{"name not in the certificate", rc.pool, "other.test"},
		{"unknown authority", nil, "hooks.example.com"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := sender.New(sender.Config{Timeout: 2 * time.Second, Policy: proxyPolicy(dns), RootCAs: c.pool, Proxy: proxy.url(t, "")})
			defer s.Close()
			if et, msg := delivery.Classify(send(s, "https://"+c.host+":"+rc.port+"/hook"), 2*time.Second); et != delivery.ErrorTLS {
				t.Fatalf("error type %v (%s), want tls", et, msg)
			}
		})
	}
	if rc.hits.Load() != 0 {
		t.Fatal("a request was sent over an unverified connection")
	}
}
