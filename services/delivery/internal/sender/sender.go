// Package sender makes webhook requests: the one HTTP implementation used
// by scheduled attempts and by Send Test. Every connection goes through the
// SSRF guard's dialer (directly, or through the egress proxy of
// DELIVERY_PROXY_URL after the same checks); certificates are always
// verified; redirects are not followed.
package sender

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/propagation"

	"github.com/voxscriber/webhooks/pkg/signing"
	"github.com/voxscriber/webhooks/pkg/ssrf"
	"github.com/voxscriber/webhooks/pkg/telemetry"
	"github.com/voxscriber/webhooks/services/delivery/internal/delivery"
)

// Header names set by the sender besides the signature headers.
const (
	HeaderWebhookID      = "X-Webhook-Id"
	HeaderWebhookEvent   = "X-Webhook-Event"
	HeaderWebhookAttempt = "X-Webhook-Attempt"
)

// UserAgent identifies the product and version.
const UserAgent = "VoxScriber-Webhooks/" + telemetry.Version

// drainLimit bounds how much of a response beyond the excerpt is read so
// the connection can be reused.
const drainLimit = 64 << 10

// Config configures a Sender.
type Config struct {
	// Timeout is the per-attempt limit (DELIVERY_TIMEOUT).
	Timeout time.Duration
	// Policy is the SSRF guard (ENDPOINT_ALLOW_HTTP, ENDPOINT_ALLOWED_CIDRS).
	Policy ssrf.Policy
	// RootCAs verifies servers; nil means the system roots.
	RootCAs *x509.CertPool
	// MaxIdleConnsPerHost keeps connections to busy receivers (default 64).
	MaxIdleConnsPerHost int
	// Proxy, when set, is the HTTP CONNECT egress proxy every request
	// leaves through (DELIVERY_PROXY_URL); nil dials receivers directly.
	Proxy *ssrf.Proxy
}

// Sender implements delivery.Sender.
type Sender struct {
	cfg    Config
	client *http.Client
	prop   propagation.TraceContext
}

var _ delivery.Sender = (*Sender)(nil)

// New returns a Sender with its own connection pool.
func New(cfg Config) *Sender {
	if cfg.Timeout <= 0 {
		cfg.Timeout = delivery.DefaultTimeout
	}
	if cfg.MaxIdleConnsPerHost <= 0 {
		cfg.MaxIdleConnsPerHost = 64
	}
	dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}
	dial := cfg.Policy.DialContext(dialer)
	if cfg.Proxy != nil {
		// The tunnel is opened by the dialer, after the guard has checked
		// the target; TLS and HTTP then run inside it as on a direct
		// connection (SNI and certificate checked against the URL's host).
		dial = cfg.Policy.ProxyDialContext(cfg.Proxy, dialer)
	}
	tr := &http.Transport{
		// Never Transport.Proxy: it would dial the proxy with the target's
		// name, bypassing the guard. An egress proxy is dial's business.
		Proxy:               nil,
		DialContext:         dial,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs},
		TLSHandshakeTimeout: cfg.Timeout,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // the body excerpt is kept as received; no Accept-Encoding added
	}
	return &Sender{cfg: cfg, client: &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a 3xx is the answer, and a failure
		},
	}}
}

// Close drops idle connections.
func (s *Sender) Close() { s.client.CloseIdleConnections() }

// Send POSTs the body with the signature, identity and trace headers and
// returns the answer. The trace context sent is the span in ctx.
func (s *Sender) Send(ctx context.Context, r delivery.Request) delivery.Response {
	if err := s.checkScheme(r.URL); err != nil {
		return delivery.Response{Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return delivery.Response{Err: &ssrf.Error{Kind: ssrf.KindInvalidURL, Message: "url: " + err.Error(), Err: err}}
	}
	h := req.Header
	for k, v := range r.Headers {
		if !Reserved(k) {
			h.Set(k, v)
		}
	}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", UserAgent)
	for k, v := range signing.Headers(r.Secrets, r.EventID, r.Time.Unix(), r.Body) {
		h.Set(k, v)
	}
	h.Set(HeaderWebhookID, r.EventID)
	h.Set(HeaderWebhookEvent, r.EventType)
	h.Set(HeaderWebhookAttempt, strconv.Itoa(r.Attempt))
	s.prop.Inject(ctx, propagation.HeaderCarrier(h))
	sent := recordHeaders(h, r.Headers)

	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return delivery.Response{Err: err, Latency: time.Since(start), RequestHeaders: sent}
	}
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, delivery.MaxResponseBytes))
	latency := time.Since(start)
	_, _ = io.CopyN(io.Discard, resp.Body, drainLimit)
	_ = resp.Body.Close()
	return delivery.Response{
		StatusCode: resp.StatusCode, Header: resp.Header, Body: Excerpt(excerpt),
		Latency: latency, RequestHeaders: sent,
	}
}

func (s *Sender) checkScheme(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return &ssrf.Error{Kind: ssrf.KindInvalidURL, Message: "url: " + err.Error(), Err: err}
	case u.Scheme == "https", u.Scheme == "http" && s.cfg.Policy.AllowHTTP:
		return nil
	case u.Scheme == "http":
		return &ssrf.Error{Kind: ssrf.KindScheme, Message: `url: scheme "http" is not allowed; use https (http is accepted only with ENDPOINT_ALLOW_HTTP)`}
	}
	return &ssrf.Error{Kind: ssrf.KindScheme, Message: fmt.Sprintf("url: scheme %q is not allowed; use https", u.Scheme)}
}

// Reserved reports whether a custom header name is one the sender sets or
// that HTTP manages; endpoints' custom headers never override them.
func Reserved(name string) bool {
	n := strings.ToLower(strings.TrimSpace(name))
	switch n {
	case "content-type", "content-length", "content-encoding", "transfer-encoding", "user-agent",
		"host", "connection", "keep-alive", "upgrade", "te", "trailer", "proxy-connection",
		"expect", "traceparent", "tracestate", "baggage", "accept-encoding":
		return true
	}
	return strings.HasPrefix(n, "x-webhook-") || strings.HasPrefix(n, "webhook-") || n == ""
}

// recordHeaders is the attempt log's copy of the headers sent. Signatures
// are kept (they are not secrets); custom headers that look like
// credentials are masked.
func recordHeaders(h http.Header, custom map[string]string) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[k] = strings.Join(v, ", ")
	}
	for k := range custom {
		if Reserved(k) {
			continue
		}
		if ck := http.CanonicalHeaderKey(k); looksSecret(ck) {
			out[ck] = "[redacted]"
		}
	}
	return out
}

func looksSecret(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"auth", "token", "secret", "key", "password", "cookie", "signature"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// Excerpt makes a response excerpt valid UTF-8 (it is shown as text and
// carried in proto strings) within MaxResponseBytes: an incomplete
// character cut off by the limit is dropped, other invalid bytes become
// U+FFFD.
func Excerpt(b []byte) []byte {
	if len(b) >= delivery.MaxResponseBytes {
		b = b[:delivery.MaxResponseBytes]
		for i := 1; i <= utf8.UTFMax-1 && i <= len(b); i++ {
			if c := b[len(b)-i]; utf8.RuneStart(c) {
				if !utf8.FullRune(b[len(b)-i:]) {
					b = b[:len(b)-i]
				}
				break
			}
		}
	}
	if utf8.Valid(b) {
		return b
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	for len(s) > delivery.MaxResponseBytes {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return []byte(s)
}
