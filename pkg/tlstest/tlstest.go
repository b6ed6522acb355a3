// Package tlstest makes a throw-away certificate authority and the
// certificates of the suite's services for tests, and lays them out the
// way Kubernetes mounts a Secret (files that are symlinks into a
// `..data` directory link swapped atomically on update).
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	PEM  []byte
}

var serial atomic.Int64

func next() *big.Int { return big.NewInt(time.Now().UnixNano() + serial.Add(1)) }

// NewCA returns a fresh CA.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: next(), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Leaf is an issued certificate and its key, PEM-encoded.
type Leaf struct {
	Cert    *x509.Certificate
	CertPEM []byte
	KeyPEM  []byte
}

// Issue signs a certificate usable for both serving and dialing, with the
// given SANs: DNS names, IP addresses and URIs (e.g. spiffe://voxscriber/delivery),
// each recognised by its form.
func (ca *CA) Issue(t testing.TB, sans ...string) Leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: next(), Subject: pkix.Name{CommonName: "voxscriber test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if u, err := url.Parse(s); err == nil && u.Scheme != "" {
			tmpl.URIs = append(tmpl.URIs, u)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return Leaf{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}
}

// Mount is a directory laid out like a Kubernetes Secret volume with the
// keys tls.crt, tls.key and ca.crt (what cert-manager writes).
type Mount struct {
	Dir string
	n   int
}

// Paths of the three files (the symlinks a service is configured with).
func (m *Mount) Cert() string { return filepath.Join(m.Dir, "tls.crt") }
func (m *Mount) Key() string  { return filepath.Join(m.Dir, "tls.key") }
func (m *Mount) CA() string   { return filepath.Join(m.Dir, "ca.crt") }

// NewMount writes leaf and the CA bundle (one or more CAs) into a new
// mount directory.
func NewMount(t testing.TB, leaf Leaf, cas ...*CA) *Mount {
	t.Helper()
	m := &Mount{Dir: t.TempDir()}
	for _, name := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(m.Dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	m.Update(t, leaf, cas...)
	return m
}

// Update replaces the mount's contents as the kubelet does: a new
// timestamped directory, then an atomic rename of the `..data` link.
func (m *Mount) Update(t testing.TB, leaf Leaf, cas ...*CA) {
	t.Helper()
	m.n++
	dir := "..data_" + strconv.Itoa(m.n)
	if err := os.Mkdir(filepath.Join(m.Dir, dir), 0o755); err != nil {
		t.Fatal(err)
	}
	var bundle []byte
	for _, ca := range cas {
		bundle = append(bundle, ca.PEM...)
	}
	for name, b := range map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "ca.crt": bundle} {
		if err := os.WriteFile(filepath.Join(m.Dir, dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(m.Dir, "..data_tmp")
	if err := os.Symlink(dir, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(m.Dir, "..data")); err != nil {
		t.Fatal(err)
	}
}
