package serve_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/voxscriber/webhooks/pkg/authn"
	"github.com/voxscriber/webhooks/pkg/serve"
	"github.com/voxscriber/webhooks/pkg/tlstest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func load(t *testing.T, m *tlstest.Mount) *serve.TLS {
	t.Helper()
	tl, err := serve.LoadTLS(serve.TLSFiles{Cert: m.Cert(), Key: m.Key(), CA: m.CA(), CheckEvery: 20 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return tl
}

// serveTLS runs a server of the suite (health only) with t's TLS on
// loopback and returns its address.
func serveTLS(t *testing.T, tl *serve.TLS) string {
	t.Helper()
	srv, _ := serve.Service{Name: "test", Logger: quiet, Auth: authn.Config{}, Register: func(*grpc.Server) {}, TLS: tl}.NewServer()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func check(addr string, opts ...grpc.DialOption) (*x509.Certificate, error) {
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return nil, err
	}
	ti, _ := p.AuthInfo.(credentials.TLSInfo)
	if len(ti.State.PeerCertificates) == 0 {
		return nil, nil
	}
	return ti.State.PeerCertificates[0], nil
}

func with(tl *serve.TLS) grpc.DialOption {
	return grpc.WithTransportCredentials(tl.ClientCredentials())
}

// TestAClientWithoutAValidCertificateIsRefused: with mutual TLS a server
// of the suite answers only clients presenting a certificate of its CA.
func TestAClientWithoutAValidCertificateIsRefused(t *testing.T) {
	ca, other := tlstest.NewCA(t, "suite"), tlstest.NewCA(t, "someone else")
	addr := serveTLS(t, load(t, tlstest.NewMount(t, ca.Issue(t, "127.0.0.1", "spiffe://voxscriber/registry"), ca)))
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)

	if _, err := check(addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
		t.Error("a plaintext client was answered")
	}
	if _, err := check(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool}))); err == nil {
		t.Error("a TLS client without a certificate was answered")
	}
	// Trusts the server, but its own certificate is from another CA.
	foreign := load(t, tlstest.NewMount(t, other.Issue(t, "spiffe://voxscriber/delivery"), ca))
	if _, err := check(addr, with(foreign)); err == nil {
		t.Error("a client with a certificate of another CA was answered")
	}
	good := load(t, tlstest.NewMount(t, ca.Issue(t, "spiffe://voxscriber/delivery"), ca))
	if _, err := check(addr, with(good)); err != nil {
		t.Fatalf("a client with a valid certificate: %v", err)
	}
	// The client verifies the server too: a server of another CA is refused.
	rogue := serveTLS(t, load(t, tlstest.NewMount(t, other.Issue(t, "127.0.0.1"), other)))
	if _, err := check(rogue, with(good)); err == nil {
		t.Error("the client trusted a server of another CA")
	}
}

// TestCertificatesRotatedUnderLoadAreReloadedWhenKubernetesSwapsTheMountedSecret:
// while clients keep opening connections, the CA and both sides'
// certificates are rotated the way a Kubernetes Secret is updated (the
// `..data` symlink swapped): no call fails, new handshakes use the new
// certificates, and once the old CA is gone a certificate of it is refused.
func TestCertificatesRotatedUnderLoadAreReloadedWhenKubernetesSwapsTheMountedSecret(t *testing.T) {
	oldCA, newCA := tlstest.NewCA(t, "old"), tlstest.NewCA(t, "new")
	serverName := []string{"127.0.0.1", "spiffe://voxscriber/registry"}
	clientName := "spiffe://voxscriber/delivery"
	srvMount := tlstest.NewMount(t, oldCA.Issue(t, serverName...), oldCA)
	cliMount := tlstest.NewMount(t, oldCA.Issue(t, clientName), oldCA)
	stale := load(t, tlstest.NewMount(t, oldCA.Issue(t, clientName), oldCA, newCA)) // never rotated
	addr := serveTLS(t, load(t, srvMount))
	client := load(t, cliMount)

	// Load: fresh connections (a handshake each) and one long-lived one.
	var calls, failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	fail := func(err error) {
		failures.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := check(addr, with(client)); err != nil {
					fail(err)
				}
				calls.Add(1)
			}
		})
	}
	long, err := serve.DialWith(addr, serve.Credentials{TLS: client})
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	wg.Go(func() {
		h := healthpb.NewHealthClient(long)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := h.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				fail(err)
			}
			cancel()
			calls.Add(1)
		}
	})

	settle := func() { time.Sleep(400 * time.Millisecond) }
	settle()
	// 1. Both sides trust both CAs; 2. new certificates; 3. the old CA goes.
	srvMount.Update(t, tlstest.Leaf{CertPEM: mustRead(t, srvMount.Cert()), KeyPEM: mustRead(t, srvMount.Key())}, oldCA, newCA)
	cliMount.Update(t, tlstest.Leaf{CertPEM: mustRead(t, cliMount.Cert()), KeyPEM: mustRead(t, cliMount.Key())}, oldCA, newCA)
	settle()
	newServer := newCA.Issue(t, serverName...)
	srvMount.Update(t, newServer, oldCA, newCA)
	cliMount.Update(t, newCA.Issue(t, clientName), oldCA, newCA)
	settle()
	srvMount.Update(t, newServer, newCA)
	cliMount.Update(t, newCA.Issue(t, clientName), newCA)
	settle()
	close(stop)
	wg.Wait()

	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d calls failed during the rotation; first: %v", n, calls.Load(), firstErr.Load())
	}
	if calls.Load() < 50 {
		t.Fatalf("only %d calls made: no load", calls.Load())
	}
	got, err := check(addr, with(client))
	if err != nil {
		t.Fatal(err)
	}
	if got.SerialNumber.Cmp(newServer.Cert.SerialNumber) != 0 {
		t.Errorf("new handshakes get server certificate %v, want the rotated one %v", got.SerialNumber, newServer.Cert.SerialNumber)
	}
	if _, err := check(addr, with(stale)); err == nil {
		t.Error("a certificate of the removed CA is still accepted")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestThePublicListenerServesTheRotatedCertificate: the gateway's HTTPS
// configuration (ServerConfig) picks up a renewed certificate for new
// connections without a restart.
func TestThePublicListenerServesTheRotatedCertificate(t *testing.T) {
	ca := tlstest.NewCA(t, "public")
	first := ca.Issue(t, "127.0.0.1")
	m := tlstest.NewMount(t, first, ca)
	tl, err := serve.LoadTLS(serve.TLSFiles{Cert: m.Cert(), Key: m.Key(), CheckEvery: 10 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), TLSConfig: tl.ServerConfig()}
	go func() { _ = srv.ServeTLS(lis, "", "") }() // as the gateway's ListenAndServeTLS("", "")
	defer srv.Close()
	url := "https://" + lis.Addr().String()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	serial := func() string {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	if got := serial(); got != first.Cert.SerialNumber.String() {
		t.Fatalf("serial %s, want %s", got, first.Cert.SerialNumber)
	}
	second := ca.Issue(t, "127.0.0.1")
	m.Update(t, second, ca)
	time.Sleep(50 * time.Millisecond)
	serial() // the first handshake after the change notices it
	if got := serial(); got != second.Cert.SerialNumber.String() {
		t.Fatalf("after renewal: serial %s, want %s", got, second.Cert.SerialNumber)
	}
}
