package serve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/voxscriber/webhooks/pkg/config"
)

// DefaultTLSCheckEvery bounds how often the TLS files are looked at.
const DefaultTLSCheckEvery = 2 * time.Second

// TLSFiles names the PEM files of a service's TLS: its certificate (chain)
// and key and, for mutual TLS, the CA bundle that peers' certificates must
// chain to.
type TLSFiles struct {
	Cert, Key, CA string
	// CheckEvery bounds how often a handshake looks whether the files
	// changed (DefaultTLSCheckEvery when 0).
	CheckEvery time.Duration
	// Logger reports reloads and unreadable files (slog.Default when nil).
	Logger *slog.Logger
}

// TLS holds a service's certificate and CA pool and re-reads them when the
// files change: a handshake (at most every CheckEvery) stats the files
// (following symlinks, so Kubernetes swapping a mounted Secret's `..data`
// link counts as a change) and reloads them when the file identity, size
// or modification time differ. A half-written or mismatched set is
// refused and the previous one kept until the next check succeeds.
// Connections already open keep the certificate they were made with.
type TLS struct {
	files TLSFiles
	log   *slog.Logger

	mu     sync.Mutex
	next   time.Time
	stamps []os.FileInfo
	cert   *tls.Certificate
	pool   *x509.CertPool
}

// LoadTLS reads the files once; an error names the file.
func LoadTLS(f TLSFiles) (*TLS, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("TLS needs a certificate and a key file")
	}
	if f.CheckEvery <= 0 {
		f.CheckEvery = DefaultTLSCheckEvery
	}
	t := &TLS{files: f, log: f.Logger}
	if t.log == nil {
		t.log = slog.Default()
	}
	stamps, err := t.stat()
	if err != nil {
		return nil, err
	}
	if t.cert, t.pool, err = t.load(); err != nil {
		return nil, err
	}
	t.stamps, t.next = stamps, time.Now().Add(f.CheckEvery)
	return t, nil
}

// Mutual reports whether peers' certificates are verified (a CA is set).
func (t *TLS) Mutual() bool { return t != nil && t.files.CA != "" }

func (t *TLS) paths() []string {
	p := []string{t.files.Cert, t.files.Key}
	if t.files.CA != "" {
		p = append(p, t.files.CA)
	}
	return p
}

func (t *TLS) stat() ([]os.FileInfo, error) {
	var out []os.FileInfo
	for _, p := range t.paths() {
		fi, err := os.Stat(p) // follows symlinks: ..data swaps change the target
		if err != nil {
			return nil, fmt.Errorf("TLS file: %w", err)
		}
		out = append(out, fi)
	}
	return out, nil
}

func (t *TLS) load() (*tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(t.files.Cert, t.files.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS certificate %s / key %s: %w", t.files.Cert, t.files.Key, err)
	}
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	var pool *x509.CertPool
	if t.files.CA != "" {
		b, err := os.ReadFile(t.files.CA)
		if err != nil {
			return nil, nil, fmt.Errorf("TLS CA: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, nil, fmt.Errorf("TLS CA %s: no PEM certificate in it", t.files.CA)
		}
	}
	return &cert, pool, nil
}

func changed(a, b []os.FileInfo) bool {
	if len(a) != len(b) {
		return true
	}
	for i := range a {
		if !os.SameFile(a[i], b[i]) || a[i].Size() != b[i].Size() || !a[i].ModTime().Equal(b[i].ModTime()) {
			return true
		}
	}
	return false
}

// current returns the certificate and pool, reloading them first when the
// files changed since the last check.
func (t *TLS) current() (*tls.Certificate, *x509.CertPool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if now.Before(t.next) {
		return t.cert, t.pool
	}
	t.next = now.Add(t.files.CheckEvery)
	stamps, err := t.stat()
	if err != nil {
		t.log.Warn("TLS files unreadable; keeping the loaded ones", "error", err.Error())
		return t.cert, t.pool
	}
	if !changed(stamps, t.stamps) {
		return t.cert, t.pool
	}
	cert, pool, err := t.load()
	if err != nil { // e.g. a certificate written before its key: try again at the next check
		t.log.Warn("TLS files changed but do not load; keeping the loaded ones", "error", err.Error())
		return t.cert, t.pool
	}
	t.cert, t.pool, t.stamps = cert, pool, stamps
	attrs := []any{"cert", t.files.Cert}
	if cert.Leaf != nil {
		attrs = append(attrs, "serial", cert.Leaf.SerialNumber.String(), "not_after", cert.Leaf.NotAfter)
	}
	t.log.Info("TLS certificate reloaded", attrs...)
	return cert, pool
}

// GetCertificate serves the current certificate (tls.Config.GetCertificate).
func (t *TLS) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, _ := t.current()
	return c, nil
}

// GetClientCertificate presents the current certificate to a server
// (tls.Config.GetClientCertificate).
func (t *TLS) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c, _ := t.current()
	return c, nil
}

// ServerConfig is a TLS server configuration for net/http (the gateway's
// public listener): the current certificate, no client certificates.
func (t *TLS) ServerConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: t.GetCertificate}
}

// serverConfig is built for each handshake, so a reloaded CA applies to
// the next client.
func (t *TLS) serverConfig(*tls.ClientHelloInfo) (*tls.Config, error) {
	cert, pool := t.current()
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*cert},
		NextProtos:   []string{"h2"},
	}
	if pool != nil {
		c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	return c, nil
}

// ServerCredentials are gRPC server credentials: TLS with the current
// certificate and, with a CA, verified client certificates.
func (t *TLS) ServerCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: t.serverConfig})
}

// ClientCredentials are gRPC client credentials: the server's certificate
// must chain to the current CA pool (the system's when no CA file is set)
// and name the host dialed; the current certificate is presented.
func (t *TLS) ClientCredentials() credentials.TransportCredentials {
	return &clientCreds{t: t}
}

// clientCreds builds a fresh tls.Config for every handshake, so a reloaded
// CA pool is what the next connection trusts.
type clientCreds struct {
	t          *TLS
	serverName string
}

func (c *clientCreds) config() *tls.Config {
	_, pool := c.t.current()
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		RootCAs:              pool,
		ServerName:           c.serverName,
		GetClientCertificate: c.t.GetClientCertificate,
	}
}

func (c *clientCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(c.config()).ClientHandshake(ctx, authority, raw)
}

func (c *clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("serve: client credentials cannot serve")
}

func (c *clientCreds) Info() credentials.ProtocolInfo {
	return credentials.NewTLS(c.config()).Info()
}

func (c *clientCreds) Clone() credentials.TransportCredentials {
	cp := *c
	return &cp
}

//nolint:staticcheck // part of the credentials.TransportCredentials interface
func (c *clientCreds) OverrideServerName(name string) error {
	c.serverName = name
	return nil
}

// LoadGRPCTLS loads the services' mutual TLS from GRPC_TLS_* (nil when
// they are unset).
func LoadGRPCTLS(c config.GRPCTLS, log *slog.Logger) (*TLS, error) {
	if !c.Enabled() {
		return nil, nil
	}
	return LoadTLS(TLSFiles{Cert: c.CertFile, Key: c.KeyFile, CA: c.CAFile, Logger: log})
}
