package ssrf

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/voxscriber/webhooks/pkg/config"
)

// ProxyEnv is the variable naming the egress proxy of webhook deliveries.
const ProxyEnv = "DELIVERY_PROXY_URL"

// Proxy is an HTTP CONNECT egress proxy (DELIVERY_PROXY_URL): every webhook
// leaves through it, so receivers see the proxy's fixed source addresses.
// Build one with [ParseProxyURL]. Its String and LogValue never show the
// password.
type Proxy struct {
	addr       string // host:port of the proxy
	serverName string // its host name, verified when useTLS
	useTLS     bool   // https:// proxy: TLS to the proxy, then CONNECT inside it
	auth       string // Proxy-Authorization value, or ""
	redacted   string // the URL with the password masked

	// RootCAs verifies an https:// proxy's certificate; nil means the
	// system roots. Set it before the Proxy is used.
	RootCAs *x509.CertPool
}

// ParseProxyURL parses an egress proxy URL: http://[user:password@]host[:port]
// (CONNECT over plain TCP; port 80 by default) or https://… (TLS to the
// proxy, port 443 by default). A user name and password become
// "Proxy-Authorization: Basic". Error messages never repeat the URL, so they
// cannot leak the password; callers name the variable (see [ProxyFromEnv]).
func ParseProxyURL(raw string) (*Proxy, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("not a valid URL: %v", err)
	}
	var defPort string
	switch u.Scheme {
	case "http":
		defPort = "80"
	case "https":
		defPort = "443"
	default:
		return nil, fmt.Errorf("scheme %q is not supported: want http:// or https:// (an HTTP CONNECT proxy)", u.Scheme)
	}
	if u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, errors.New("want scheme://[user:password@]host:port, without a path, query or fragment")
	}
	host := u.Hostname()
	if host == "" {
		return nil, errors.New("host is missing")
	}
	port := u.Port()
	if port == "" {
		if strings.HasSuffix(u.Host, ":") {
			return nil, errors.New("port is empty")
		}
		port = defPort
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return nil, fmt.Errorf("port %s is out of range (1-65535)", port)
	}
	p := &Proxy{
		addr:       net.JoinHostPort(host, port),
		serverName: host,
		useTLS:     u.Scheme == "https",
	}
	clean := &url.URL{Scheme: u.Scheme, Host: p.addr}
	if u.User != nil {
		pass, _ := u.User.Password()
		p.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pass))
		clean.User = u.User
	}
	p.redacted = clean.Redacted()
	return p, nil
}

// ProxyFromEnv reads DELIVERY_PROXY_URL: nil when unset (deliveries dial
// receivers directly). A bad value is recorded in e, naming the variable and
// showing the value with its password masked.
func ProxyFromEnv(e *config.Env) *Proxy {
	raw := e.String("DELIVERY_PROXY_URL", "")
	if raw == "" {
		return nil
	}
	p, err := ParseProxyURL(raw)
	if err != nil {
		e.Check(fmt.Errorf("%s=%q: %w", ProxyEnv, redactURL(raw), err))
		return nil
	}
	return p
}

// redactURL masks the user information of a URL that may not parse:
// everything between "://" and the last "@".
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	prefix, rest := "", raw
	if i := strings.Index(raw, "://"); i >= 0 {
		prefix, rest = raw[:i+3], raw[i+3:]
	}
	if j := strings.LastIndex(rest, "@"); j >= 0 {
		return prefix + "xxxxx" + rest[j:]
	}
	return raw
}

// Addr is the proxy's host:port.
func (x *Proxy) Addr() string { return x.addr }

// String is the proxy URL with its password masked.
func (x *Proxy) String() string {
	if x == nil {
		return ""
	}
	return x.redacted
}

// LogValue logs the proxy as its masked URL.
func (x *Proxy) LogValue() slog.Value { return slog.StringValue(x.String()) }

// ProxyDialContext returns a dial function for http.Transport.DialContext
// that sends every connection through the egress proxy while enforcing the
// policy on the target, with the same code as [Policy.DialContext]: the
// target host is resolved here (with p's Resolver), blocked addresses are
// dropped, and the proxy is asked to CONNECT to a checked IP literal
// ("93.184.216.34:443"), never to the name, so it cannot resolve the name to
// something else. The http.Transport then speaks TLS (SNI and certificate
// checked against the original host name) or plain HTTP inside the tunnel.
//
// A target that is refused never reaches the proxy: the error is the same
// *[Error] (Kind "blocked" or "dns") DialContext returns. Failures of the
// proxy itself (unreachable, a non-2xx answer to CONNECT, no answer in time)
// are *net.OpError dial errors wrapping a *[ProxyError].
//
// The proxy's own address is the operator's choice and is not checked by
// the guard (it usually is a private address). d's keep-alive applies to the
// connection to the proxy and d.Timeout bounds the whole tunnel set-up
// (connect, TLS to an https proxy, the answer to CONNECT; default
// [DefaultProxySetupTimeout]); d may be nil and is not modified.
func (p Policy) ProxyDialContext(x *Proxy, d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var dialer net.Dialer
	if d != nil {
		dialer = *d
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		targets, err := p.checkedTargets(ctx, network, addr)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}
		return dialEach(ctx, targets, func(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
			// Second line of defence, as the Control hook of the direct
			// dialer: a tunnel is only ever opened to an allowed address.
			if reason, blocked := p.Blocked(ap.Addr()); blocked {
				return nil, &net.OpError{Op: "dial", Net: network, Err: blockedError("remote address "+ap.Addr().Unmap().String()+" is", reason)}
			}
			conn, err := x.connect(ctx, &dialer, ap)
			if err != nil {
				return nil, &net.OpError{Op: "dial", Net: network, Err: err}
			}
			return conn, nil
		})
	}
}

// ProxyError is a failure of the egress proxy while opening a tunnel to
// Target: Status is its answer to CONNECT when it refused ("403
// Forbidden"), otherwise Err says what went wrong on the way to it.
//
// It deliberately does not unwrap: a DNS or TLS failure of the proxy is not
// the receiver's, and must not be reported as the receiver's dns or tls
// error. Timeout reports whether the proxy did not answer in time.
type ProxyError struct {
	Proxy  string // host:port of the proxy
	Target string // the checked address the tunnel was for
	Status string
	Err    error
}

func (e *ProxyError) Error() string {
	if e.Status != "" {
		return fmt.Sprintf("egress proxy %s refused CONNECT %s: %s", e.Proxy, e.Target, e.Status)
	}
	// "tls: " would make the message read as the receiver's TLS failure.
	cause := strings.ReplaceAll(e.Err.Error(), "tls: ", "")
	return fmt.Sprintf("egress proxy %s (CONNECT %s): %s", e.Proxy, e.Target, cause)
}

// Timeout reports whether the proxy did not answer within the deadline.
func (e *ProxyError) Timeout() bool {
	if e.Err == nil {
		return false
	}
	var ne net.Error
	return errors.Is(e.Err, context.DeadlineExceeded) || errors.Is(e.Err, os.ErrDeadlineExceeded) ||
		(errors.As(e.Err, &ne) && ne.Timeout())
}

// DefaultProxySetupTimeout bounds opening a tunnel when the dialer has no
// Timeout of its own.
const DefaultProxySetupTimeout = 30 * time.Second

// longAgo is a deadline in the past: it aborts a blocked read or write.
var longAgo = time.Unix(1, 0)

// connect opens a tunnel through the proxy to target, within ctx.
func (x *Proxy) connect(ctx context.Context, d *net.Dialer, target netip.AddrPort) (_ net.Conn, err error) {
	fail := func(status string, cause error) error {
		return &ProxyError{Proxy: x.addr, Target: target.String(), Status: status, Err: cause}
	}
	raw, err := d.DialContext(ctx, "tcp", x.addr)
	if err != nil {
		return nil, fail("", fmt.Errorf("cannot reach the proxy: %w", err))
	}
	defer func() {
		if err != nil {
			_ = raw.Close()
		}
	}()
	// http.Transport dials with a context that has no deadline (the dial
	// outlives a cancelled request), so the dialer's Timeout bounds the
	// whole set-up: connect, TLS to the proxy and its answer to CONNECT.
	deadline := time.Now().Add(cmp.Or(d.Timeout, DefaultProxySetupTimeout))
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = raw.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(longAgo) })
	conn := raw
	if x.useTLS {
		tc := tls.Client(raw, &tls.Config{MinVersion: tls.VersionTLS12, ServerName: x.serverName, RootCAs: x.RootCAs})
		if err := tc.HandshakeContext(ctx); err != nil {
			stop()
			return nil, fail("", fmt.Errorf("TLS handshake with the proxy: %w", err))
		}
		conn = tc
	}

	var b strings.Builder
	t := target.String()
	b.WriteString("CONNECT " + t + " HTTP/1.1\r\nHost: " + t + "\r\n")
	if x.auth != "" {
		b.WriteString("Proxy-Authorization: " + x.auth + "\r\n")
	}
	b.WriteString("\r\n")
	br := bufio.NewReader(conn)
	var resp *http.Response
	if _, err = conn.Write([]byte(b.String())); err == nil {
		resp, err = http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	}
	if !stop() && err == nil {
		err = ctx.Err() // cancelled after the answer; the deadline is already in the past
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer to CONNECT: %w", ctx.Err())
		} else {
			err = fmt.Errorf("no answer to CONNECT: %w", err)
		}
		return nil, fail("", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fail(resp.Status, nil)
	}
	if err = raw.SetDeadline(time.Time{}); err != nil {
		return nil, fail("", err)
	}
	if br.Buffered() > 0 { // bytes from the far side that came with the answer
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

// bufferedConn is a tunnel whose first bytes were read with the proxy's
// answer.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
